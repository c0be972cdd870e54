//! `GET /health` for every service: one report shape, one timed-check helper
//! and one HTTP rendering, so the hub, the orchestrator and the agent answer
//! alike (docs/telemetry.md, "Health").
//!
//! The shape follows the IETF health-check draft
//! (draft-inadarei-api-health-check) where it fits: an overall `status` of
//! `pass`, `warn` or `fail`, and one check per dependency with its own
//! status, its measured latency and a detail or an error:
//!
//! ```json
//! {"status": "pass", "service": "sextant-hub", "version": "0.1.0",
//!  "checks": [{"name": "database", "status": "pass", "latency_ms": 0.41,
//!              "detail": "sqlite answers"}]}
//! ```
//!
//! HTTP 200 for `pass` and `warn` (a warning is for people, not for load
//! balancers), 503 for `fail`. `/health/live` and `/health/ready` stay as
//! they are: they are what probes use.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// How long one check may take before it fails: a dependency that does not
/// answer within this is as good as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The state of one check or of the whole service, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Working, but something needs a look (e.g. no agent connected).
    Warn,
    /// Not working.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// What a probe found when it answered in time: pass or warn, why, and
/// counts worth a machine's reading (`registered`, `connected`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    status: Status,
    detail: String,
    observed: BTreeMap<&'static str, u64>,
}

impl Probe {
    pub fn pass(detail: impl Into<String>) -> Self {
        Self::new(Status::Pass, detail)
    }

    pub fn warn(detail: impl Into<String>) -> Self {
        Self::new(Status::Warn, detail)
    }

    /// A probe that answered but found the dependency failing (a probe
    /// that could not ask returns `Err` instead).
    pub fn fail(detail: impl Into<String>) -> Self {
        Self::new(Status::Fail, detail)
    }

    fn new(status: Status, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            observed: BTreeMap::new(),
        }
    }

    /// Adds a count to the check's `observed` map.
    pub fn with(mut self, key: &'static str, value: u64) -> Self {
        self.observed.insert(key, value);
        self
    }
}

/// One dependency's check, as `/health` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The dependency: `database`, `agents`, `docker`, …
    pub name: String,
    pub status: Status,
    /// How long the check took, in milliseconds (microsecond precision).
    pub latency_ms: f64,
    /// What the check found (pass and warn, and a fail the probe reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why the check could not pass (fail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Counts behind the detail, for machines.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub observed: BTreeMap<&'static str, u64>,
}

impl Check {
    /// A check that took no time to know, e.g. a state kept in memory.
    pub fn instant(name: &str, probe: Result<Probe, impl Display>) -> Self {
        Self::from_outcome(name, Duration::ZERO, probe)
    }

    fn from_outcome(name: &str, took: Duration, outcome: Result<Probe, impl Display>) -> Self {
        // Whole microseconds: enough to tell a local from a remote database.
        let latency_ms = (took.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        match outcome {
            Ok(probe) => {
                let (detail, error) = if probe.status == Status::Fail {
                    (None, Some(probe.detail))
                } else {
                    (Some(probe.detail), None)
                };
                Self {
                    name: name.to_owned(),
                    status: probe.status,
                    latency_ms,
                    detail,
                    error,
                    observed: probe.observed,
                }
            }
            Err(error) => Self {
                name: name.to_owned(),
                status: Status::Fail,
                latency_ms,
                detail: None,
                error: Some(error.to_string()),
                observed: BTreeMap::new(),
            },
        }
    }
}

/// Runs `probe` with a deadline and measures it: `Ok` is the probe's own
/// verdict, `Err` and a timeout fail the check with the error.
pub async fn timed<F, E>(name: &str, timeout: Duration, probe: F) -> Check
where
    F: Future<Output = Result<Probe, E>>,
    E: Display,
{
    let start = std::time::Instant::now();
    let outcome = match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(probe)) => Ok(probe),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms",
            timeout.as_millis().max(1)
        )),
    };
    Check::from_outcome(name, start.elapsed(), outcome)
}

/// The `/health` answer of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The worst status of the checks (`pass` with no checks).
    pub status: Status,
    /// `sextant-hub`, `sextant-orchestrator`, `sextant-agent`.
    pub service: String,
    pub version: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(service: &str, version: &str, checks: Vec<Check>) -> Self {
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        Self {
            status,
            service: service.to_owned(),
            version: version.to_owned(),
            checks,
        }
    }

    /// 200 for pass and warn, 503 for fail.
    pub fn http_status(&self) -> StatusCode {
        match self.status {
            Status::Pass | Status::Warn => StatusCode::OK,
            Status::Fail => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// JSON, never cached; a failing check is logged once per request with
/// its error, so a red `/health` explains itself in the logs too.
impl IntoResponse for Report {
    fn into_response(self) -> Response {
        for check in self.checks.iter().filter(|c| c.status == Status::Fail) {
            tracing::warn!(
                service = %self.service,
                check = %check.name,
                error = check.error.as_deref().unwrap_or_default(),
                "Health check failed"
            );
        }
        (
            self.http_status(),
            [(header::CACHE_CONTROL, "no-store")],
            Json(self),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_worst_check_decides_and_fail_is_503() {
        let pass = timed("database", CHECK_TIMEOUT, async {
            Ok::<_, String>(Probe::pass("sqlite answers"))
        })
        .await;
        let warn = Check::instant(
            "agents",
            Ok::<_, std::convert::Infallible>(
                Probe::warn("2 registered, none connected")
                    .with("registered", 2)
                    .with("connected", 0),
            ),
        );
        let report = Report::new("sextant-test", "1.0.0", vec![pass.clone(), warn.clone()]);
        assert_eq!(report.status, Status::Warn);
        assert_eq!(report.http_status(), StatusCode::OK);

        let fail = timed("docker", CHECK_TIMEOUT, async {
            Err::<Probe, _>("connection refused")
        })
        .await;
        assert_eq!(fail.status, Status::Fail);
        assert_eq!(fail.error.as_deref(), Some("connection refused"));
        assert_eq!(fail.detail, None);
        let report = Report::new("sextant-test", "1.0.0", vec![pass, warn, fail]);
        assert_eq!(report.status, Status::Fail);
        assert_eq!(report.http_status(), StatusCode::SERVICE_UNAVAILABLE);

        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["status"], "fail");
        assert_eq!(json["checks"][0]["detail"], "sqlite answers");
        assert!(json["checks"][0]["latency_ms"].is_f64(), "{json}");
        assert_eq!(json["checks"][1]["observed"]["registered"], 2);
        assert!(json["checks"][2].get("detail").is_none(), "{json}");
        assert!(Report::new("s", "v", Vec::new()).status == Status::Pass);
    }

    #[tokio::test]
    async fn a_probe_that_hangs_fails_at_its_deadline() {
        let check = timed(
            "database",
            Duration::from_millis(50),
            std::future::pending::<Result<Probe, std::convert::Infallible>>(),
        )
        .await;
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.error.as_deref(), Some("no answer within 50 ms"));
        assert!(check.latency_ms >= 50.0, "{check:?}");
    }
}
