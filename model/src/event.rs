//! Deployment events and their validation from OTLP attributes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::target::DesiredOrigin;
use crate::time::UnixNanos;

/// Longest accepted identifier (application, host, revision, …), in bytes.
pub const MAX_NAME_LEN: usize = 512;
/// Longest kept status message, in bytes; longer messages are truncated.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// How errors name a log record's body, which stands in for
/// `sextant.status.message`.
const BODY: &str = "body";

/// A read-only view of an event's attributes, already merged so that a
/// record's own attribute wins over its resource's.
pub trait AttributeSource {
    /// The attribute as text; `Err` names what the value is instead (a
    /// number, a boolean, an array, a map, bytes).
    fn text(&self, key: &str) -> Result<Option<String>, NotAString>;
}

/// An attribute whose value is not a string: deployment attributes are
/// strings (semantic conventions), and a number or a boolean is a sender's
/// mistake, refused rather than guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a string, not {kind}")]
pub struct NotAString {
    /// What the value is: `an integer`, `a boolean`, `an array` …
    pub kind: &'static str,
}

/// Which deployment event a record carries, from its event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Desired,
    Observed,
}

impl EventKind {
    /// Recognises a deployment event name; any other name is not ours.
    pub fn from_event_name(name: &str) -> Option<Self> {
        match name {
            keys::EVENT_DESIRED => Some(Self::Desired),
            keys::EVENT_OBSERVED => Some(Self::Observed),
            _ => None,
        }
    }

    pub fn event_name(self) -> &'static str {
        match self {
            Self::Desired => keys::EVENT_DESIRED,
            Self::Observed => keys::EVENT_OBSERVED,
        }
    }
}

/// Status of a deployment on a host (`deployment.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Succeeded,
    Failed,
    InProgress,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "in_progress" => Ok(Self::InProgress),
            other => Err(format!(
                "has invalid value {other:?} (expected succeeded, failed or in_progress)"
            )),
        }
    }
}

/// Where a workload is deployed: the coordinates shared by desired and
/// observed state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    pub environment: String,
    pub target: String,
}

/// The reconciler that reported an observation. Empty strings mean "not named".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Reconciler {
    pub name: String,
    pub kind: String,
}

/// `sextant.deployment.desired`: a version assigned to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDeployment {
    pub placement: Placement,
    pub version: String,
    pub revision: String,
    pub build_commit: Option<String>,
    pub build_id: Option<String>,
    pub repository_url: Option<String>,
    /// What set it: promotion, job, approver, trace (no links). Boxed:
    /// most assignments carry none of it.
    pub origin: Box<DesiredOrigin>,
    /// When the revision's commit was made (`sextant.commit.time`): where
    /// DORA's change lead time starts (`docs/insights.md`).
    pub commit_time: Option<UnixNanos>,
    /// When the assignment was made; the latest assignment wins.
    pub at: UnixNanos,
}

/// `sextant.deployment.observed`: what a host runs for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedDeployment {
    pub placement: Placement,
    pub host: String,
    pub reconciler: Reconciler,
    pub revision: String,
    pub status: DeploymentStatus,
    pub message: Option<String>,
    /// The orchestrator job whose deployment this is (`sextant.job.id`),
    /// when one made it.
    pub job: Option<String>,
    /// When the revision's commit was made (`sextant.commit.time`), when
    /// the reporter knows it.
    pub commit_time: Option<UnixNanos>,
    pub observed_at: UnixNanos,
}

/// A validated deployment event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentEvent {
    Desired(DesiredDeployment),
    Observed(ObservedDeployment),
}

/// Why a deployment event was rejected. The message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("{event} is missing required attribute `{key}`")]
    Missing {
        event: &'static str,
        key: &'static str,
    },
    #[error("{event} attribute `{key}` {problem}")]
    Invalid {
        event: &'static str,
        key: &'static str,
        problem: String,
    },
    /// A field of the log record itself (`trace_id`, `span_id`).
    #[error("{event} record field `{field}` {problem}")]
    Field {
        event: &'static str,
        field: &'static str,
        problem: String,
    },
}

struct Reader<'a, S: AttributeSource> {
    source: &'a S,
    event: &'static str,
}

impl<S: AttributeSource> Reader<'_, S> {
    fn optional(&self, key: &'static str) -> Result<Option<String>, EventError> {
        let value = self
            .source
            .text(key)
            .map_err(|problem| EventError::Invalid {
                event: self.event,
                key,
                problem: problem.to_string(),
            })?;
        match value {
            Some(v) if v.len() > MAX_NAME_LEN => Err(EventError::Invalid {
                event: self.event,
                key,
                problem: format!("is longer than {MAX_NAME_LEN} bytes"),
            }),
            Some(v) if v.contains('\0') => Err(self.nul(key)),
            Some(v) if v.trim().is_empty() => Ok(None),
            other => Ok(other),
        }
    }

    /// A NUL (U+0000) is valid UTF-8 but no PostgreSQL text can hold it:
    /// the record is refused on every backend alike, before it reaches one.
    fn nul(&self, key: &'static str) -> EventError {
        EventError::Invalid {
            event: self.event,
            key,
            problem: "contains a NUL character (U+0000)".to_owned(),
        }
    }

    fn required(&self, key: &'static str) -> Result<String, EventError> {
        self.optional(key)?.ok_or(EventError::Missing {
            event: self.event,
            key,
        })
    }

    /// An optional RFC 3339 time (`sextant.commit.time`): a value that is
    /// not one is refused with the key named, like any invalid attribute.
    fn time(&self, key: &'static str) -> Result<Option<UnixNanos>, EventError> {
        let Some(value) = self.optional(key)? else {
            return Ok(None);
        };
        UnixNanos::parse_rfc3339(value.trim())
            .map(Some)
            .ok_or_else(|| EventError::Invalid {
                event: self.event,
                key,
                problem: format!(
                    "has invalid value {value:?} (expected an RFC 3339 time such as 2026-11-06T21:20:00Z)"
                ),
            })
    }

    fn placement(&self) -> Result<Placement, EventError> {
        Ok(Placement {
            application: self.required(keys::APPLICATION)?,
            workload: self.required(keys::WORKLOAD)?,
            environment: self.required(keys::ENVIRONMENT)?,
            target: self.required(keys::TARGET)?,
            workspace: self
                .optional(keys::WORKSPACE)?
                .unwrap_or_else(|| keys::DEFAULT_WORKSPACE.to_owned()),
        })
    }
}

impl DesiredDeployment {
    /// Validates a `sextant.deployment.desired` event.
    pub fn from_attributes(
        source: &impl AttributeSource,
        at: UnixNanos,
    ) -> Result<Self, EventError> {
        let r = Reader {
            source,
            event: keys::EVENT_DESIRED,
        };
        Ok(Self {
            placement: r.placement()?,
            version: r.required(keys::VERSION)?,
            revision: r.required(keys::REVISION)?,
            build_commit: r.optional(keys::BUILD_COMMIT)?,
            build_id: r.optional(keys::BUILD_ID)?,
            repository_url: r.optional(keys::REPOSITORY_URL)?,
            origin: Box::new(DesiredOrigin {
                promotion: r.optional(keys::PROMOTION_ID)?,
                job: r.optional(keys::JOB_ID)?,
                approved_by: r.optional(keys::APPROVER)?,
                ..DesiredOrigin::default()
            }),
            commit_time: r.time(keys::COMMIT_TIME)?,
            at,
        })
    }

    /// Records the sender's `service.name` (whose logs a trace's log link
    /// shows); too long or empty is left out.
    #[must_use]
    pub fn sent_by(mut self, service: Option<&str>) -> Self {
        self.origin.service = service
            .filter(|s| !s.trim().is_empty() && s.len() <= MAX_NAME_LEN && !s.contains('\0'))
            .map(str::to_owned);
        self
    }

    /// Takes the trace context from the log record's own `trace_id` and
    /// `span_id` fields: empty or all zero is none; any other length than
    /// 16 and 8 bytes rejects the record.
    pub fn traced(mut self, trace_id: &[u8], span_id: &[u8]) -> Result<Self, EventError> {
        self.origin.trace_id = trace_field("trace_id", trace_id, 16)?;
        self.origin.span_id = trace_field("span_id", span_id, 8)?;
        Ok(self)
    }
}

/// A log record's trace or span id as lowercase hex.
fn trace_field(
    field: &'static str,
    bytes: &[u8],
    len: usize,
) -> Result<Option<String>, EventError> {
    if bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(EventError::Field {
            event: keys::EVENT_DESIRED,
            field,
            problem: format!("is {} bytes; it must be {len}", bytes.len()),
        });
    }
    Ok(Some(bytes.iter().map(|b| format!("{b:02x}")).collect()))
}

impl ObservedDeployment {
    /// Validates a `sextant.deployment.observed` event. `body` is the log
    /// record's text body, used as the message when `sextant.status.message`
    /// is absent.
    pub fn from_attributes(
        source: &impl AttributeSource,
        body: Option<&str>,
        observed_at: UnixNanos,
    ) -> Result<Self, EventError> {
        let r = Reader {
            source,
            event: keys::EVENT_OBSERVED,
        };
        let host = match r.optional(keys::HOST_NAME)? {
            Some(host) => host,
            None => r
                .optional(keys::K8S_CLUSTER_NAME)?
                .ok_or(EventError::Missing {
                    event: keys::EVENT_OBSERVED,
                    key: keys::HOST_NAME,
                })?,
        };
        let placement = r.placement()?;
        let revision = r.required(keys::REVISION)?;
        let status = r
            .required(keys::STATUS)?
            .parse::<DeploymentStatus>()
            .map_err(|problem| EventError::Invalid {
                event: keys::EVENT_OBSERVED,
                key: keys::STATUS,
                problem,
            })?;
        let message = source
            .text(keys::STATUS_MESSAGE)
            .map_err(|problem| EventError::Invalid {
                event: keys::EVENT_OBSERVED,
                key: keys::STATUS_MESSAGE,
                problem: problem.to_string(),
            })?;
        let message = match message {
            Some(m) if m.contains('\0') => return Err(r.nul(keys::STATUS_MESSAGE)),
            Some(m) => Some(m),
            None if body.is_some_and(|b| b.contains('\0')) => {
                return Err(EventError::Invalid {
                    event: keys::EVENT_OBSERVED,
                    key: BODY,
                    problem: "contains a NUL character (U+0000)".to_owned(),
                });
            }
            None => body.map(str::to_owned),
        }
        .filter(|m| !m.is_empty())
        .map(truncate_message);
        Ok(Self {
            placement,
            host,
            reconciler: Reconciler {
                name: r.optional(keys::RECONCILER_NAME)?.unwrap_or_default(),
                kind: r.optional(keys::RECONCILER_TYPE)?.unwrap_or_default(),
            },
            revision,
            status,
            message,
            job: r.optional(keys::JOB_ID)?,
            commit_time: r.time(keys::COMMIT_TIME)?,
            observed_at,
        })
    }
}

fn truncate_message(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Attrs(HashMap<&'static str, &'static str>);

    impl AttributeSource for Attrs {
        fn text(&self, key: &str) -> Result<Option<String>, NotAString> {
            Ok(self.0.get(key).map(|v| (*v).to_owned()))
        }
    }

    fn observed() -> Attrs {
        Attrs(HashMap::from([
            (keys::HOST_NAME, "h1"),
            (keys::APPLICATION, "shop"),
            (keys::WORKLOAD, "checkout"),
            (keys::ENVIRONMENT, "stage"),
            (keys::TARGET, "eu"),
            (keys::REVISION, "sha256:ab"),
            (keys::STATUS, "in_progress"),
        ]))
    }

    #[test]
    fn observed_event_is_parsed_with_defaults() {
        let e = ObservedDeployment::from_attributes(&observed(), Some("pulling"), UnixNanos(7))
            .expect("valid");
        assert_eq!(e.placement.workspace, "default");
        assert_eq!(e.status, DeploymentStatus::InProgress);
        assert_eq!(e.message.as_deref(), Some("pulling"));
        assert_eq!(e.reconciler, Reconciler::default());
    }

    #[test]
    fn cluster_name_stands_in_for_host_name() {
        let mut a = observed();
        a.0.remove(keys::HOST_NAME);
        a.0.insert(keys::K8S_CLUSTER_NAME, "aks-1");
        let e = ObservedDeployment::from_attributes(&a, None, UnixNanos(1)).expect("valid");
        assert_eq!(e.host, "aks-1");
        a.0.remove(keys::K8S_CLUSTER_NAME);
        let err = ObservedDeployment::from_attributes(&a, None, UnixNanos(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sextant.deployment.observed is missing required attribute `host.name`"
        );
    }

    #[test]
    fn invalid_status_is_named() {
        let mut a = observed();
        a.0.insert(keys::STATUS, "done");
        let err = ObservedDeployment::from_attributes(&a, None, UnixNanos(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sextant.deployment.observed attribute `deployment.status` has invalid value \"done\" (expected succeeded, failed or in_progress)"
        );
    }

    #[test]
    fn desired_requires_version_and_revision() {
        let mut a = observed();
        a.0.insert(keys::VERSION, "1.0.0");
        let d = DesiredDeployment::from_attributes(&a, UnixNanos(3)).expect("valid");
        assert_eq!(d.version, "1.0.0");
        a.0.remove(keys::REVISION);
        let err = DesiredDeployment::from_attributes(&a, UnixNanos(3)).unwrap_err();
        assert!(err.to_string().contains("`sextant.revision`"), "{err}");
    }

    #[test]
    fn commit_time_is_an_optional_rfc3339_time() {
        let e =
            ObservedDeployment::from_attributes(&observed(), None, UnixNanos(1)).expect("valid");
        assert_eq!(e.commit_time, None);
        let mut a = observed();
        a.0.insert(keys::COMMIT_TIME, "1970-01-01T00:00:02Z");
        a.0.insert(keys::VERSION, "1.0.0");
        let e = ObservedDeployment::from_attributes(&a, None, UnixNanos(1)).expect("valid");
        assert_eq!(e.commit_time, Some(UnixNanos(2_000_000_000)));
        let d = DesiredDeployment::from_attributes(&a, UnixNanos(3)).expect("valid");
        assert_eq!(d.commit_time, Some(UnixNanos(2_000_000_000)));
        a.0.insert(keys::COMMIT_TIME, "yesterday");
        let err = ObservedDeployment::from_attributes(&a, None, UnixNanos(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sextant.deployment.observed attribute `sextant.commit.time` has invalid value \"yesterday\" (expected an RFC 3339 time such as 2026-11-06T21:20:00Z)"
        );
        let err = DesiredDeployment::from_attributes(&a, UnixNanos(1)).unwrap_err();
        assert!(err.to_string().contains("`sextant.commit.time`"), "{err}");
    }

    #[test]
    fn overlong_names_and_messages_are_handled() {
        let long: &'static str = Box::leak("x".repeat(MAX_NAME_LEN + 1).into_boxed_str());
        let mut a = observed();
        a.0.insert(keys::TARGET, long);
        assert!(ObservedDeployment::from_attributes(&a, None, UnixNanos(1)).is_err());
        let msg = "é".repeat(MAX_MESSAGE_LEN);
        let e = ObservedDeployment::from_attributes(&observed(), Some(&msg), UnixNanos(1))
            .expect("valid");
        assert!(e.message.expect("message").len() <= MAX_MESSAGE_LEN);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Every key the decoders read.
        const KEYS: &[&str] = &[
            keys::HOST_NAME,
            keys::K8S_CLUSTER_NAME,
            keys::APPLICATION,
            keys::WORKLOAD,
            keys::ENVIRONMENT,
            keys::TARGET,
            keys::WORKSPACE,
            keys::REVISION,
            keys::VERSION,
            keys::STATUS,
            keys::STATUS_MESSAGE,
            keys::RECONCILER_NAME,
            keys::RECONCILER_TYPE,
            keys::JOB_ID,
            keys::BUILD_COMMIT,
            keys::BUILD_ID,
            keys::REPOSITORY_URL,
            keys::COMMIT_TIME,
        ];

        /// Attributes as a sender may send them: text (with NULs, blanks,
        /// long runs and any Unicode) or a value that is not text.
        #[derive(Debug, Clone)]
        struct Sent(Vec<(&'static str, Result<String, NotAString>)>);

        impl AttributeSource for Sent {
            fn text(&self, key: &str) -> Result<Option<String>, NotAString> {
                // The last value of a key wins: the random ones override
                // the valid base.
                self.0
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
                    .transpose()
            }
        }

        fn value() -> impl Strategy<Value = Result<String, NotAString>> {
            prop_oneof![
                4 => "[a-z0-9:._-]{1,12}".prop_map(Ok),
                2 => Just(Ok("succeeded".to_owned())),
                1 => Just(Ok("failed".to_owned())),
                2 => any::<String>().prop_map(Ok),
                1 => "[a-z]{0,3}\\x00[a-z]{0,3}".prop_map(Ok),
                1 => Just(Ok(" ".to_owned())),
                1 => (0usize..3000).prop_map(|n| Ok("y".repeat(n))),
                1 => Just(Err(NotAString { kind: "an integer" })),
            ]
        }

        /// A valid event's attributes with up to six of them replaced or
        /// added at random, so that many cases decode and many do not.
        fn sent() -> impl Strategy<Value = Sent> {
            let base: Vec<(&'static str, Result<String, NotAString>)> = [
                (keys::HOST_NAME, "h1"),
                (keys::APPLICATION, "shop"),
                (keys::WORKLOAD, "checkout"),
                (keys::ENVIRONMENT, "stage"),
                (keys::TARGET, "eu"),
                (keys::REVISION, "sha256:aa"),
                (keys::VERSION, "1.0.0"),
                (keys::STATUS, "succeeded"),
            ]
            .into_iter()
            .map(|(k, v)| (k, Ok(v.to_owned())))
            .collect();
            proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..6)
                .prop_map(move |random| Sent(base.iter().cloned().chain(random).collect()))
        }

        fn clean(s: &str) -> bool {
            !s.contains('\0') && !s.trim().is_empty() && s.len() <= MAX_NAME_LEN
        }

        proptest! {
            #[test]
            fn observed_events_hold_only_storable_text(attrs in sent(), body in proptest::option::of(any::<String>())) {
                match ObservedDeployment::from_attributes(&attrs, body.as_deref(), UnixNanos(1)) {
                    Ok(e) => {
                        let p = &e.placement;
                        for s in [&e.host, &p.application, &p.workload, &p.environment, &p.target, &p.workspace, &e.revision] {
                            prop_assert!(clean(s), "{s:?}");
                        }
                        for s in [&e.reconciler.name, &e.reconciler.kind] {
                            prop_assert!(!s.contains('\0') && s.len() <= MAX_NAME_LEN);
                        }
                        if let Some(job) = &e.job {
                            prop_assert!(clean(job));
                        }
                        if let Some(m) = &e.message {
                            prop_assert!(!m.contains('\0') && m.len() <= MAX_MESSAGE_LEN);
                        }
                    }
                    Err(EventError::Missing { key, .. } | EventError::Invalid { key, .. }) => {
                        prop_assert!(KEYS.contains(&key) || key == BODY);
                    }
                    Err(EventError::Field { field, .. }) => {
                        prop_assert!(false, "an observed event has no record field check: {field}");
                    }
                }
            }

            #[test]
            fn desired_events_hold_only_storable_text(attrs in sent()) {
                if let Ok(e) = DesiredDeployment::from_attributes(&attrs, UnixNanos(1)) {
                    for s in [&e.version, &e.revision, &e.placement.target, &e.placement.environment] {
                        prop_assert!(clean(s), "{s:?}");
                    }
                    for s in [&e.build_commit, &e.build_id, &e.repository_url].into_iter().flatten() {
                        prop_assert!(clean(s), "{s:?}");
                    }
                }
            }
        }
    }
}
