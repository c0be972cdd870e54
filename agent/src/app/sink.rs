//! Where the observer's reports go: the outbox, one `ResourceLogs` each,
//! counted in the agent's own metrics.

use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use prost::Message;
use sextant_exporters::outbox::{AppendOutcome, Outbox, RecordKind};
use sextant_model::UnixNanos;

use crate::observe::{self, Identity, Report, ReportKind, Sink};

/// The agent's own metrics, beside the outbox's.
#[derive(Clone)]
pub struct AgentMetrics {
    pub observed_containers: IntGauge,
    pub reports: IntCounterVec,
    /// Tasks in the journal by kind and result, read at each scrape.
    pub tasks: IntGaugeVec,
}

impl AgentMetrics {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<Self> {
        let observed_containers = IntGauge::with_opts(Opts::new(
            "sextant_agent_observed_containers",
            "Containers with Sextant labels on this host.",
        ))?;
        let reports = IntCounterVec::new(
            Opts::new(
                "sextant_agent_reports_total",
                "Observations written to the outbox, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        let tasks = IntGaugeVec::new(
            Opts::new(
                "sextant_agent_tasks",
                "Deploy tasks recorded in this agent's task journal, by kind and result \
                 (running, succeeded, failed, rolled_back; unreadable for a record that \
                 does not parse).",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(observed_containers.clone()))?;
        registry.register(Box::new(reports.clone()))?;
        registry.register(Box::new(tasks.clone()))?;
        Ok(Self {
            observed_containers,
            reports,
            tasks,
        })
    }
}

/// Writes observations to the outbox as one `ResourceLogs` each.
pub struct OutboxSink {
    outbox: Outbox,
    resource: Resource,
    metrics: AgentMetrics,
}

impl OutboxSink {
    pub fn new(outbox: Outbox, identity: &Identity, metrics: AgentMetrics) -> Self {
        Self {
            outbox,
            resource: observe::resource(identity),
            metrics,
        }
    }
}

impl Sink for OutboxSink {
    type Error = sextant_exporters::OutboxError;

    fn observed(&self, containers: usize) {
        self.metrics
            .observed_containers
            .set(i64::try_from(containers).unwrap_or(i64::MAX));
    }

    fn report(&self, reports: &[Report]) -> Result<(), Self::Error> {
        let now = UnixNanos::now();
        let encoded: Vec<(RecordKind, Vec<u8>)> = reports
            .iter()
            .map(|r| {
                let kind = match r.kind {
                    ReportKind::Change => RecordKind::StateChange,
                    ReportKind::Heartbeat => RecordKind::Heartbeat,
                };
                let logs =
                    observe::resource_logs(&self.resource, observe::record(&r.observation, now));
                (kind, logs.encode_to_vec())
            })
            .collect();
        let batch: Vec<(RecordKind, &[u8])> =
            encoded.iter().map(|(k, b)| (*k, b.as_slice())).collect();
        let outcomes = self.outbox.append_batch(&batch)?;
        for ((kind, _), outcome) in batch.iter().zip(outcomes) {
            let result = match outcome {
                AppendOutcome::Stored { .. } => "stored",
                AppendOutcome::Dropped(_) => "dropped",
            };
            self.metrics
                .reports
                .with_label_values(&[kind.as_str(), result])
                .inc();
        }
        Ok(())
    }
}
