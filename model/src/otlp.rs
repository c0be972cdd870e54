//! Deployment events as OTLP logs: the one encoder of every Sextant sender
//! (the agent's observations, the orchestrator's desired state, `sextant
//! report`), and [`Merged`], the reading of a record over its resource that
//! the hub's extractor does (`docs/otlp-conventions.md`).
//!
//! A batch is one `ResourceLogs`: the [`Reporter`] (who reports) on the
//! resource and as the instrumentation scope, and one log record per
//! [`EventRecord`] (what is reported), its event name in the record's
//! `event_name` field. Empty values are left out: the hub counts an empty
//! value as absent.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::event::{AttributeSource, EventKind, NotAString};
use crate::keys;
use crate::time::UnixNanos;

/// A string attribute.
fn key_value(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Who reports a batch: the service on the resource and as the
/// instrumentation scope, and the identity attributes that say which
/// reporter it is (`host.name`, the reconciler, labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    service: String,
    version: String,
    /// Whether `service.version` goes on the resource too.
    version_on_resource: bool,
    identity: Vec<(String, String)>,
}

impl Reporter {
    /// A service that reports what it does itself (the agent, the
    /// orchestrator): `service.name` and `service.version` on the resource.
    pub fn service(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            service: name.into(),
            version: version.into(),
            version_on_resource: true,
            identity: Vec::new(),
        }
    }

    /// A tool that relays events others wrote (`sextant report`): its
    /// version names the scope only. A desired event's version is its
    /// `service.version`, read from the record over the resource, so on
    /// the resource the tool's own version would stand in for a version
    /// the event left out.
    pub fn relay(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            version_on_resource: false,
            ..Self::service(name, version)
        }
    }

    /// Adds an identity attribute after those already added; an empty
    /// value is left out.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.identity.push((key.into(), value));
        }
        self
    }

    /// The resource's attributes in order: `service.name`, `service.version`
    /// (unless relaying), then the identity.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        let version = self
            .version_on_resource
            .then_some((keys::VERSION, self.version.as_str()));
        std::iter::once((keys::SERVICE_NAME, self.service.as_str()))
            .chain(version)
            .chain(self.identity.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The resource every record of this reporter carries.
    pub fn resource(&self) -> Resource {
        Resource {
            attributes: self.attributes().map(|(k, v)| key_value(k, v)).collect(),
            ..Default::default()
        }
    }

    /// The instrumentation scope: the service's name and version.
    pub fn scope(&self) -> InstrumentationScope {
        InstrumentationScope {
            name: self.service.clone(),
            version: self.version.clone(),
            ..Default::default()
        }
    }

    /// One batch of this reporter's records.
    pub fn logs(&self, records: Vec<LogRecord>) -> ResourceLogs {
        resource_logs(self.resource(), self.scope(), records)
    }
}

/// One batch: `records` under `resource` and `scope` (for a sender that
/// builds its resource once and keeps it).
pub fn resource_logs(
    resource: Resource,
    scope: InstrumentationScope,
    records: Vec<LogRecord>,
) -> ResourceLogs {
    ResourceLogs {
        resource: Some(resource),
        scope_logs: vec![ScopeLogs {
            scope: Some(scope),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One deployment event as a log record: its event name, its time, and
/// its per-deployment attributes in the order they were added.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord(LogRecord);

impl EventRecord {
    /// An event of `kind` that happened, and was observed, at `time`.
    pub fn new(kind: EventKind, time: UnixNanos) -> Self {
        let time = otlp_time(time);
        Self(LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            event_name: kind.event_name().to_owned(),
            ..Default::default()
        })
    }

    /// When the sender observed the event, if not when it happened.
    #[must_use]
    pub fn observed_at(mut self, at: UnixNanos) -> Self {
        self.0.observed_time_unix_nano = otlp_time(at);
        self
    }

    /// Adds an attribute; an empty value is left out.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.0.attributes.push(key_value(key, value));
        }
        self
    }

    /// Sets the record's trace context (W3C trace and span ids).
    #[must_use]
    pub fn traced(mut self, trace_id: [u8; 16], span_id: [u8; 8]) -> Self {
        self.0.trace_id = trace_id.to_vec();
        self.0.span_id = span_id.to_vec();
        self
    }

    /// Adds an attribute when there is one.
    #[must_use]
    pub fn with_some(self, key: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }
}

impl From<EventRecord> for LogRecord {
    fn from(record: EventRecord) -> Self {
        record.0
    }
}

/// OTLP's `fixed64` time; a time before the epoch is 0 (unset).
fn otlp_time(at: UnixNanos) -> u64 {
    u64::try_from(at.0).unwrap_or(0)
}

/// A record's (or data point's) attributes over its resource's, as the
/// hub reads them: when both carry a key, the record's value wins.
#[derive(Debug, Clone, Copy)]
pub struct Merged<'a> {
    pub record: &'a [KeyValue],
    pub resource: &'a [KeyValue],
}

impl<'a> Merged<'a> {
    /// The value of `key`, the record's first.
    pub fn get(&self, key: &str) -> Option<&'a AnyValue> {
        self.record
            .iter()
            .chain(self.resource)
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
    }
}

impl AttributeSource for Merged<'_> {
    fn text(&self, key: &str) -> Result<Option<String>, NotAString> {
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
        Err(NotAString { kind })
    }
}

/// The text of a value that is a string.
pub fn string_value(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
