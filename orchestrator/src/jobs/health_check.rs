//! Health verification after a deployment: a target's `health:` (an http,
//! tcp or command probe, or none), probed `interval` apart until one probe
//! passes or `retries` probes after the start period have failed, each
//! bounded by `timeout` (defaults in [`POST_DEPLOY`]). Command probes run on
//! the target through its executor: over SSH on the host, or through the
//! agent inside the container, as one shell string.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::health::POST_DEPLOY;
use crate::domain::task::LogStream;
use crate::domain::{HealthCheck, Probe, TargetSpec};
use crate::executor::{CheckError, Executor, TaskEvent, TaskRequest};

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A probe the orchestrator does not run (`check: docker`); `apply`
    /// refuses it, so only a target stored otherwise gets here.
    #[error("the orchestrator cannot run a {probe} probe; it is an agent's")]
    Unsupported { probe: &'static str },
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("connect {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect {address}: timed out after {after:?}")]
    ConnectTimeout { address: String, after: Duration },
    #[error(transparent)]
    Command(#[from] CheckError),
}

/// A target that failed its health check: every probe failed.
#[derive(Debug, thiserror::Error)]
#[error("health check failed {attempts} time(s); last: {last}")]
pub struct HealthCheckFailed {
    pub attempts: u32,
    /// The last probe's failure.
    #[source]
    pub last: ProbeError,
}

/// Runs one probe.
async fn probe(
    check: &HealthCheck,
    target: &TargetSpec,
    request: &TaskRequest,
    executor: &dyn Executor,
    http: &reqwest::Client,
) -> Result<String, ProbeError> {
    let timeout = check.timing(POST_DEPLOY).timeout;
    match &check.probe {
        Probe::None => Ok("no probe configured".to_owned()),
        Probe::Docker => Err(ProbeError::Unsupported { probe: "docker" }),
        Probe::Http { url, expect_status } => {
            let response = http
                .get(url)
                .headers(sextant_exporters::telemetry::current_headers())
                .timeout(timeout)
                .send()
                .await
                .map_err(|source| ProbeError::Request {
                    url: url.to_owned(),
                    source,
                })?;
            let status = response.status().as_u16();
            let ok = match *expect_status {
                Some(want) => status == want,
                None => (200..300).contains(&status),
            };
            if ok {
                Ok(format!("GET {url}: {status}"))
            } else {
                Err(ProbeError::Status {
                    url: url.to_owned(),
                    status,
                })
            }
        }
        Probe::Tcp { address } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str()))
                .await
            {
                Ok(Ok(_)) => Ok(format!("connected to {address}")),
                Ok(Err(source)) => Err(ProbeError::Connect {
                    address: address.to_owned(),
                    source,
                }),
                Err(_) => Err(ProbeError::ConnectTimeout {
                    address: address.to_owned(),
                    after: timeout,
                }),
            }
        }
        Probe::Command(cmd) => {
            let command = cmd.shell();
            executor
                .check_command(target, request, &command, timeout)
                .await
                .map(|()| format!("`{command}` exited 0"))
                .map_err(ProbeError::from)
        }
    }
}

/// Verifies `target` with `check`: `Ok` at the first passing probe, `Err`
/// with the last failure once `retries` probes have failed after the start
/// period (failures within it are logged but not counted).
pub async fn verify(
    check: &HealthCheck,
    target: &TargetSpec,
    request: &TaskRequest,
    executor: &dyn Executor,
    http: &reqwest::Client,
    events: &mpsc::Sender<TaskEvent>,
) -> Result<(), HealthCheckFailed> {
    let timing = check.timing(POST_DEPLOY);
    let attempts = timing.retries;
    let started = tokio::time::Instant::now();
    let mut failures = 0;
    loop {
        match probe(check, target, request, executor, http).await {
            Ok(note) => {
                log(events, format!("health check passed ({note})")).await;
                return Ok(());
            }
            Err(why) if started.elapsed() < timing.start_period => {
                let line = format!("health check failed in its start period: {why}");
                log(events, line).await;
            }
            Err(why) => {
                failures += 1;
                let line = format!("health check {failures}/{attempts} failed: {why}");
                log(events, line).await;
                if failures >= attempts {
                    return Err(HealthCheckFailed {
                        attempts,
                        last: why,
                    });
                }
            }
        }
        tokio::time::sleep(timing.interval.max(Duration::from_millis(10))).await;
    }
}

/// One system line in the task's log.
async fn log(events: &mpsc::Sender<TaskEvent>, line: String) {
    let _ = events
        .send(TaskEvent::Log {
            stream: LogStream::System,
            line,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use sextant_protocol::deploy::{ErrorKind, TaskOutcome};

    use super::*;
    use crate::domain::task::TaskKind;
    use crate::executor::TaskContext;

    /// An executor whose health-check commands always fail, recording them.
    #[derive(Default)]
    struct FailingChecks {
        commands: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Executor for FailingChecks {
        async fn execute(
            &self,
            _: &TargetSpec,
            _: &TaskRequest,
            _: &mpsc::Sender<TaskEvent>,
        ) -> TaskOutcome {
            TaskOutcome::failed(ErrorKind::Invalid, false, "not in this test")
        }

        async fn check_command(
            &self,
            _: &TargetSpec,
            _: &TaskRequest,
            command: &str,
            _: Duration,
        ) -> Result<(), CheckError> {
            self.commands.lock().unwrap().push(command.to_owned());
            Err(CheckError::Exited {
                code: 1,
                tail: String::new(),
            })
        }
    }

    fn target(health: &str) -> TargetSpec {
        serde_norway::from_str(&format!(
            "name: web-1\nenvironment: dev\n\
             ssh: {{host: 127.0.0.1, user: deploy, credential: 'file:/k'}}\n\
             health: {health}\n"
        ))
        .unwrap()
    }

    fn request() -> TaskRequest {
        TaskRequest {
            task_id: "t".into(),
            attempt: 1,
            kind: TaskKind::Deploy,
            release: "r".into(),
            release_id: "release-id".into(),
            component: "web".into(),
            image: "web@sha256:0".into(),
            digest: "sha256:0".into(),
            previous_digest: None,
            slot: None,
            artifacts: Vec::new(),
            timeout: Duration::from_secs(1),
            traceparent: None,
            vars: Default::default(),
            context: TaskContext::default(),
        }
    }

    async fn run(health: &str) -> (Result<(), HealthCheckFailed>, Vec<String>) {
        let target = target(health);
        let executor = FailingChecks::default();
        let (tx, mut rx) = mpsc::channel(1024);
        let check = target.health.clone().unwrap();
        let http = reqwest::Client::new();
        let result = verify(&check, &target, &request(), &executor, &http, &tx).await;
        drop(tx);
        let mut lines = Vec::new();
        while let Some(TaskEvent::Log { line, .. }) = rx.recv().await {
            lines.push(line);
        }
        let commands = executor.commands.into_inner().unwrap();
        assert_eq!(commands.len(), lines.len(), "{lines:?}");
        (result, commands)
    }

    /// An argv runs on the target as one quoted shell string, retried
    /// `retries` times.
    #[tokio::test]
    async fn a_command_probe_is_retried_then_fails() {
        let (result, commands) =
            run("{check: command, argv: [test, -f, '/srv/a b'], retries: 3, interval: 10ms}").await;
        assert_eq!(result.unwrap_err().attempts, 3);
        assert_eq!(commands, vec!["test -f '/srv/a b'"; 3]);
    }

    /// Failures within the start period are logged but not counted.
    #[tokio::test]
    async fn failures_in_the_start_period_do_not_count() {
        let (result, commands) = run(
            "{command: 'exit 1', retries: 2, interval: 10ms}", // the older spelling
        )
        .await;
        assert_eq!((result.unwrap_err().attempts, commands.len()), (2, 2));
        let (result, commands) = run(
            "{check: command, command: 'exit 1', retries: 2, interval: 10ms, start_period: 300ms}",
        )
        .await;
        assert_eq!(result.unwrap_err().attempts, 2);
        assert!(commands.len() > 2, "{commands:?}");
    }
}
