//! The ingest path shared by both transports: extract, store, count, answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::extract;
use super::outcome::Extracted;
use super::window::TimeWindow;
use crate::auth::Principal;
use crate::metrics::{self, HubMetrics};
use crate::reconcilers::Reconcilers;
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
    /// How far ahead of the hub's clock an event time may be.
    max_future_skew: Duration,
    /// Flux and Argo CD mapping (docs/reconcilers.md).
    reconcilers: Arc<Reconcilers>,
}

impl Ingestor {
    pub fn new(store: Arc<dyn HubStore>, metrics: HubMetrics, max_future_skew: Duration) -> Self {
        Self {
            store,
            metrics,
            max_future_skew,
            reconcilers: Arc::default(),
        }
    }

    /// Maps reconcilers' reports with `reconcilers`.
    pub fn with_reconcilers(mut self, reconcilers: Arc<Reconcilers>) -> Self {
        self.reconcilers = reconcilers;
        self
    }

    pub fn reconcilers(&self) -> &Reconcilers {
        &self.reconcilers
    }

    pub(crate) fn window(&self) -> TimeWindow {
        TimeWindow::now(self.max_future_skew)
    }

    /// Stores the deployment events of a logs request.
    pub async fn logs(
        &self,
        principal: &Principal,
        request: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, IngestError> {
        let extracted = extract::logs(&request, self.window());
        // The events are all that is kept; the request goes before the
        // write, which may wait for the database (its charge of the memory
        // budget covers the smaller events).
        drop(request);
        let out = self
            .store_extracted(principal, metrics::LOGS, extracted)
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
        let extracted = extract::metrics(
            &request,
            self.window(),
            &self.reconcilers,
            &principal.tenant,
        );
        drop(request);
        let out = self
            .store_extracted(principal, metrics::METRICS, extracted)
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

    /// Stores what a reconciler's webhook mapped (docs/reconcilers.md),
    /// counted under `signal`.
    pub async fn reconciled(
        &self,
        principal: &Principal,
        signal: &'static str,
        out: Extracted,
    ) -> Result<Extracted, IngestError> {
        self.store_extracted(principal, signal, out).await
    }

    async fn store_extracted(
        &self,
        principal: &Principal,
        signal: &'static str,
        mut out: Extracted,
    ) -> Result<Extracted, IngestError> {
        let started = Instant::now();
        let total = out.events.len() as u64 + out.ignored_total() + out.rejected_total();
        self.metrics
            .batch_records
            .with_label_values(&[signal])
            .observe(total as f64);
        if !out.events.is_empty() {
            match self.store.ingest(&principal.tenant, &out.events).await {
                Ok(_) => {}
                // The data itself was refused: no retry can help, so each
                // event is tried alone and only the refused ones rejected.
                Err(error) if error.is_data_error() => {
                    tracing::warn!(
                        error = %error,
                        cause = ?std::error::Error::source(&error),
                        tenant = %principal.tenant,
                        signal,
                        "The store refused a batch's data; storing its events one by one"
                    );
                    self.store_one_by_one(principal, signal, &mut out).await?;
                }
                Err(error) => return Err(self.unavailable(principal, signal, &out, error)),
            }
        }
        self.metrics.count(
            signal,
            "accepted",
            "deployment_event",
            out.events.len() as u64,
        );
        self.metrics
            .count(signal, "ignored", "not_deployment_event", out.ignored);
        for (reason, n) in &out.ignored_for {
            self.metrics.count(signal, "ignored", reason, *n);
        }
        // Desired revisions of reconcilers are sent once each, now that the
        // store has them.
        self.reconcilers
            .desired
            .remember(std::mem::take(&mut out.remember));
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

    /// Stores each event alone; an event the store refuses for its data is
    /// rejected with the database's reason, the others are kept.
    async fn store_one_by_one(
        &self,
        principal: &Principal,
        signal: &'static str,
        out: &mut Extracted,
    ) -> Result<(), IngestError> {
        let events = std::mem::take(&mut out.events);
        for (i, event) in events.into_iter().enumerate() {
            match self
                .store
                .ingest(&principal.tenant, std::slice::from_ref(&event))
                .await
            {
                Ok(_) => out.events.push(event),
                Err(error) if error.is_data_error() => {
                    let cause = std::error::Error::source(&error)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    out.reject(
                        "refused_by_store",
                        format!(
                            "deployment event {i} of the batch: the database refused it: {cause}"
                        ),
                    );
                }
                Err(error) => return Err(self.unavailable(principal, signal, out, error)),
            }
        }
        Ok(())
    }

    /// Counts and logs a batch the store could not take; the sender retries.
    fn unavailable(
        &self,
        principal: &Principal,
        signal: &'static str,
        out: &Extracted,
        error: StoreError,
    ) -> IngestError {
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
        error.into()
    }
}

#[cfg(test)]
mod tests {
    use sextant_e2e::{Backend, TestDb};
    use sextant_model::{
        DeploymentEvent, DeploymentStatus, ObservedDeployment, Placement, Reconciler, UnixNanos,
    };

    use super::*;
    use crate::auth::Authenticator;

    fn observed(host: &str) -> DeploymentEvent {
        DeploymentEvent::Observed(ObservedDeployment {
            placement: Placement {
                workspace: "default".into(),
                application: "shop".into(),
                workload: "checkout".into(),
                environment: "stage".into(),
                target: "eu".into(),
            },
            host: host.into(),
            reconciler: Reconciler::default(),
            revision: "sha256:aa".into(),
            status: DeploymentStatus::Succeeded,
            message: None,
            job: None,
            commit_time: None,
            observed_at: UnixNanos(1),
        })
    }

    /// Extraction refuses NUL before it reaches a store; should any other
    /// value slip through that PostgreSQL refuses, the batch is not answered
    /// "unavailable" (retried forever): the refused event is rejected alone.
    #[tokio::test]
    async fn data_the_database_refuses_rejects_only_that_event() {
        let db = TestDb::new(Backend::Postgres).await;
        let store = crate::store::open(&db.url).await.expect("store");
        let ingestor = Ingestor::new(store.clone(), HubMetrics::new(), Duration::from_secs(300));
        let principal = Authenticator::new(&[])
            .check(None, crate::auth::Scope::Ingest)
            .expect("open mode");
        let out = Extracted {
            events: vec![observed("h1"), observed("h\0bad"), observed("h3")],
            ..Extracted::default()
        };
        let out = ingestor
            .store_extracted(&principal, metrics::LOGS, out)
            .await
            .expect("not unavailable");
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.rejected, vec![("refused_by_store", 1)]);
        assert!(
            out.error_message().contains("deployment event 1")
                && out.error_message().contains("0x00"),
            "{}",
            out.error_message()
        );
        assert_eq!(db.count("observed_deployments").await, 2);
    }
}
