//! Health verification after a deployment: an http, tcp or command probe,
//! retried `retries` times `interval` apart, each attempt bounded by
//! `timeout`. Command probes run on the target through its executor.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::task::LogStream;
use crate::domain::{HealthCheck, HealthProbe, TargetSpec};
use crate::executor::{Executor, TaskEvent, TaskRequest};

/// Runs one probe.
async fn probe(
    check: &HealthCheck,
    target: &TargetSpec,
    request: &TaskRequest,
    executor: &dyn Executor,
    http: &reqwest::Client,
) -> Result<String, String> {
    let timeout = check.timeout.0;
    match check.probe()? {
        HealthProbe::Http { url, expect_status } => {
            let response = http
                .get(url)
                .headers(sextant_exporters::telemetry::current_headers())
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status().as_u16();
            let ok = match expect_status {
                Some(want) => status == want,
                None => (200..300).contains(&status),
            };
            if ok {
                Ok(format!("GET {url}: {status}"))
            } else {
                Err(format!("GET {url}: status {status}"))
            }
        }
        HealthProbe::Tcp { address } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                Ok(Ok(_)) => Ok(format!("connected to {address}")),
                Ok(Err(e)) => Err(format!("connect {address}: {e}")),
                Err(_) => Err(format!("connect {address}: timed out after {timeout:?}")),
            }
        }
        HealthProbe::Command { command } => executor
            .check_command(target, request, command, timeout)
            .await
            .map(|()| format!("`{command}` exited 0")),
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
) -> Result<(), String> {
    let attempts = check.retries.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
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
                last = why;
            }
        }
        if attempt < attempts {
            tokio::time::sleep(check.interval.0.max(Duration::from_millis(10))).await;
        }
    }
    Err(format!(
        "health check failed {attempts} time(s); last: {last}"
    ))
}
