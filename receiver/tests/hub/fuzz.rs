//! A bounded fuzz test of ingest (docs/security.md, "Keeping it found"):
//! random and structured mutations of valid OTLP requests, protobuf and
//! JSON, with and without gzip, over OTLP/HTTP and OTLP/gRPC, on both
//! backends. No answer may be a server error, the hub must not stop, and a
//! valid batch sent between the mutants must still land.
//!
//! `SEXTANT_FUZZ_SEED` replays a run (each failure prints its seed);
//! `SEXTANT_FUZZ_CASES` sets the mutants per transport (default 1,000).

use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::helpers::{Backend, TestApp, desired, kv, logs, observed, on_both_backends, spawn_app};

const AT: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

fn cases() -> usize {
    std::env::var("SEXTANT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn seed() -> u64 {
    std::env::var("SEXTANT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_nanos() ^ u64::from(std::process::id()))
}

/// The valid requests mutants start from: logs of both events, with
/// messages and bodies, and an observed-state gauge.
fn seed_logs() -> Value {
    let now = now_nanos();
    let mut failed = observed("h2", AT, "sha256:bb", "failed", now);
    failed["body"] = json!({"stringValue": "pull failed"});
    logs(vec![
        observed("h1", AT, "sha256:aa", "succeeded", now),
        failed,
        desired(AT, "1.2.3", "sha256:aa", now),
        json!({"body": {"stringValue": "an ordinary log line"}}),
    ])
}

fn seed_metrics() -> Value {
    let attrs = vec![
        kv("host.name", "h3"),
        kv("sextant.application", "shop"),
        kv("sextant.workload", "checkout"),
        kv("deployment.environment.name", "stage"),
        kv("sextant.target", "eu"),
        kv("sextant.revision", "sha256:aa"),
        kv("deployment.status", "succeeded"),
    ];
    json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "sextant.deployment.observed", "gauge": {"dataPoints": [
            {"asInt": "1", "timeUnixNano": now_nanos().to_string(), "attributes": attrs}
        ]}},
        {"name": "process.cpu.time", "sum": {"dataPoints": [{"asDouble": 1.5}]}}
    ]}]}]})
}

/// Strings that have broken parsers and databases before.
const NASTY: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "a\u{0}b",
    "'; DROP TABLE hosts; --",
    "%00",
    "\u{feff}",
    "\u{1F680}",
    "\u{202e}rtl",
    "\\",
    "\"",
    "{{}}",
    "9223372036854775808",
    "-1",
    "succeeded\n",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => NASTY[rng.random_range(0..NASTY.len())].to_owned(),
        1 => "x".repeat(rng.random_range(0..2000)),
        2 => (0..rng.random_range(0..40))
            .map(|_| char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('?'))
            .collect(),
        _ => [
            "succeeded",
            "failed",
            "in_progress",
            "stage",
            "sha256:aa",
            "h1",
        ][rng.random_range(0..6)]
        .to_owned(),
    }
}

fn random_any(rng: &mut StdRng, depth: u32) -> AnyValue {
    let value = match rng.random_range(0..if depth > 3 { 5 } else { 7 }) {
        0 => V::StringValue(random_string(rng)),
        1 => V::IntValue(rng.random()),
        2 => V::BoolValue(rng.random()),
        3 => V::DoubleValue(f64::from_bits(rng.random())),
        4 => V::BytesValue((0..rng.random_range(0..20)).map(|_| rng.random()).collect()),
        5 => V::ArrayValue(ArrayValue {
            values: (0..rng.random_range(0..4))
                .map(|_| random_any(rng, depth + 1))
                .collect(),
        }),
        _ => V::KvlistValue(KeyValueList {
            values: (0..rng.random_range(0..4))
                .map(|_| KeyValue {
                    key: random_string(rng),
                    value: Some(random_any(rng, depth + 1)),
                    ..Default::default()
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

/// A random time: unset, old, now, the skew edge, far future, past i64.
fn random_time(rng: &mut StdRng) -> u64 {
    match rng.random_range(0..6) {
        0 => 0,
        1 => rng.random_range(1..1_000_000),
        2 => now_nanos(),
        3 => now_nanos() + rng.random_range(0..600) * 1_000_000_000,
        4 => 7_258_118_400_000_000_000,
        _ => rng.random_range(i64::MAX as u64..=u64::MAX),
    }
}

/// Mutates a decoded logs request field by field.
fn mutate_logs(
    rng: &mut StdRng,
    mut request: ExportLogsServiceRequest,
) -> ExportLogsServiceRequest {
    for _ in 0..rng.random_range(1..6) {
        let Some(resource) = request.resource_logs.first_mut() else {
            break;
        };
        let Some(scope) = resource.scope_logs.first_mut() else {
            break;
        };
        let records = &mut scope.log_records;
        if records.is_empty() {
            break;
        }
        let i = rng.random_range(0..records.len());
        let record = &mut records[i];
        match rng.random_range(0..10) {
            // A stored attribute with a hostile string: the likeliest way
            // to reach the database with something it refuses.
            0 if !record.attributes.is_empty() => {
                let j = rng.random_range(0..record.attributes.len());
                let nasty = NASTY[rng.random_range(0..NASTY.len())];
                record.attributes[j].value = Some(AnyValue {
                    value: Some(V::StringValue(nasty.to_owned())),
                });
            }
            8 if !record.attributes.is_empty() => {
                let j = rng.random_range(0..record.attributes.len());
                record.attributes[j].value = Some(random_any(rng, 0));
            }
            1 if !record.attributes.is_empty() => {
                let j = rng.random_range(0..record.attributes.len());
                record.attributes.remove(j);
            }
            2 => record.attributes.push(KeyValue {
                key: random_string(rng),
                value: Some(random_any(rng, 0)),
                ..Default::default()
            }),
            3 => record.time_unix_nano = random_time(rng),
            4 => record.observed_time_unix_nano = random_time(rng),
            5 => record.event_name = random_string(rng),
            6 => record.body = Some(random_any(rng, 0)),
            7 => {
                let copy = record.clone();
                records.extend(std::iter::repeat_n(copy, rng.random_range(1..50)));
            }
            _ => {
                if let Some(r) = resource.resource.as_mut() {
                    r.attributes.push(KeyValue {
                        key: ["host.name", "k8s.cluster.name", "sextant.workspace"]
                            [rng.random_range(0..3)]
                        .to_owned(),
                        value: Some(random_any(rng, 0)),
                        ..Default::default()
                    });
                }
            }
        }
    }
    request
}

/// Mutates a JSON document node by node.
fn mutate_json(rng: &mut StdRng, value: &mut Value, depth: u32) {
    let replace = depth > 0 && rng.random_range(0..6) == 0;
    if replace {
        *value = match rng.random_range(0..8) {
            0 => Value::Null,
            1 => json!(rng.random::<bool>()),
            2 => json!(rng.random::<i64>()),
            3 => json!(u64::MAX.to_string()),
            4 => json!(random_string(rng)),
            5 => json!([]),
            6 => json!({}),
            _ => json!(f64::MAX),
        };
        return;
    }
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if rng.random_range(0..10) == 0 {
                    // snake_case keys are ignored by OTLP/JSON decoders
                    let v = map.remove(&key).unwrap_or(Value::Null);
                    map.insert(key.to_lowercase() + "_", v);
                } else if let Some(v) = map.get_mut(&key) {
                    mutate_json(rng, v, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                mutate_json(rng, item, depth + 1);
            }
            if !items.is_empty() && rng.random_range(0..8) == 0 {
                let copy = items[0].clone();
                items.push(copy);
            }
        }
        _ => {}
    }
}

/// Flips, inserts, deletes, truncates or duplicates bytes.
fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..8) {
        if bytes.is_empty() {
            bytes.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..bytes.len());
        match rng.random_range(0..6) {
            0 => bytes[i] ^= 1 << rng.random_range(0..8),
            1 => bytes[i] = rng.random(),
            2 => bytes.insert(i, rng.random()),
            3 => {
                bytes.remove(i);
            }
            4 => bytes.truncate(i),
            _ => {
                let end = (i + rng.random_range(1..64)).min(bytes.len());
                let chunk = bytes[i..end].to_vec();
                bytes.splice(i..i, chunk);
            }
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// One mutant: the signal, protobuf or JSON, and its bytes.
struct Mutant {
    signal: &'static str,
    json: bool,
    body: Vec<u8>,
}

fn mutant(rng: &mut StdRng, allow_json: bool) -> Mutant {
    let logs_signal = rng.random_range(0..4) != 0;
    let seed = if logs_signal {
        seed_logs()
    } else {
        seed_metrics()
    };
    let signal = if logs_signal { "logs" } else { "metrics" };
    let json = allow_json && rng.random_range(0..2) == 0;
    let mut body = if json {
        let mut doc = seed;
        if rng.random_range(0..3) != 0 {
            mutate_json(rng, &mut doc, 0);
        }
        doc.to_string().into_bytes()
    } else if logs_signal {
        let request: ExportLogsServiceRequest = serde_json::from_value(seed).expect("seed");
        let request = if rng.random_range(0..3) != 0 {
            mutate_logs(rng, request)
        } else {
            request
        };
        request.encode_to_vec()
    } else {
        let request: ExportMetricsServiceRequest = serde_json::from_value(seed).expect("seed");
        request.encode_to_vec()
    };
    if rng.random_range(0..3) == 0 {
        mutate_bytes(rng, &mut body);
    }
    Mutant { signal, json, body }
}

/// A gRPC codec that sends a mutant's bytes as they are and reads any
/// answer as bytes.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn send_http(app: &TestApp, rng: &mut StdRng, m: &Mutant) -> Result<(), String> {
    let gzipped = rng.random_range(0..3) == 0;
    let mut body = if gzipped {
        gzip(&m.body)
    } else {
        m.body.clone()
    };
    if gzipped && rng.random_range(0..4) == 0 {
        mutate_bytes(rng, &mut body);
    }
    let mut request = app
        .client
        .post(format!("http://{}/v1/{}", app.http, m.signal))
        .header(
            "content-type",
            if m.json {
                "application/json"
            } else {
                "application/x-protobuf"
            },
        )
        .timeout(Duration::from_secs(20))
        .body(body);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    let res = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = res.status();
    if status.is_server_error() {
        let text = res.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", text.escape_debug()));
    }
    Ok(())
}

async fn send_grpc(
    channel: &tonic::transport::Channel,
    rng: &mut StdRng,
    m: &Mutant,
) -> Result<(), String> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if rng.random_range(0..2) == 0 {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let path = if m.signal == "logs" {
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
    } else {
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
    };
    let mut request = tonic::Request::new(Bytes::from(m.body.clone()));
    request.set_timeout(Duration::from_secs(20));
    match grpc
        .unary(request, http::uri::PathAndQuery::from_static(path), Raw)
        .await
    {
        Ok(_) => Ok(()),
        Err(s) => match s.code() {
            tonic::Code::Internal
            | tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
            | tonic::Code::DeadlineExceeded => Err(format!("gRPC {:?}: {}", s.code(), s.message())),
            _ => Ok(()),
        },
    }
}

/// A valid batch from a new host lands and is visible.
async fn still_ingests(app: &TestApp, n: usize) -> Result<(), String> {
    let host = format!("canary-{n}");
    let res = app
        .post_json(
            "logs",
            &logs(vec![observed(
                &host,
                AT,
                "sha256:aa",
                "succeeded",
                now_nanos(),
            )]),
            None,
        )
        .await;
    let answer: Value = res.json().await.map_err(|e| e.to_string())?;
    if !answer["partialSuccess"].is_null() {
        return Err(format!("a valid batch was rejected: {answer}"));
    }
    let (status, host_view) = app.get(&format!("/api/v1/hosts/{host}"), None).await;
    if status != 200 {
        return Err(format!(
            "the valid batch did not land: {status} {host_view}"
        ));
    }
    Ok(())
}

async fn mutants_never_get_a_server_error(b: Backend) {
    let seed = seed();
    let app = spawn_app(b).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut rng = StdRng::seed_from_u64(seed);
    let n = cases();
    for case in 0..n {
        let http = mutant(&mut rng, true);
        if let Err(e) = send_http(&app, &mut rng, &http).await {
            panic!(
                "seed {seed}, case {case} over HTTP ({} {}): {e}",
                http.signal,
                if http.json { "JSON" } else { "protobuf" }
            );
        }
        let grpc = mutant(&mut rng, false);
        if let Err(e) = send_grpc(&channel, &mut rng, &grpc).await {
            panic!("seed {seed}, case {case} over gRPC ({}): {e}", grpc.signal);
        }
        if case % 50 == 49 {
            still_ingests(&app, case)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}, after case {case}: {e}"));
        }
    }
    still_ingests(&app, n)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}, at the end: {e}"));
    app.stop().await;
}

/// The reconciler webhooks' valid payloads: Flux events (fixtures) and an
/// Argo CD notification rendered from the shipped template.
fn seed_webhooks() -> Vec<(&'static str, String)> {
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/reconcilers/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    };
    let argocd = sextant_e2e::argocd::render(
        &sextant_e2e::argocd::shipped_template(),
        &json!({"app": sextant_e2e::argocd::application(), "context": {"environment": "stage"}}),
    );
    vec![
        ("flux", fixture("flux-event-kustomization-succeeded.json")),
        (
            "flux",
            fixture("flux-event-helmrelease-upgrade-failed.json"),
        ),
        ("flux", fixture("flux-event-docs-v1beta3.json")),
        ("argocd", argocd),
    ]
}

/// Mutants of the webhooks' JSON (node by node, or byte by byte), with and
/// without a random `X-Signature` and address query: never a server error,
/// and valid reports still land (docs/reconcilers.md, "Answers").
async fn webhook_mutants_never_get_a_server_error(b: Backend) {
    let seed = seed();
    let app = spawn_app(b).await;
    let seeds = seed_webhooks();
    let mut rng = StdRng::seed_from_u64(seed);
    let n = cases();
    let mut accepted = 0;
    for case in 0..n {
        let (path, body) = &seeds[rng.random_range(0..seeds.len())];
        let body = if rng.random_range(0..3) == 0 {
            let mut bytes = body.clone().into_bytes();
            mutate_bytes(&mut rng, &mut bytes);
            bytes
        } else {
            let mut value: Value = serde_json::from_str(body).expect("seed JSON");
            mutate_json(&mut rng, &mut value, 0);
            value.to_string().into_bytes()
        };
        let query = match rng.random_range(0..4) {
            0 => format!("?cluster={}", urlencode(&random_string(&mut rng))),
            1 => "?environment=&cluster=".to_owned(),
            _ => String::new(),
        };
        let mut req = app
            .client
            .post(format!("http://{}/v1/reconcilers/{path}{query}", app.http))
            .header("content-type", "application/json")
            .body(body);
        if rng.random_range(0..5) == 0 {
            req = req.header(
                "x-signature",
                format!("sha256={}", random_string(&mut rng).len()),
            );
        }
        let res = req.send().await.unwrap_or_else(|e| {
            panic!("seed {seed}, case {case} ({path}): the hub did not answer: {e}")
        });
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        assert!(
            status < 500,
            "seed {seed}, case {case} ({path}): {status} {text}"
        );
        if status == 200 {
            accepted += 1;
        }
        if case % 50 == 49 {
            still_ingests(&app, case)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}, after case {case}: {e}"));
        }
    }
    // Some mutants leave a valid payload: the path was exercised past the
    // parser, not only refused at it.
    assert!(accepted > 0, "seed {seed}: no mutant was accepted");
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

on_both_backends!(
    mutants_never_get_a_server_error,
    webhook_mutants_never_get_a_server_error
);
