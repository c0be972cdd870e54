//! One deployment event as the CLI sends it: attributes split between the
//! resource (who reports) and the log record (what is reported), validated
//! with `sextant-model` before anything goes on the wire.

use std::collections::BTreeMap;

use anyhow::anyhow;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use sextant_model::otlp::{EventRecord, Reporter};
use sextant_model::{
    AttributeSource, DeploymentEvent, DesiredDeployment, EventError, EventKind, ObservedDeployment,
    UnixNanos, keys,
};

/// `service.name` of the resource, and the instrumentation scope name.
pub const SCOPE_NAME: &str = "sextant-cli";

/// Attribute keys that identify the reporter; they go on the resource.
const RESOURCE_KEYS: [&str; 4] = [
    keys::HOST_NAME,
    keys::K8S_CLUSTER_NAME,
    keys::RECONCILER_NAME,
    keys::RECONCILER_TYPE,
];

/// A deployment event ready to send.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// Where it came from, for error messages: `flags`, or a file and document.
    pub origin: String,
    /// Attributes in the order they were given; empty values are left out.
    attributes: Vec<(&'static str, String)>,
    pub time: UnixNanos,
}

impl Event {
    pub fn new(kind: EventKind, origin: impl Into<String>, time: UnixNanos) -> Self {
        Self {
            kind,
            origin: origin.into(),
            attributes: Vec::new(),
            time,
        }
    }

    /// Adds `key` unless `value` is absent or empty (an empty value counts
    /// as absent at the hub too).
    pub fn set(&mut self, key: &'static str, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(value) = value.map(Into::into).filter(|v| !v.is_empty()) {
            self.attributes.retain(|(k, _)| *k != key);
            self.attributes.push((key, value));
        }
        self
    }

    /// Identity attributes, sent on the resource.
    pub fn resource(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.attributes
            .iter()
            .filter(|(k, _)| RESOURCE_KEYS.contains(k))
            .map(|(k, v)| (*k, v.as_str()))
    }

    /// Per-deployment attributes, sent on the log record.
    pub fn record(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.attributes
            .iter()
            .filter(|(k, _)| !RESOURCE_KEYS.contains(k))
            .map(|(k, v)| (*k, v.as_str()))
    }

    /// Who reports it: the CLI relaying the event, with the event's
    /// identity attributes.
    fn reporter(&self) -> Reporter {
        self.resource().fold(
            Reporter::relay(SCOPE_NAME, env!("CARGO_PKG_VERSION")),
            |reporter, (k, v)| reporter.with(k, v),
        )
    }

    /// The log record; `now` is its observed time.
    fn log_record(&self, now: UnixNanos) -> LogRecord {
        self.record()
            .fold(
                EventRecord::new(self.kind, self.time).observed_at(now),
                |record, (k, v)| record.with(k, v),
            )
            .into()
    }

    /// Validates the event as the hub will. `field` names the flag or YAML
    /// field that carries an attribute, for the error message.
    pub fn validate(
        &self,
        field: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<DeploymentEvent> {
        let parsed = match self.kind {
            EventKind::Desired => {
                DesiredDeployment::from_attributes(self, self.time).map(DeploymentEvent::Desired)
            }
            EventKind::Observed => ObservedDeployment::from_attributes(self, None, self.time)
                .map(DeploymentEvent::Observed),
        };
        parsed.map_err(|error| {
            let key = match &error {
                EventError::Missing { key, .. } | EventError::Invalid { key, .. } => *key,
                EventError::Field { field, .. } => *field,
            };
            let problem = match (&error, field(key)) {
                (EventError::Missing { .. }, Some(field)) => {
                    format!("{field} is required and must not be empty ({error})")
                }
                (EventError::Invalid { .. } | EventError::Field { .. }, Some(field)) => {
                    format!("{field}: {error}")
                }
                (_, None) => error.to_string(),
            };
            anyhow!("{}: {problem}", self.origin)
        })
    }

    /// The attributes as a JSON object, for `--output json`.
    pub fn json(&self) -> serde_json::Value {
        fn object<'a, K: Ord + serde::Serialize>(
            attrs: impl Iterator<Item = (K, &'a str)>,
        ) -> serde_json::Value {
            serde_json::json!(attrs.collect::<BTreeMap<K, &str>>())
        }
        let reporter = self.reporter();
        serde_json::json!({
            "event": self.kind.event_name(),
            "origin": self.origin,
            "time": self.time.to_rfc3339(),
            "resource": object(reporter.attributes()),
            "attributes": object(self.record()),
        })
    }
}

impl AttributeSource for Event {
    fn text(&self, key: &str) -> Result<Option<String>, sextant_model::NotAString> {
        Ok(self
            .attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone()))
    }
}

/// One OTLP logs request carrying `events`: one `ResourceLogs` per distinct
/// reporter, in the order first seen. `now` is each record's observed time.
pub fn request(events: &[Event], now: UnixNanos) -> ExportLogsServiceRequest {
    let mut batches: Vec<(Reporter, Vec<LogRecord>)> = Vec::new();
    for event in events {
        let reporter = event.reporter();
        let record = event.log_record(now);
        match batches.iter_mut().find(|(r, _)| *r == reporter) {
            Some((_, records)) => records.push(record),
            None => batches.push((reporter, vec![record])),
        }
    }
    ExportLogsServiceRequest {
        resource_logs: batches
            .into_iter()
            .map(|(reporter, records)| reporter.logs(records))
            .collect(),
    }
}

/// The short line printed for a sent event.
pub fn describe(event: &DeploymentEvent) -> String {
    match event {
        DeploymentEvent::Desired(d) => format!(
            "sent desired {}/{} {} → {}/{}",
            d.placement.application,
            d.placement.workload,
            d.version,
            d.placement.environment,
            d.placement.target
        ),
        DeploymentEvent::Observed(o) => format!(
            "sent observed {}/{} {} {} on {} → {}/{}",
            o.placement.application,
            o.placement.workload,
            short(&o.revision),
            o.status,
            o.host,
            o.placement.environment,
            o.placement.target
        ),
    }
}

/// A revision cut to a readable length (`sha256:` and 12 hex digits).
fn short(revision: &str) -> String {
    const KEEP: usize = 19;
    match revision.char_indices().nth(KEEP) {
        Some((end, _)) => format!("{}…", &revision[..end]),
        None => revision.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Event {
        let mut e = Event::new(EventKind::Observed, "flags", UnixNanos(5));
        e.set(keys::HOST_NAME, Some("web-1"))
            .set(keys::RECONCILER_NAME, Some("flux"))
            .set(keys::APPLICATION, Some("shop"))
            .set(keys::WORKLOAD, Some("checkout"))
            .set(keys::ENVIRONMENT, Some("stage"))
            .set(keys::TARGET, Some("eu"))
            .set(keys::REVISION, Some("sha256:0123456789abcdef0123"))
            .set(keys::STATUS, Some("succeeded"))
            .set(keys::STATUS_MESSAGE, None::<String>);
        e
    }

    #[test]
    fn identity_goes_on_the_resource_and_the_rest_on_the_record() {
        let e = observed();
        let req = request(&[e.clone(), e], UnixNanos(9));
        assert_eq!(req.resource_logs.len(), 1, "same reporter, one resource");
        let rl = &req.resource_logs[0];
        let resource: Vec<&str> = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.iter().map(|kv| kv.key.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            resource,
            ["service.name", "host.name", "sextant.reconciler.name"]
        );
        let record = &rl.scope_logs[0].log_records[0];
        assert_eq!(record.event_name, "sextant.deployment.observed");
        assert_eq!(
            (record.time_unix_nano, record.observed_time_unix_nano),
            (5, 9)
        );
        assert!(record.attributes.iter().all(|kv| kv.key != "host.name"));
        assert_eq!(record.attributes.len(), 6, "the empty message is left out");
    }

    #[test]
    fn a_missing_attribute_names_the_field() {
        let mut e = observed();
        e.attributes.retain(|(k, _)| *k != keys::WORKLOAD);
        let err = e
            .validate(|k| (k == keys::WORKLOAD).then(|| "--workload".to_owned()))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("flags: --workload is required and must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn describes_what_was_sent() {
        let e = observed().validate(|_| None).expect("valid");
        assert_eq!(
            describe(&e),
            "sent observed shop/checkout sha256:0123456789ab… succeeded on web-1 → stage/eu"
        );
    }
}
