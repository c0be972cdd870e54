//! The ingest path shared by both transports: extract, store, count, answer.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::extract::{self, Extracted};
use crate::auth::Principal;
use crate::metrics::{self, HubMetrics};
use crate::store::{HubStore, StoreError};

/// Why a request could not be stored. Retryable by the client.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the hub store is unavailable, retry later")]
    Store(#[from] StoreError),
}

/// Validates and stores OTLP requests for one hub.
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<dyn HubStore>,
    metrics: HubMetrics,
}

impl Ingestor {
    pub fn new(store: Arc<dyn HubStore>, metrics: HubMetrics) -> Self {
        Self { store, metrics }
    }

    /// Stores the deployment events of a logs request.
    pub async fn logs(
        &self,
        principal: &Principal,
        request: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, IngestError> {
        let out = self
            .store_extracted(principal, metrics::LOGS, extract::logs(&request))
            .await?;
        Ok(ExportLogsServiceResponse {
            partial_success: (out.rejected_total() > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: out.rejected_total() as i64,
                error_message: out.error_message(),
            }),
        })
    }

    /// Stores the observed-state gauges of a metrics request.
    pub async fn metrics(
        &self,
        principal: &Principal,
        request: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, IngestError> {
        let out = self
            .store_extracted(principal, metrics::METRICS, extract::metrics(&request))
            .await?;
        Ok(ExportMetricsServiceResponse {
            partial_success: (out.rejected_total() > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: out.rejected_total() as i64,
                error_message: out.error_message(),
            }),
        })
    }

    /// Accepts and counts spans; the hub keeps none.
    pub fn traces(&self, request: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.metrics
            .count(metrics::TRACES, "ignored", "span", spans as u64);
        self.metrics
            .batch_records
            .with_label_values(&[metrics::TRACES])
            .observe(spans as f64);
        ExportTraceServiceResponse {
            partial_success: None,
        }
    }

    async fn store_extracted(
        &self,
        principal: &Principal,
        signal: &'static str,
        out: Extracted,
    ) -> Result<Extracted, IngestError> {
        let started = Instant::now();
        let total = out.events.len() as u64 + out.ignored + out.rejected_total();
        self.metrics
            .batch_records
            .with_label_values(&[signal])
            .observe(total as f64);
        if !out.events.is_empty()
            && let Err(error) = self.store.ingest(&principal.tenant, &out.events).await
        {
            self.metrics.count(
                signal,
                "failed",
                "store_unavailable",
                out.events.len() as u64,
            );
            tracing::error!(
                error = %error,
                cause = ?std::error::Error::source(&error),
                tenant = %principal.tenant,
                signal,
                "Failed to store deployment events"
            );
            return Err(error.into());
        }
        self.metrics.count(
            signal,
            "accepted",
            "deployment_event",
            out.events.len() as u64,
        );
        self.metrics
            .count(signal, "ignored", "not_deployment_event", out.ignored);
        for (reason, n) in &out.rejected {
            self.metrics.count(signal, "rejected", reason, *n);
        }
        if out.rejected_total() > 0 {
            tracing::warn!(
                tenant = %principal.tenant,
                signal,
                rejected = out.rejected_total(),
                error = %out.error_message(),
                "Rejected deployment events"
            );
        }
        self.metrics
            .ingest_seconds
            .with_label_values(&[signal])
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }
}
