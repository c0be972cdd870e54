//! The estimate against what prost really allocates, measured by walking
//! the decoded message's vectors and strings at their capacities.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::*;

fn vec_heap<T>(v: &[T], capacity: usize, each: impl Fn(&T) -> usize) -> usize {
    allocation(capacity * size_of::<T>()) + v.iter().map(each).sum::<usize>()
}

fn string_heap(s: &str, capacity: usize) -> usize {
    let _ = s;
    allocation(capacity)
}

fn any_heap(v: &AnyValue) -> usize {
    match &v.value {
        Some(Value::StringValue(s)) => string_heap(s, s.capacity()),
        Some(Value::BytesValue(b)) => allocation(b.capacity()),
        Some(Value::ArrayValue(a)) => vec_heap(&a.values, a.values.capacity(), any_heap),
        Some(Value::KvlistValue(l)) => vec_heap(&l.values, l.values.capacity(), kv_heap),
        _ => 0,
    }
}

fn kv_heap(kv: &KeyValue) -> usize {
    string_heap(&kv.key, kv.key.capacity()) + kv.value.as_ref().map_or(0, any_heap)
}

fn attrs_heap(a: &Vec<KeyValue>) -> usize {
    vec_heap(a, a.capacity(), kv_heap)
}

fn resource_heap(r: &Option<Resource>) -> usize {
    r.as_ref().map_or(0, |r| attrs_heap(&r.attributes))
}

/// The heap a decoded logs request holds.
fn logs_heap(req: &ExportLogsServiceRequest) -> usize {
    vec_heap(&req.resource_logs, req.resource_logs.capacity(), |r| {
        resource_heap(&r.resource)
            + allocation(r.schema_url.capacity())
            + vec_heap(&r.scope_logs, r.scope_logs.capacity(), |s| {
                s.scope.as_ref().map_or(0, |s| {
                    allocation(s.name.capacity())
                        + allocation(s.version.capacity())
                        + attrs_heap(&s.attributes)
                }) + allocation(s.schema_url.capacity())
                    + vec_heap(&s.log_records, s.log_records.capacity(), |l| {
                        allocation(l.severity_text.capacity())
                            + l.body.as_ref().map_or(0, any_heap)
                            + attrs_heap(&l.attributes)
                            + allocation(l.trace_id.capacity())
                            + allocation(l.span_id.capacity())
                            + allocation(l.event_name.capacity())
                    })
            })
    })
}

fn metrics_heap(req: &ExportMetricsServiceRequest) -> usize {
    vec_heap(
        &req.resource_metrics,
        req.resource_metrics.capacity(),
        |r| {
            resource_heap(&r.resource)
                + vec_heap(&r.scope_metrics, r.scope_metrics.capacity(), |s| {
                    vec_heap(&s.metrics, s.metrics.capacity(), |m| {
                        allocation(m.name.capacity())
                            + allocation(m.description.capacity())
                            + allocation(m.unit.capacity())
                            + match &m.data {
                                Some(Data::Gauge(g)) => {
                                    vec_heap(&g.data_points, g.data_points.capacity(), |p| {
                                        attrs_heap(&p.attributes)
                                    })
                                }
                                Some(Data::Histogram(h)) => {
                                    vec_heap(&h.data_points, h.data_points.capacity(), |p| {
                                        attrs_heap(&p.attributes)
                                            + allocation(p.bucket_counts.capacity() * 8)
                                            + allocation(p.explicit_bounds.capacity() * 8)
                                    })
                                }
                                Some(Data::ExponentialHistogram(h)) => {
                                    vec_heap(&h.data_points, h.data_points.capacity(), |p| {
                                        attrs_heap(&p.attributes)
                                            + p.positive.as_ref().map_or(0, |b| {
                                                allocation(b.bucket_counts.capacity() * 8)
                                            })
                                    })
                                }
                                _ => 0,
                            }
                    })
                })
        },
    )
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", "h1"), kv("k8s.cluster.name", "aks")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn deployment_record(i: usize) -> LogRecord {
    LogRecord {
        event_name: "sextant.deployment.observed".into(),
        time_unix_nano: 1,
        attributes: vec![
            kv("sextant.application", "shop"),
            kv("sextant.workload", &format!("checkout-{i}")),
            kv("deployment.environment.name", "prod"),
            kv("sextant.target", "eu-west-1"),
            kv(
                "host.name",
                &format!("ip-10-0-{}-{}.internal", i / 256, i % 256),
            ),
            kv(
                "sextant.revision",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            kv("deployment.status", "succeeded"),
        ],
        ..Default::default()
    }
}

/// Estimate ≥ what prost allocates, and not wildly more.
fn check_logs(name: &str, request: &ExportLogsServiceRequest) {
    let bytes = request.encode_to_vec();
    let decoded = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("decodes");
    let heap = logs_heap(&decoded);
    let estimate = protobuf(Signal::Logs, &bytes);
    assert!(
        heap <= estimate && estimate <= 2 * heap + 4096,
        "{name}: {} wire bytes, heap {heap}, estimate {estimate}",
        bytes.len()
    );
}

#[test]
fn logs_of_every_shape_are_estimated_from_above() {
    check_logs(
        "realistic",
        &logs((0..1000).map(deployment_record).collect()),
    );
    check_logs("one record", &logs(vec![deployment_record(1)]));
    check_logs("empty records", &logs(vec![LogRecord::default(); 100_000]));
    check_logs(
        "one empty attribute each",
        &logs(vec![
            LogRecord {
                attributes: vec![KeyValue::default()],
                ..Default::default()
            };
            20_000
        ]),
    );
    let nested = AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: vec![kv("a", "b"); 3],
                    })),
                };
                5
            ],
        })),
    };
    check_logs(
        "nested bodies",
        &logs(vec![
            LogRecord {
                body: Some(nested),
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                ..Default::default()
            };
            2_000
        ]),
    );
}

#[test]
fn metrics_of_every_shape_are_estimated_from_above() {
    let metric = |data| Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(Data::Gauge(Gauge {
                        data_points: vec![
                            NumberDataPoint {
                                attributes: vec![kv("a", "b"), kv("c", "d")],
                                ..Default::default()
                            };
                            3_000
                        ],
                    })),
                    metric(Data::Histogram(Histogram {
                        data_points: vec![
                            HistogramDataPoint {
                                bucket_counts: vec![0; 12],
                                explicit_bounds: vec![1.0; 11],
                                ..Default::default()
                            };
                            500
                        ],
                        ..Default::default()
                    })),
                    metric(Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![
                            ExponentialHistogramDataPoint {
                                positive: Some(Buckets {
                                    offset: 0,
                                    bucket_counts: vec![0; 40],
                                }),
                                ..Default::default()
                            };
                            500
                        ],
                        ..Default::default()
                    })),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();
    let decoded = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
    let heap = metrics_heap(&decoded);
    let estimate = protobuf(Signal::Metrics, &bytes);
    assert!(
        heap <= estimate && estimate <= 2 * heap + 4096,
        "heap {heap}, estimate {estimate}"
    );
}

#[test]
fn the_pathological_shapes_are_far_larger_than_their_bytes() {
    let empty = logs(vec![LogRecord::default(); 100_000]).encode_to_vec();
    let estimate = protobuf(Signal::Logs, &empty);
    assert!(
        estimate > 60 * empty.len(),
        "{estimate} for {}",
        empty.len()
    );
    let json = serde_json::to_vec(&logs(vec![LogRecord::default(); 100_000])).expect("json");
    let decoded: ExportLogsServiceRequest = serde_json::from_slice(&json).expect("decodes");
    assert!(self::json(&json) >= logs_heap(&decoded));
}

#[test]
fn garbage_ends_the_walk_without_a_panic() {
    for bytes in [
        &[0xff_u8; 20][..],
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x0a, 0x05, 0x12],
        &[0x0b],
        &[],
    ] {
        let _ = protobuf(Signal::Logs, bytes);
        let _ = protobuf(Signal::Metrics, bytes);
        let _ = protobuf(Signal::Traces, bytes);
    }
    // Deep nesting stops at prost's depth limit.
    let mut deep = Vec::new();
    for _ in 0..500 {
        let mut outer = vec![0x2a];
        let mut len = deep.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(b);
                break;
            }
            outer.push(b | 0x80);
        }
        outer.extend(deep);
        deep = outer;
    }
    let _ = protobuf(Signal::Logs, &deep);
}
