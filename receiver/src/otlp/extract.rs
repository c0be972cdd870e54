//! Turns OTLP requests into validated deployment events. Records that are
//! not deployment events are ignored; a deployment event that fails
//! validation is rejected on its own and the rest of the batch is kept.

use crate::reconcilers::{Attrs, Reconcilers, flux};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use sextant_model::{
    AttributeSource, DeploymentEvent, DesiredDeployment, EventError, EventKind, ObservedDeployment,
    UnixNanos, keys,
};

/// The outcome of reading one request.
#[derive(Debug, Default)]
pub struct Extracted {
    pub events: Vec<DeploymentEvent>,
    /// Records that are not deployment events.
    pub ignored: u64,
    /// Records of a reconciler that map to no deployment event, by reason
    /// label (a Flux `Alert`, a source used only for desired state, …).
    pub ignored_for: Vec<(&'static str, u64)>,
    /// Desired revisions of reconcilers' workloads in `events`, to remember
    /// once the store has taken them ([`crate::reconcilers::DesiredMemo`]).
    pub remember: Vec<(String, String)>,
    /// Rejected deployment events, by reason label.
    pub rejected: Vec<(&'static str, u64)>,
    /// The first problem, for `partial_success.error_message`.
    pub first_error: Option<String>,
}

impl Extracted {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// Counts one rejected record under `reason`; the first message is kept.
    pub fn reject(&mut self, reason: &'static str, message: String) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.rejected.push((reason, 1)),
        }
        self.first_error.get_or_insert(message);
    }

    /// Counts one record that maps to no deployment event under `reason`.
    pub fn ignore(&mut self, reason: &'static str) {
        match self.ignored_for.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.ignored_for.push((reason, 1)),
        }
    }

    /// Every ignored record, whatever the reason.
    pub fn ignored_total(&self) -> u64 {
        self.ignored + self.ignored_for.iter().map(|(_, n)| n).sum::<u64>()
    }

    pub(crate) fn reject_event(&mut self, location: String, error: EventError) {
        let reason = match error {
            EventError::Missing { .. } => "missing_attribute",
            EventError::Invalid { .. } => "invalid_attribute",
        };
        self.reject(reason, format!("{location}: {error}"));
    }

    /// The `partial_success` error message: the first problem and how many
    /// records were rejected.
    pub fn error_message(&self) -> String {
        match (&self.first_error, self.rejected_total()) {
            (Some(first), 1) => first.clone(),
            (Some(first), n) => format!("{n} deployment events rejected; first: {first}"),
            (None, _) => String::new(),
        }
    }
}

/// A record's attributes over its resource's: the record wins.
struct Merged<'a> {
    record: &'a [KeyValue],
    resource: &'a [KeyValue],
}

impl Merged<'_> {
    fn get(&self, key: &str) -> Option<&AnyValue> {
        self.record
            .iter()
            .chain(self.resource)
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
    }
}

impl AttributeSource for Merged<'_> {
    fn text(&self, key: &str) -> Result<Option<String>, String> {
        let kind = match self.get(key).and_then(|v| v.value.as_ref()) {
            None => return Ok(None),
            Some(Value::StringValue(s)) => return Ok(Some(s.clone())),
            Some(Value::IntValue(_)) => "an integer",
            Some(Value::BoolValue(_)) => "a boolean",
            Some(Value::DoubleValue(_)) => "a double",
            Some(Value::ArrayValue(_)) => "an array",
            Some(Value::KvlistValue(_)) => "a map",
            Some(Value::BytesValue(_)) => "bytes",
            Some(Value::StringValueStrindex(_)) => "a string-table reference",
        };
        // Deployment attributes are strings (semantic conventions); a number
        // or a boolean is a sender's mistake, refused rather than guessed.
        Err(format!("must be a string, not {kind}"))
    }
}

fn string_value(v: Option<&AnyValue>) -> Option<&str> {
    match v?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An event time the hub refuses; the message names the OTLP field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// After 2262-04-11: more than `i64` nanoseconds hold.
    #[error("{field} {nanos} is beyond 2262-04-11, the latest time the hub stores")]
    BeyondRange { field: &'static str, nanos: u64 },
    /// Past the clock-skew window.
    #[error(
        "{field} {} is {ahead_secs} s in the future, beyond the {window_secs} s clock-skew \
         window (max_future_skew_seconds)",
        at.to_rfc3339()
    )]
    Ahead {
        field: String,
        at: UnixNanos,
        ahead_secs: i64,
        window_secs: u64,
    },
}

/// Which event times the hub accepts: up to `max_ahead` past `now` (the
/// senders' clock skew); a time beyond is refused, so that no report can
/// stay current state forever (docs/security.md).
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    pub now: UnixNanos,
    pub max_ahead: std::time::Duration,
}

impl TimeWindow {
    /// The window around the current time.
    pub fn now(max_ahead: std::time::Duration) -> Self {
        Self {
            now: UnixNanos::now(),
            max_ahead,
        }
    }

    /// The time of an event: its own time, else its observed time, else
    /// now. A time `i64` cannot hold (after 2262) or beyond the window is
    /// refused with the field's name.
    fn event_time(&self, time: u64, observed: u64) -> Result<UnixNanos, TimeError> {
        let (field, nanos) = match (time, observed) {
            (0, 0) => return Ok(self.now),
            (0, observed) => ("observedTimeUnixNano", observed),
            (time, _) => ("timeUnixNano", time),
        };
        let at = UnixNanos::from_otlp(nanos).ok_or(TimeError::BeyondRange { field, nanos })?;
        self.check(at, field)
    }

    /// `at` if it is within the window; the refusal names `field`.
    pub fn check(&self, at: UnixNanos, field: &str) -> Result<UnixNanos, TimeError> {
        let ahead = at.0.saturating_sub(self.now.0);
        let window = i64::try_from(self.max_ahead.as_nanos()).unwrap_or(i64::MAX);
        if ahead > window {
            return Err(TimeError::Ahead {
                field: field.to_owned(),
                at,
                ahead_secs: ahead / 1_000_000_000,
                window_secs: self.max_ahead.as_secs(),
            });
        }
        Ok(at)
    }
}

/// Reads the deployment events of a logs request.
pub fn logs(request: &ExportLogsServiceRequest, window: TimeWindow) -> Extracted {
    let mut out = Extracted::default();
    for (ri, resource_logs) in request.resource_logs.iter().enumerate() {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for (si, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            for (li, record) in scope_logs.log_records.iter().enumerate() {
                let attrs = Merged {
                    record: &record.attributes,
                    resource,
                };
                let name = if record.event_name.is_empty() {
                    string_value(attrs.get(keys::EVENT_NAME)).unwrap_or_default()
                } else {
                    record.event_name.as_str()
                };
                let Some(kind) = EventKind::from_event_name(name) else {
                    out.ignored += 1;
                    continue;
                };
                let location = format!("resourceLogs[{ri}].scopeLogs[{si}].logRecords[{li}]");
                let at = match window
                    .event_time(record.time_unix_nano, record.observed_time_unix_nano)
                {
                    Ok(at) => at,
                    Err(problem) => {
                        out.reject("invalid_time", format!("{location}: {problem}"));
                        continue;
                    }
                };
                let event = match kind {
                    EventKind::Desired => {
                        DesiredDeployment::from_attributes(&attrs, at).map(DeploymentEvent::Desired)
                    }
                    EventKind::Observed => {
                        let body = string_value(record.body.as_ref());
                        ObservedDeployment::from_attributes(&attrs, body, at)
                            .map(DeploymentEvent::Observed)
                    }
                };
                match event {
                    Ok(event) => out.events.push(event),
                    Err(error) => out.reject_event(location, error),
                }
            }
        }
    }
    out
}

/// Reads the observed-state gauges of a metrics request, and Flux's
/// `gotk_resource_info` (mapped by [`crate::reconcilers::flux`] for
/// `tenant`). Counts data points.
pub fn metrics(
    request: &ExportMetricsServiceRequest,
    window: TimeWindow,
    reconcilers: &Reconcilers,
    tenant: &str,
) -> Extracted {
    let mut out = Extracted::default();
    let mut flux_series = Vec::new();
    for (ri, resource_metrics) in request.resource_metrics.iter().enumerate() {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for (si, scope_metrics) in resource_metrics.scope_metrics.iter().enumerate() {
            for (mi, metric) in scope_metrics.metrics.iter().enumerate() {
                let location = format!("resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]");
                if metric.name == flux::GAUGE {
                    flux_gauge(
                        metric,
                        resource,
                        &location,
                        window,
                        &mut out,
                        &mut flux_series,
                    );
                    continue;
                }
                if metric.name != keys::EVENT_OBSERVED {
                    out.ignored += data_points(metric.data.as_ref());
                    continue;
                }
                let Some(Data::Gauge(gauge)) = &metric.data else {
                    let n = data_points(metric.data.as_ref()).max(1);
                    for _ in 0..n {
                        out.reject(
                            "not_a_gauge",
                            format!(
                                "{location}: metric `{}` must be a gauge",
                                keys::EVENT_OBSERVED
                            ),
                        );
                    }
                    continue;
                };
                for (pi, point) in gauge.data_points.iter().enumerate() {
                    let location = format!("{location}.gauge.dataPoints[{pi}]");
                    let value = match point.value {
                        Some(number_data_point::Value::AsInt(v)) => v as f64,
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        None => f64::NAN,
                    };
                    if value != 1.0 {
                        out.reject(
                            "invalid_value",
                            format!("{location}: `{}` must have value 1", keys::EVENT_OBSERVED),
                        );
                        continue;
                    }
                    let attrs = Merged {
                        record: &point.attributes,
                        resource,
                    };
                    let at = match window.event_time(point.time_unix_nano, 0) {
                        Ok(at) => at,
                        Err(problem) => {
                            out.reject("invalid_time", format!("{location}: {problem}"));
                            continue;
                        }
                    };
                    match ObservedDeployment::from_attributes(&attrs, None, at) {
                        Ok(o) => out.events.push(DeploymentEvent::Observed(o)),
                        Err(error) => out.reject_event(location, error),
                    }
                }
            }
        }
    }
    if !flux_series.is_empty() {
        flux::series(flux_series, reconcilers, tenant, &mut out);
    }
    out
}

/// Reads the series of a `gotk_resource_info` gauge (the Prometheus labels
/// are the data points' attributes; the collector's resource attributes
/// such as `k8s.cluster.name` lie under them).
fn flux_gauge(
    metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
    resource: &[KeyValue],
    location: &str,
    window: TimeWindow,
    out: &mut Extracted,
    series: &mut Vec<flux::Series>,
) {
    // kube-state-metrics exposes it as a gauge; scraped as OpenMetrics, an
    // `info` metric arrives as a non-monotonic sum.
    let (points, field) = match &metric.data {
        Some(Data::Gauge(gauge)) => (&gauge.data_points, "gauge"),
        Some(Data::Sum(sum)) if !sum.is_monotonic => (&sum.data_points, "sum"),
        other => {
            let n = data_points(other.as_ref()).max(1);
            for _ in 0..n {
                out.reject(
                    "not_a_gauge",
                    format!(
                        "{location}: metric `{}` must be a gauge (or a non-monotonic sum)",
                        flux::GAUGE
                    ),
                );
            }
            return;
        }
    };
    for (pi, point) in points.iter().enumerate() {
        let location = format!("{location}.{field}.dataPoints[{pi}]");
        let merged = Merged {
            record: &point.attributes,
            resource,
        };
        let text = |key: &str| string_value(merged.get(key)).map(str::to_owned);
        let (Some(kind), Some(name)) = (text("customresource_kind"), text("name")) else {
            out.reject(
                "missing_attribute",
                format!(
                    "{location}: {} needs the labels `customresource_kind` and `name` \
                     (Flux's kube-state-metrics config)",
                    flux::GAUGE
                ),
            );
            continue;
        };
        let at = match window.event_time(point.time_unix_nano, 0) {
            Ok(at) => at,
            Err(problem) => {
                out.reject("invalid_time", format!("{location}: {problem}"));
                continue;
            }
        };
        let mut attrs = Attrs::default();
        for key in [
            keys::K8S_CLUSTER_NAME,
            keys::ENVIRONMENT,
            keys::APPLICATION,
            keys::WORKLOAD,
            keys::TARGET,
            keys::WORKSPACE,
        ] {
            attrs.set_opt(key, string_value(merged.get(key)));
        }
        series.push(flux::Series {
            kind,
            namespace: text("exported_namespace")
                .or_else(|| text("namespace"))
                .unwrap_or_default(),
            name,
            ready: text("ready"),
            suspended: text("suspended").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            revision: text("revision"),
            source_name: text("source_name"),
            attrs,
            at,
            location,
        });
    }
}

fn data_points(data: Option<&Data>) -> u64 {
    let n = match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    n as u64
}

#[cfg(test)]
mod tests;
