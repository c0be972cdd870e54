//! Shared helpers: payloads built per docs/otlp-conventions.md, outbox
//! configs, polling.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_e2e::wait;
use sextant_exporters::{FsyncPolicy, OutboxConfig};
use sextant_model::keys;

pub fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("sextant_exporters=debug")
            .with_test_writer()
            .try_init();
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Base time of the test events: 2026-11-01T00:00:00Z.
pub const T0: u64 = 1_793_491_200_000_000_000;

/// One `sextant.deployment.observed` event from `host`: the `i`th
/// revision of `checkout` in `stage`, one second after the previous.
pub fn observed(host: &str, i: u64) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "sextant-agent"),
                kv(keys::HOST_NAME, host),
                kv(keys::RECONCILER_NAME, "sextant-agent"),
                kv(keys::RECONCILER_TYPE, "agent"),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                time_unix_nano: T0 + i * 1_000_000_000,
                event_name: keys::EVENT_OBSERVED.to_owned(),
                attributes: vec![
                    kv(keys::APPLICATION, "shop"),
                    kv(keys::WORKLOAD, "checkout"),
                    kv(keys::ENVIRONMENT, "stage"),
                    kv(keys::TARGET, "eu-west"),
                    kv(keys::REVISION, &format!("rev-{i:06}")),
                    kv(keys::STATUS, "succeeded"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn observed_bytes(host: &str, i: u64) -> Vec<u8> {
    observed(host, i).encode_to_vec()
}

/// The revision index carried by an encoded `ResourceLogs`.
pub fn revision_index(payload: &[u8]) -> u64 {
    let rl = ResourceLogs::decode(payload).unwrap();
    let record = &rl.scope_logs[0].log_records[0];
    let rev = record
        .attributes
        .iter()
        .find(|kv| kv.key == keys::REVISION)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    rev.trim_start_matches("rev-").parse().unwrap()
}

/// A small outbox: 64 KiB segments, 1 MiB cap, no fsync (tests need speed,
/// not power-loss safety).
pub fn small_config() -> OutboxConfig {
    OutboxConfig {
        max_bytes: 1 << 20,
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::Never,
        max_record_bytes: 16 << 10,
        ..OutboxConfig::default()
    }
}

/// Polls `check` until it holds, or panics after `timeout` naming `what`
/// (on tokio's clock: the paused one in a test on paused time).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait::until(timeout, Duration::from_millis(50), || {
        let done = check();
        async move {
            if done.await {
                Ok(())
            } else {
                Err(format!("timed out waiting for {what}"))
            }
        }
    })
    .await;
}
