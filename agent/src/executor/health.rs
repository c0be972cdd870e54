//! Verifying a started container: the Docker HEALTHCHECK, or an http, tcp or
//! command probe, with timeout, retries, interval and start period.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use futures::StreamExt;
use sextant_protocol::deploy::{HealthCheck, Probe};

use super::error::{HealthError, PlaceholderError, ProbeError};

/// Waits until `container` passes `check`; `Err` says why it did not.
pub(crate) async fn verify(
    docker: &Docker,
    container: &str,
    check: &HealthCheck,
) -> Result<(), HealthError> {
    let started = Instant::now();
    let retries = check.retries();
    let mut failures = 0u32;
    let deadline = docker_deadline(docker, container, check).await;
    loop {
        let info = docker
            .inspect_container(container, None)
            .await
            .map_err(HealthError::Inspect)?;
        not_running(&info)?;
        let result = match &check.probe {
            Probe::None => Ok(()),
            Probe::Docker => match docker_health(&info) {
                DockerHealth::Healthy => Ok(()),
                DockerHealth::Unhealthy(last) => {
                    return Err(HealthError::DockerUnhealthy { last });
                }
                DockerHealth::Missing => return Err(HealthError::NoHealthcheck),
                DockerHealth::Starting if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(HealthError::DockerStarting);
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
            Probe::Command(cmd) => probe_command(docker, container, &cmd.argv(), check.timeout())
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
                        return Err(HealthError::Probes {
                            last: why,
                            failures,
                        });
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
fn not_running(info: &ContainerInspectResponse) -> Result<(), HealthError> {
    let Some(state) = &info.state else {
        return Err(HealthError::NoState);
    };
    if state.running == Some(true) && state.restarting != Some(true) {
        return Ok(());
    }
    Err(HealthError::NotRunning {
        status: state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        exit_code: state.exit_code,
        error: state.error.clone(),
    })
}

enum DockerHealth {
    Healthy,
    Starting,
    /// With the exit code and output of Docker's last probe, if kept.
    Unhealthy(Option<(i64, String)>),
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
                    (
                        r.exit_code.unwrap_or(-1),
                        r.output.clone().unwrap_or_default(),
                    )
                });
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
) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| PlaceholderError::Unclosed {
            template: template.to_owned(),
        })?;
        let key = &after[..close];
        out.push_str(&resolve(info, key)?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(info: &ContainerInspectResponse, key: &str) -> Result<String, PlaceholderError> {
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
            .ok_or(PlaceholderError::NoAddress);
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
            .ok_or(PlaceholderError::NotPublished { port: port_key });
    }
    Err(PlaceholderError::Unknown {
        key: key.to_owned(),
    })
}

async fn probe_http(
    info: &ContainerInspectResponse,
    url: &str,
    expect: Option<u16>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let url = substitute(info, url)?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(ProbeError::HttpClient)?;
    let res = match client.get(&url).send().await {
        Ok(res) => res,
        Err(source) => return Err(ProbeError::Get { url, source }),
    };
    let status = res.status();
    let ok = match expect {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    if ok {
        Ok(())
    } else {
        Err(ProbeError::Status {
            url,
            status,
            expected: expect.map_or_else(|| "2xx".to_owned(), |c| c.to_string()),
        })
    }
}

async fn probe_tcp(
    info: &ContainerInspectResponse,
    address: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let address = substitute(info, address)?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(ProbeError::Tcp { address, source }),
        Err(_) => Err(ProbeError::TcpTimeout { address, timeout }),
    }
}

pub(crate) async fn probe_command(
    docker: &Docker,
    container: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<(), ProbeError> {
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
            .map_err(ProbeError::Exec)?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(ProbeError::Exec)?
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
            .map_err(ProbeError::Exec)?;
        match inspect.exit_code {
            Some(0) => Ok(()),
            code => Err(ProbeError::Command {
                argv: argv.to_vec(),
                code,
                output,
            }),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::CommandTimeout {
                argv: argv.to_vec(),
                timeout,
            })
        })
}
