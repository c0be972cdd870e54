//! Health verification after a deployment: an http, tcp or command probe,
//! retried `retries` times `interval` apart, each attempt bounded by
//! `timeout`. Command probes run on the target through its executor.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::task::LogStream;
use crate::domain::{HealthCheck, HealthProbe, ProbeCountError, TargetSpec};
use crate::executor::{CheckError, Executor, TaskEvent, TaskRequest};

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Config(#[from] ProbeCountError),
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
    let timeout = check.timeout.0;
    match check.probe()? {
        HealthProbe::Http { url, expect_status } => {
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
            let ok = match expect_status {
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
        HealthProbe::Tcp { address } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
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
        HealthProbe::Command { command } => executor
            .check_command(target, request, command, timeout)
            .await
            .map(|()| format!("`{command}` exited 0"))
            .map_err(ProbeError::from),
    }
}

/// Verifies `target` with `check`: `Ok` at the first passing probe, `Err`
/// with the last failure once `retries` probes have failed.
pub async fn verify(
    check: &HealthCheck,
    target: &TargetSpec,
    request: &TaskRequest,
    executor: &dyn Executor,
    http: &reqwest::Client,
    events: &mpsc::Sender<TaskEvent>,
) -> Result<(), HealthCheckFailed> {
    let attempts = check.retries.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match probe(check, target, request, executor, http).await {
            Ok(note) => {
                let _ = events
                    .send(TaskEvent::Log {
                        stream: LogStream::System,
                        line: format!("health check passed ({note})"),
                    })
                    .await;
                return Ok(());
            }
            Err(why) => {
                let _ = events
                    .send(TaskEvent::Log {
                        stream: LogStream::System,
                        line: format!("health check {attempt}/{attempts} failed: {why}"),
                    })
                    .await;
                if attempt >= attempts {
                    return Err(HealthCheckFailed {
                        attempts,
                        last: why,
                    });
                }
            }
        }
        tokio::time::sleep(check.interval.0.max(Duration::from_millis(10))).await;
    }
}
