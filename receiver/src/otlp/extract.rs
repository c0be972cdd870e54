//! Turns OTLP requests into validated deployment events. Records that are
//! not deployment events are ignored; a deployment event that fails
//! validation is rejected on its own and the rest of the batch is kept.

use super::outcome::Extracted;
use super::window::TimeWindow;
use crate::reconcilers::{Attrs, Reconcilers, flux};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use sextant_model::otlp::{Merged, string_value};
use sextant_model::{DeploymentEvent, DesiredDeployment, EventKind, ObservedDeployment, keys};

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
                    EventKind::Desired => DesiredDeployment::from_attributes(&attrs, at)
                        .and_then(|d| d.traced(&record.trace_id, &record.span_id))
                        .map(|d| d.sent_by(string_value(attrs.get(keys::SERVICE_NAME))))
                        .map(DeploymentEvent::Desired),
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
