//! The executor's errors. [`ExecuteError`] (with the deploy contract's
//! [`SpecError`]) says why a task was refused before it ran; what goes wrong once a task runs ends up in a
//! [`TaskOutcome`](super::TaskOutcome) message, built from [`StepError`],
//! [`HealthError`] and [`ProbeError`].

use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use sextant_protocol::deploy::SpecError;

/// Why [`Executor`](super::Executor) refused or could not record a task.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot connect to Docker ({endpoint}): {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: DockerError,
    },
    #[error("task {task_id} is already running in this agent")]
    AlreadyRunning { task_id: String },
    #[error("task journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("task journal {path} is unreadable: {message}")]
    JournalCorrupt { path: PathBuf, message: String },
    #[error("task {task_id} was recorded as a {recorded} task, not a {requested}")]
    KindMismatch {
        task_id: String,
        recorded: &'static str,
        requested: &'static str,
    },
}

/// A `{…}` placeholder of a probe's url or address that cannot be filled
/// in from the container.
#[derive(Debug, thiserror::Error)]
pub enum PlaceholderError {
    #[error("unclosed '{{' in {template:?}")]
    Unclosed { template: String },
    #[error("the container has no IP address for {{ip}}")]
    NoAddress,
    #[error("container port {port} is not published")]
    NotPublished { port: String },
    #[error("unknown placeholder {{{key}}}: use {{ip}} or {{port:N}}")]
    Unknown { key: String },
}

/// Why one http, tcp or command probe failed (also the orchestrator's
/// command checks, [`Executor::run_check`](super::Executor::run_check)).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Placeholder(#[from] PlaceholderError),
    #[error("http client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("GET {url}: {source}")]
    Get {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered {status}, expected {expected}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        /// `2xx`, or the one status asked for.
        expected: String,
    },
    #[error("TCP connect to {address}: {source}")]
    Tcp {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TCP connect to {address} timed out after {timeout:?}")]
    TcpTimeout { address: String, timeout: Duration },
    #[error("docker exec: {0}")]
    Exec(#[source] DockerError),
    #[error("command {argv:?} exited with {}: {}", exit_code(.code), trimmed(.output))]
    Command {
        argv: Vec<String>,
        code: Option<i64>,
        /// The first 2 KiB or so of its output.
        output: String,
    },
    #[error("command {argv:?} timed out after {timeout:?}")]
    CommandTimeout {
        argv: Vec<String>,
        timeout: Duration,
    },
}

fn exit_code(code: &Option<i64>) -> String {
    code.map_or_else(|| "no code".to_owned(), |c| c.to_string())
}

fn trimmed(output: &str) -> &str {
    output.trim()
}

/// Why a started container did not pass its health check.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HealthError {
    #[error("cannot inspect the container: {0}")]
    Inspect(#[source] DockerError),
    #[error("the container has no state")]
    NoState,
    #[error("the container is not running (status {status}{})", not_running(.exit_code, .error))]
    NotRunning {
        status: String,
        exit_code: Option<i64>,
        /// Docker's error, when it gave one.
        error: Option<String>,
    },
    #[error("Docker health check reports unhealthy{}", last_probe(.last))]
    DockerUnhealthy {
        /// Exit code and output of Docker's last probe, when it kept one.
        last: Option<(i64, String)>,
    },
    #[error("the image has no HEALTHCHECK, so the docker check cannot pass")]
    NoHealthcheck,
    #[error("Docker health check still starting at the deadline")]
    DockerStarting,
    #[error("{last} ({failures} consecutive failed probes)")]
    Probes {
        #[source]
        last: ProbeError,
        failures: u32,
    },
}

fn not_running(exit_code: &Option<i64>, error: &Option<String>) -> String {
    let mut detail = String::new();
    if let Some(code) = exit_code {
        detail.push_str(&format!(", exit code {code}"));
    }
    if let Some(e) = error.as_deref().filter(|e| !e.is_empty()) {
        detail.push_str(&format!(", {e}"));
    }
    detail
}

fn last_probe(last: &Option<(i64, String)>) -> String {
    last.as_ref()
        .map(|(code, output)| format!(": exit code {code}, output {:?}", output.trim()))
        .unwrap_or_default()
}

/// A Docker step of a task that failed: setting a container aside,
/// creating, starting, verifying, restoring.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error("pull of {image} failed: {source}")]
    Pull {
        image: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot inspect container {name}: {source}")]
    Inspect {
        name: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot remove container {id}: {source}")]
    Remove {
        id: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot rename container {id} to {to}: {source}")]
    Rename {
        id: String,
        to: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot create container {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot stop previous container {id}: {source}")]
    StopPrevious {
        id: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot start container {name}: {source}")]
    Start {
        name: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot start leftover {id}: {source}")]
    StartLeftover {
        id: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot start previous container {id}: {source}")]
    StartPrevious {
        id: String,
        #[source]
        source: DockerError,
    },
    /// Starting a container found aside after an interrupted task.
    #[error("cannot start {id}: {source}")]
    StartAside {
        id: String,
        #[source]
        source: DockerError,
    },
    #[error(transparent)]
    Unhealthy(#[from] HealthError),
    #[error("previous container {id} is not healthy either: {source}")]
    PreviousUnhealthy {
        id: String,
        #[source]
        source: HealthError,
    },
    #[error("cannot inspect network {name}: {source}")]
    InspectNetwork {
        name: String,
        #[source]
        source: DockerError,
    },
    #[error("cannot create network {name}: {source}")]
    CreateNetwork {
        name: String,
        #[source]
        source: DockerError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words users and the orchestrator see are those of the messages
    /// these errors replaced.
    #[test]
    fn messages_read_as_before() {
        let cases: [(Box<dyn std::error::Error>, &str); 8] = [
            (
                Box::new(HealthError::NotRunning {
                    status: "exited".into(),
                    exit_code: Some(3),
                    error: Some(String::new()),
                }),
                "the container is not running (status exited, exit code 3)",
            ),
            (
                Box::new(HealthError::NotRunning {
                    status: "unknown".into(),
                    exit_code: None,
                    error: Some("oci runtime error".into()),
                }),
                "the container is not running (status unknown, oci runtime error)",
            ),
            (
                Box::new(HealthError::DockerUnhealthy {
                    last: Some((1, " down\n".into())),
                }),
                "Docker health check reports unhealthy: exit code 1, output \"down\"",
            ),
            (
                Box::new(HealthError::DockerUnhealthy { last: None }),
                "Docker health check reports unhealthy",
            ),
            (
                Box::new(HealthError::Probes {
                    last: ProbeError::TcpTimeout {
                        address: "127.0.0.1:80".into(),
                        timeout: Duration::from_secs(1),
                    },
                    failures: 4,
                }),
                "TCP connect to 127.0.0.1:80 timed out after 1s (4 consecutive failed probes)",
            ),
            (
                Box::new(ProbeError::Command {
                    argv: vec!["false".into()],
                    code: None,
                    output: " no\n".into(),
                }),
                "command [\"false\"] exited with no code: no",
            ),
            (
                Box::new(ProbeError::from(PlaceholderError::Unknown {
                    key: "x".into(),
                })),
                "unknown placeholder {x}: use {ip} or {port:N}",
            ),
            (
                Box::new(PlaceholderError::NoAddress),
                "the container has no IP address for {ip}",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
