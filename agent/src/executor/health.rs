//! Verifying a started container: the Docker HEALTHCHECK, or an http, tcp or
//! command probe, with timeout, retries, interval and start period.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use futures::StreamExt;

use super::spec::{HealthCheck, Probe};

/// Waits until `container` passes `check`; `Err` says why it did not.
pub(crate) async fn verify(
    docker: &Docker,
    container: &str,
    check: &HealthCheck,
) -> Result<(), String> {
    let started = Instant::now();
    let retries = check.retries();
    let mut failures = 0u32;
    let deadline = docker_deadline(docker, container, check).await;
    loop {
        let info = docker
            .inspect_container(container, None)
            .await
            .map_err(|e| format!("cannot inspect the container: {e}"))?;
        not_running(&info)?;
        let result = match &check.probe {
            Probe::None => Ok(()),
            Probe::Docker => match docker_health(&info) {
                DockerHealth::Healthy => Ok(()),
                DockerHealth::Unhealthy(why) => {
                    return Err(format!("Docker health check reports unhealthy{why}"));
                }
                DockerHealth::Missing => {
                    return Err(
                        "the image has no HEALTHCHECK, so the docker check cannot pass".into(),
                    );
                }
                DockerHealth::Starting if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err("Docker health check still starting at the deadline".into());
                }
                DockerHealth::Starting => Err(None),
            },
            Probe::Http { url, expect_status } => {
                probe_http(&info, url, *expect_status, check.timeout())
                    .await
                    .map_err(Some)
            }
            Probe::Tcp { address } => probe_tcp(&info, address, check.timeout())
                .await
                .map_err(Some),
            Probe::Command { argv } => probe_command(docker, container, argv, check.timeout())
                .await
                .map_err(Some),
        };
        match result {
            Ok(()) => return Ok(()),
            // Docker's own check is still starting: Docker counts its retries.
            Err(None) => {}
            Err(Some(why)) => {
                if started.elapsed() >= check.start_period() {
                    failures += 1;
                    if failures >= retries {
                        return Err(format!("{why} ({failures} consecutive failed probes)"));
                    }
                }
            }
        }
        let pause = match check.probe {
            // Docker runs the probes; poll its status briskly.
            Probe::Docker => check.interval().min(Duration::from_millis(500)),
            _ => check.interval(),
        };
        tokio::time::sleep(pause).await;
    }
}

/// Fails when the container is not running (it exited, or was never started).
fn not_running(info: &ContainerInspectResponse) -> Result<(), String> {
    let Some(state) = &info.state else {
        return Err("the container has no state".into());
    };
    if state.running == Some(true) && state.restarting != Some(true) {
        return Ok(());
    }
    let mut why = format!(
        "the container is not running (status {}",
        state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    if let Some(code) = state.exit_code {
        why.push_str(&format!(", exit code {code}"));
    }
    if let Some(e) = state.error.as_deref().filter(|e| !e.is_empty()) {
        why.push_str(&format!(", {e}"));
    }
    why.push(')');
    Err(why)
}

enum DockerHealth {
    Healthy,
    Starting,
    Unhealthy(String),
    Missing,
}

fn docker_health(info: &ContainerInspectResponse) -> DockerHealth {
    let health = info.state.as_ref().and_then(|s| s.health.as_ref());
    match health.and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => DockerHealth::Healthy,
        Some(HealthStatusEnum::STARTING) => DockerHealth::Starting,
        Some(HealthStatusEnum::UNHEALTHY) => {
            let last = health
                .and_then(|h| h.log.as_ref())
                .and_then(|l| l.last())
                .map(|r| {
                    format!(
                        ": exit code {}, output {:?}",
                        r.exit_code.unwrap_or(-1),
                        r.output.as_deref().unwrap_or("").trim()
                    )
                })
                .unwrap_or_default();
            DockerHealth::Unhealthy(last)
        }
        _ => DockerHealth::Missing,
    }
}

/// When to give up waiting for Docker's own check: the container's effective
/// health config (image merged with overrides) bounds how long Docker can
/// take to decide; `None` when it is not a docker check.
async fn docker_deadline(docker: &Docker, container: &str, check: &HealthCheck) -> Option<Instant> {
    if check.probe != Probe::Docker {
        return None;
    }
    let cfg = docker
        .inspect_container(container, None)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.healthcheck);
    let ns = |v: Option<i64>, default: Duration| {
        v.filter(|n| *n > 0)
            .map_or(default, |n| Duration::from_nanos(n.unsigned_abs()))
    };
    let (interval, timeout, retries, start) = match &cfg {
        Some(c) => (
            ns(c.interval, Duration::from_secs(30)),
            ns(c.timeout, Duration::from_secs(30)),
            c.retries.filter(|r| *r > 0).unwrap_or(3),
            ns(c.start_period, Duration::ZERO),
        ),
        None => (
            Duration::from_secs(30),
            Duration::from_secs(30),
            3,
            Duration::ZERO,
        ),
    };
    let rounds = u32::try_from(retries).unwrap_or(u32::MAX).saturating_add(1);
    Some(Instant::now() + start + (interval + timeout) * rounds + Duration::from_secs(5))
}

/// Replaces `{port:N[/proto]}` with the published host port and `{ip}` with
/// the container's address.
pub(crate) fn substitute(
    info: &ContainerInspectResponse,
    template: &str,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let key = &after[..close];
        out.push_str(&resolve(info, key)?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(info: &ContainerInspectResponse, key: &str) -> Result<String, String> {
    let net = info.network_settings.as_ref();
    if key == "ip" {
        return net
            .and_then(|n| n.networks.as_ref())
            .and_then(|nets| {
                let mut nets: Vec<_> = nets.iter().collect();
                nets.sort_by_key(|(name, _)| name.as_str());
                nets.into_iter()
                    .find_map(|(_, e)| e.ip_address.clone().filter(|ip| !ip.is_empty()))
            })
            .ok_or_else(|| "the container has no IP address for {ip}".into());
    }
    if let Some(port) = key.strip_prefix("port:") {
        let port_key = if port.contains('/') {
            port.to_owned()
        } else {
            format!("{port}/tcp")
        };
        return net
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&port_key))
            .and_then(|b| b.as_ref())
            .and_then(|b| {
                b.iter()
                    .find_map(|b| b.host_port.clone().filter(|p| !p.is_empty()))
            })
            .ok_or_else(|| format!("container port {port_key} is not published"));
    }
    Err(format!(
        "unknown placeholder {{{key}}}: use {{ip}} or {{port:N}}"
    ))
}

async fn probe_http(
    info: &ContainerInspectResponse,
    url: &str,
    expect: Option<u16>,
    timeout: Duration,
) -> Result<(), String> {
    let url = substitute(info, url)?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let res = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = res.status();
    let ok = match expect {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    if ok {
        Ok(())
    } else {
        let wanted = expect.map_or_else(|| "2xx".to_owned(), |c| c.to_string());
        Err(format!("GET {url} answered {status}, expected {wanted}"))
    }
}

async fn probe_tcp(
    info: &ContainerInspectResponse,
    address: &str,
    timeout: Duration,
) -> Result<(), String> {
    let address = substitute(info, address)?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("TCP connect to {address}: {e}")),
        Err(_) => Err(format!(
            "TCP connect to {address} timed out after {timeout:?}"
        )),
    }
}

pub(crate) async fn probe_command(
    docker: &Docker,
    container: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let run = async {
        let exec = docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("docker exec: {e}"))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|e| format!("docker exec: {e}"))?
        {
            while let Some(chunk) = out.next().await {
                if let Ok(chunk) = chunk
                    && output.len() < 2048
                {
                    output.push_str(&chunk.to_string());
                }
            }
        }
        let inspect = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| format!("docker exec: {e}"))?;
        match inspect.exit_code {
            Some(0) => Ok(()),
            code => Err(format!(
                "command {argv:?} exited with {}: {}",
                code.map_or_else(|| "no code".to_owned(), |c| c.to_string()),
                output.trim()
            )),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(format!("command {argv:?} timed out after {timeout:?}")))
}
