//! How a task ended: one [`TaskOutcome`] with a typed [`ErrorKind`], which
//! an agent sends as a `TaskResult`, the orchestrator keeps as JSON in its
//! mailbox, and both of the orchestrator's executors (SSH and agent) return
//! to its job engine.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::v1 as pb;

/// Why a task failed. It covers the orchestrator's executors (SSH and
/// agent) and what an agent reports; on the wire it is the lowercase name
/// (`host_key` for [`HostKey`](Self::HostKey)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The target could not be reached or authenticated, or the agent
    /// stopped while the task ran (then retryable under a new run key).
    Connection,
    /// The host key did not match, or was unknown (SSH).
    HostKey,
    /// The deploy command exited non-zero, or the agent's executor failed.
    Command,
    /// The task ran past its timeout, or reached the agent after its
    /// deadline.
    Timeout,
    /// The deployment ran but its health check failed (the agent rolled
    /// back, or a check task failed).
    Health,
    /// The request itself is wrong: a bad spec, artifact or template, a
    /// missing credential.
    Invalid,
    /// A kind this build does not know, sent by a peer of another version.
    /// Its error message is kept; read it as a failure that is not retried
    /// for its kind (as [`Command`](Self::Command) is).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// Every kind this build knows, [`Unknown`](Self::Unknown) last.
    pub const ALL: [Self; 7] = [
        Self::Connection,
        Self::HostKey,
        Self::Command,
        Self::Timeout,
        Self::Health,
        Self::Invalid,
        Self::Unknown,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::HostKey => "host_key",
            Self::Command => "command",
            Self::Timeout => "timeout",
            Self::Health => "health",
            Self::Invalid => "invalid",
            Self::Unknown => "unknown",
        }
    }

    /// Reads a wire name; a name this build does not know is
    /// [`Unknown`](Self::Unknown), never an error.
    pub fn parse(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(Self::Unknown)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a task ended.
///
/// Its JSON keeps the names and shapes of the `TaskResult` fields (absent
/// text is `""`), so the orchestrator's mailbox rows written before this
/// type read back the same, and `success` is always present.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub success: bool,
    /// The deploy command's exit code, where there is one. The agent
    /// channel does not carry it (`TaskResult` has no field for it): there
    /// it is 0 on success and none on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, for people; none on success.
    #[serde(default, with = "empty_is_none")]
    pub error: Option<String>,
    /// Why it failed, for the engine; none on success.
    #[serde(default, with = "kind_or_empty")]
    pub error_type: Option<ErrorKind>,
    /// Whether running it again (under a new run key) may succeed.
    #[serde(default)]
    pub retryable: bool,
    /// The digest (`sha256:…`) now running, when known.
    #[serde(default, with = "empty_is_none")]
    pub deployed_digest: Option<String>,
    /// Output worth showing: the failed container's last log lines (from
    /// an agent).
    #[serde(default)]
    pub logs: Vec<String>,
    /// The deploy command's standard output (its tail), from the
    /// orchestrator's SSH executor. The channel does not carry it: an
    /// agent's output is in `logs`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// The deploy command's standard error (its tail), as for `stdout`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// The run had already happened and was not started again: the agent
    /// answered with the result it recorded. `replayed` on the wire.
    #[serde(default, rename = "replayed")]
    pub resumed: bool,
    /// The agent's full outcome record (docs/agent.md), as JSON, when the
    /// agent's executor ran the task. For people; nothing parses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl TaskOutcome {
    /// A success, exit code 0.
    pub fn succeeded() -> Self {
        Self {
            success: true,
            exit_code: Some(0),
            ..Self::default()
        }
    }

    /// A failure of `kind` with a message for people.
    pub fn failed(kind: ErrorKind, retryable: bool, error: impl Into<String>) -> Self {
        Self {
            success: false,
            error: Some(error.into()),
            error_type: Some(kind),
            retryable,
            ..Self::default()
        }
    }

    /// The `TaskResult` an agent sends for the task `run_key`.
    pub fn into_result(self, run_key: impl Into<String>) -> pb::TaskResult {
        pb::TaskResult {
            run_key: run_key.into(),
            success: self.success,
            error: self.error.unwrap_or_default(),
            error_type: self
                .error_type
                .map_or_else(String::new, |k| k.as_str().to_owned()),
            retryable: self.retryable,
            deployed_digest: self.deployed_digest.unwrap_or_default(),
            logs: self.logs,
            replayed: self.resumed,
            outcome_json: self.record.unwrap_or_default(),
        }
    }

    /// The run key and the outcome of a received `TaskResult`. An error
    /// type this build does not know becomes [`ErrorKind::Unknown`]; empty
    /// text fields become none.
    pub fn from_result(result: pb::TaskResult) -> (String, Self) {
        let text = |s: String| (!s.is_empty()).then_some(s);
        let outcome = Self {
            success: result.success,
            exit_code: result.success.then_some(0),
            error: text(result.error),
            error_type: (!result.error_type.is_empty())
                .then(|| ErrorKind::parse(&result.error_type)),
            retryable: result.retryable,
            deployed_digest: text(result.deployed_digest),
            logs: result.logs,
            resumed: result.replayed,
            record: text(result.outcome_json),
            ..Self::default()
        };
        (result.run_key, outcome)
    }
}

/// `Option<String>` as a string, `""` for none (`null` is read as none).
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.as_deref().unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
    }
}

/// `Option<ErrorKind>` as its wire name, `""` for none.
mod kind_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::ErrorKind;

    pub fn serialize<S: Serializer>(value: &Option<ErrorKind>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.map_or("", ErrorKind::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ErrorKind>, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .filter(|s| !s.is_empty())
            .map(|s| ErrorKind::parse(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: &str) -> pb::TaskResult {
        pb::TaskResult {
            run_key: "t-1.1".into(),
            success: false,
            error: "the container is not running (status exited, exit code 3)".into(),
            error_type: kind.into(),
            retryable: kind == "connection",
            deployed_digest: String::new(),
            logs: vec!["boom".into(), "bye".into()],
            replayed: false,
            outcome_json: r#"{"task_id":"t-1.1","status":"rolled_back"}"#.into(),
        }
    }

    fn success() -> pb::TaskResult {
        pb::TaskResult {
            run_key: "t-1.1".into(),
            success: true,
            deployed_digest: format!("sha256:{}", "a".repeat(64)),
            replayed: true,
            outcome_json: r#"{"task_id":"t-1.1","status":"succeeded"}"#.into(),
            ..pb::TaskResult::default()
        }
    }

    /// Every result an agent sends comes back unchanged.
    #[test]
    fn results_round_trip() {
        let mut results = vec![success(), failure("")];
        results.extend(
            ErrorKind::ALL
                .iter()
                .filter(|k| **k != ErrorKind::Unknown)
                .map(|k| failure(k.as_str())),
        );
        for result in results {
            let (run_key, outcome) = TaskOutcome::from_result(result.clone());
            assert_eq!(run_key, result.run_key);
            assert_eq!(outcome.into_result(run_key), result);
        }
    }

    /// Every outcome an agent produces (exit code 0 on success, none on
    /// failure) comes back unchanged, through protobuf and through JSON.
    #[test]
    fn outcomes_round_trip() {
        let mut outcomes = vec![
            TaskOutcome::succeeded(),
            TaskOutcome {
                deployed_digest: Some(format!("sha256:{}", "b".repeat(64))),
                logs: vec!["ready".into()],
                resumed: true,
                record: Some("{}".into()),
                ..TaskOutcome::succeeded()
            },
        ];
        for kind in ErrorKind::ALL {
            outcomes.push(TaskOutcome {
                logs: vec!["last line".into()],
                ..TaskOutcome::failed(kind, kind == ErrorKind::Connection, "it broke")
            });
        }
        for outcome in outcomes {
            let (run_key, back) = TaskOutcome::from_result(outcome.clone().into_result("r.1"));
            assert_eq!(run_key, "r.1");
            assert_eq!(back, outcome);
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(serde_json::from_str::<TaskOutcome>(&json).unwrap(), outcome);
        }
    }

    /// A kind from a peer of another version is kept as `Unknown` with its
    /// message, through protobuf and through JSON.
    #[test]
    fn an_unknown_error_kind_is_unknown_not_a_panic() {
        let (_, outcome) = TaskOutcome::from_result(failure("quota_exceeded"));
        assert_eq!(outcome.error_type, Some(ErrorKind::Unknown));
        assert!(!outcome.success && !outcome.retryable);
        assert_eq!(
            outcome.error.as_deref(),
            Some("the container is not running (status exited, exit code 3)")
        );
        assert_eq!(outcome.into_result("t-1.1").error_type, "unknown");
        let json = r#"{"success":false,"error":"x","error_type":"quota_exceeded"}"#;
        let outcome: TaskOutcome = serde_json::from_str(json).unwrap();
        assert_eq!(outcome.error_type, Some(ErrorKind::Unknown));
        assert_eq!(ErrorKind::parse("Health"), ErrorKind::Unknown);
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), kind);
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }

    /// An SSH command's output goes through JSON; it is not written when
    /// empty, so an agent's outcome writes the keys it always did.
    #[test]
    fn command_output_is_kept_in_json_and_absent_when_empty() {
        let outcome = TaskOutcome {
            exit_code: Some(2),
            stdout: "pulling\n".into(),
            stderr: "no such image\n".into(),
            ..TaskOutcome::failed(ErrorKind::Command, false, "exited with 2")
        };
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(serde_json::from_str::<TaskOutcome>(&json).unwrap(), outcome);
        let written = serde_json::to_value(TaskOutcome::succeeded()).unwrap();
        assert!(written.get("stdout").is_none() && written.get("stderr").is_none());
    }

    /// The orchestrator's mailbox rows (its `StoredResult`, with the agent
    /// name) read as outcomes, and an outcome writes every key they have.
    #[test]
    fn reads_and_writes_the_mailbox_json() {
        let stored = r#"{"success":true,"error":"","error_type":"","retryable":false,
            "deployed_digest":"sha256:1","logs":[],"replayed":true,"agent":"host-a"}"#;
        let outcome: TaskOutcome = serde_json::from_str(stored).unwrap();
        assert_eq!(
            outcome,
            TaskOutcome {
                success: true,
                deployed_digest: Some("sha256:1".into()),
                resumed: true,
                ..TaskOutcome::default()
            }
        );
        let stored = r#"{"success":false,"error":"pull failed","error_type":"command",
            "retryable":false,"deployed_digest":"","logs":["a"],"replayed":false,"agent":"b"}"#;
        let outcome: TaskOutcome = serde_json::from_str(stored).unwrap();
        assert_eq!(outcome.error_type, Some(ErrorKind::Command));
        assert_eq!(outcome.error.as_deref(), Some("pull failed"));
        assert_eq!(outcome.deployed_digest, None);

        let written =
            serde_json::to_value(TaskOutcome::failed(ErrorKind::Timeout, true, "late")).unwrap();
        for key in [
            "success",
            "error",
            "error_type",
            "retryable",
            "deployed_digest",
            "logs",
            "replayed",
        ] {
            assert!(written.get(key).is_some(), "{key} missing from {written}");
        }
        assert_eq!(written["success"], false);
        assert_eq!(written["error_type"], "timeout");
        assert_eq!(written["deployed_digest"], "");
    }
}
