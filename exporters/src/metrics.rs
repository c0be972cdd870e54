//! Prometheus metrics of the outbox and its senders (`sextant_outbox_*`).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Label value of `consumer` for drops that happen before any consumer sees
/// the record (a full queue, a torn or corrupt record on disk).
pub const NO_CONSUMER: &str = "";

/// Why records were dropped (`reason` label of
/// `sextant_outbox_dropped_records_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A heartbeat refused above the heartbeat high-water mark.
    HeartbeatFull,
    /// A state change refused at the size cap.
    Full,
    /// A record cut short at the end of the last segment (crash mid-write).
    Torn,
    /// A record whose checksum failed, or records behind lost framing.
    Corrupt,
    /// Log records the peer rejected in `partial_success`.
    Rejected,
    /// A batch the peer refused as malformed (HTTP 400, `INVALID_ARGUMENT`).
    BadRequest,
    /// A single record too large for the peer (HTTP 413, `RESOURCE_EXHAUSTED`).
    TooLarge,
    /// Another non-retryable answer.
    Refused,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeartbeatFull => "heartbeat_full",
            Self::Full => "full",
            Self::Torn => "torn",
            Self::Corrupt => "corrupt",
            Self::Rejected => "rejected",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Refused => "refused",
        }
    }
}

/// The outbox's collectors. Cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct OutboxMetrics {
    pub(crate) records: IntGaugeVec,
    pub(crate) bytes: IntGauge,
    pub(crate) segments: IntGauge,
    pub(crate) oldest_age: IntGaugeVec,
    pub(crate) appends: IntCounterVec,
    pub(crate) attempts: IntCounterVec,
    pub(crate) failures: IntCounterVec,
    pub(crate) drops: IntCounterVec,
    pub(crate) delivered: IntCounterVec,
    pub(crate) in_flight: IntGaugeVec,
}

impl std::fmt::Debug for OutboxMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMetrics").finish_non_exhaustive()
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("sextant_outbox_{name}"), help)
}

impl OutboxMetrics {
    /// Creates the collectors, registered nowhere yet.
    pub fn new() -> Self {
        // Names, help texts and labels are constants: creation only fails
        // on an invalid name, which these are not.
        fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            IntGaugeVec::new(opts(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        }
        fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            IntCounterVec::new(opts(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        }
        fn gauge(name: &str, help: &str) -> IntGauge {
            IntGauge::with_opts(opts(name, help))
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        }
        Self {
            records: gauge_vec(
                "records",
                "Records queued and not yet delivered, per consumer (endpoint).",
                &["consumer"],
            ),
            bytes: gauge("bytes", "Bytes of segment files on disk."),
            segments: gauge("segments", "Segment files on disk."),
            oldest_age: gauge_vec(
                "oldest_record_age_seconds",
                "Age of the oldest record not yet delivered, per consumer; 0 when none.",
                &["consumer"],
            ),
            appends: counter_vec(
                "appends_total",
                "Records appended to the outbox, by kind.",
                &["kind"],
            ),
            attempts: counter_vec(
                "send_attempts_total",
                "Export requests sent, per consumer.",
                &["consumer"],
            ),
            failures: counter_vec(
                "send_failures_total",
                "Export requests that failed, per consumer and reason.",
                &["consumer", "reason"],
            ),
            drops: counter_vec(
                "dropped_records_total",
                "Records dropped, by reason; consumer is empty for drops on the disk side.",
                &["consumer", "reason"],
            ),
            delivered: counter_vec(
                "delivered_records_total",
                "Records the peer accepted (including those it rejected in partial_success), per consumer.",
                &["consumer"],
            ),
            in_flight: gauge_vec(
                "in_flight_requests",
                "Export requests sent and not yet answered, per consumer.",
                &["consumer"],
            ),
        }
    }

    /// Registers every collector in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.records.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.segments.clone()))?;
        registry.register(Box::new(self.oldest_age.clone()))?;
        registry.register(Box::new(self.appends.clone()))?;
        registry.register(Box::new(self.attempts.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.drops.clone()))?;
        registry.register(Box::new(self.delivered.clone()))?;
        registry.register(Box::new(self.in_flight.clone()))?;
        Ok(())
    }

    pub(crate) fn drop_records(&self, consumer: &str, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops
                .with_label_values(&[consumer, reason.as_str()])
                .inc_by(n);
        }
    }

    /// Records dropped so far for `reason`, summed over consumers.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        use prometheus::core::Collector;
        self.drops
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "reason" && l.value() == reason.as_str())
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Send failures so far for `consumer` and `reason` label.
    pub fn failures(&self, consumer: &str, reason: &str) -> u64 {
        self.failures.with_label_values(&[consumer, reason]).get()
    }

    /// Records delivered so far to `consumer`.
    pub fn delivered(&self, consumer: &str) -> u64 {
        self.delivered.with_label_values(&[consumer]).get()
    }

    /// Export requests of `consumer` sent and not yet answered.
    pub fn in_flight(&self, consumer: &str) -> u64 {
        u64::try_from(self.in_flight.with_label_values(&[consumer]).get()).unwrap_or(0)
    }
}

impl Default for OutboxMetrics {
    fn default() -> Self {
        Self::new()
    }
}
