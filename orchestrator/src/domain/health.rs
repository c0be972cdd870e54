//! A target's post-deploy health check (`health:` in the target YAML): the
//! deploy contract's [`HealthCheck`], the shape an agent target's
//! `agent.container.health` takes too, run by the orchestrator once a
//! deploy task has succeeded (`jobs::health_check`).
//!
//! The flat spelling older files and stored targets use (`http: URL`,
//! `tcp: HOST:PORT`, `command: "shell string"`, with `expect_status`,
//! `timeout`, `interval`, `retries`) is still read, as the same check; the
//! check is always written in the `check:` shape.

use serde::{Deserialize, Deserializer};
use sextant_protocol::deploy::{HealthCheck, HealthTiming, Probe, ProbeCommand};

use super::{Span, TargetSpec};

/// The orchestrator's defaults for a post-deploy check: 5 s per probe, 2 s
/// between probes, 5 failures, no start period. (An agent's own check of its
/// container defaults to [`HealthTiming::AGENT`]: 2 s, 1 s, 3.)
pub const POST_DEPLOY: HealthTiming = HealthTiming {
    timeout: std::time::Duration::from_secs(5),
    interval: std::time::Duration::from_secs(2),
    retries: 5,
    start_period: std::time::Duration::ZERO,
};

/// The keys only the `check:` shape has: a check naming one of them
/// without `check` is read (and refused) as that shape.
const CHECK_SHAPE_KEYS: [&str; 5] = ["check", "url", "address", "argv", "start_period"];

/// Reads a target's `health:` in either spelling; `null` is no check.
pub(super) fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HealthCheck>, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(d)?;
    let check_shape = match &value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Object(map) => CHECK_SHAPE_KEYS.iter().any(|k| map.contains_key(*k)),
        _ => true,
    };
    let check = if check_shape {
        serde_json::from_value::<HealthCheck>(value).map_err(D::Error::custom)?
    } else {
        serde_json::from_value::<FlatHealthCheck>(value)
            .map_err(D::Error::custom)?
            .into_check()
            .map_err(D::Error::custom)?
    };
    Ok(Some(check))
}

/// The flat spelling of a post-deploy check: exactly one of `http`, `tcp`
/// or `command`, beside the timing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatHealthCheck {
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    expect_status: Option<u16>,
    #[serde(default)]
    tcp: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    timeout: Option<Span>,
    #[serde(default)]
    interval: Option<Span>,
    #[serde(default)]
    retries: Option<u32>,
}

/// A check in the flat spelling that does not name exactly one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a health check names its probe with check: http, tcp, command or none \
     (or, in the older spelling, exactly one of http, tcp or command)"
)]
pub struct ProbeCountError;

impl FlatHealthCheck {
    /// The same check in the one shape. `expect_status` beside `tcp` or
    /// `command` was ignored before and still is.
    fn into_check(self) -> Result<HealthCheck, ProbeCountError> {
        let probe = match (self.http, self.tcp, self.command) {
            (Some(url), None, None) => Probe::Http {
                url,
                expect_status: self.expect_status,
            },
            (None, Some(address), None) => Probe::Tcp { address },
            (None, None, Some(command)) => Probe::Command(ProbeCommand::Shell(command)),
            _ => return Err(ProbeCountError),
        };
        Ok(HealthCheck {
            probe,
            timeout: self.timeout,
            interval: self.interval,
            retries: self.retries,
            start_period: None,
        })
    }
}

/// A target's `health:` that the orchestrator cannot run after a deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthProblem {
    #[error(
        "target {target:?}: health check: docker asks Docker for the container's HEALTHCHECK, \
         which only an agent can; put it under agent.container.health (agent targets)"
    )]
    Docker { target: String },
    #[error("target {target:?}: health check command is empty")]
    EmptyCommand { target: String },
    #[error("target {target:?}: health check url {url:?} must start with http:// or https://")]
    Url { target: String, url: String },
    #[error(
        "target {target:?}: health check {value:?} uses {{ip}} or {{port:N}}, which only an \
         agent fills in; use agent.container.health for the agent's own check"
    )]
    AgentPlaceholder { target: String, value: String },
}

/// Checks that the orchestrator can run `target`'s post-deploy `health:`.
pub fn problem(target: &TargetSpec) -> Result<(), HealthProblem> {
    let Some(check) = &target.health else {
        return Ok(());
    };
    let name = || target.name.clone();
    let placeholder = |value: &str| {
        if value.contains("{ip}") || value.contains("{port:") {
            Err(HealthProblem::AgentPlaceholder {
                target: name(),
                value: value.to_owned(),
            })
        } else {
            Ok(())
        }
    };
    match &check.probe {
        Probe::None => Ok(()),
        Probe::Docker => Err(HealthProblem::Docker { target: name() }),
        Probe::Http { url, .. } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(HealthProblem::Url {
                    target: name(),
                    url: url.clone(),
                });
            }
            placeholder(url)
        }
        Probe::Tcp { address } => placeholder(address),
        Probe::Command(cmd) if cmd.is_empty() => {
            Err(HealthProblem::EmptyCommand { target: name() })
        }
        // A command runs on the host (SSH) or inside the container (agent),
        // in either spelling.
        Probe::Command(_) => Ok(()),
    }
}

/// `check` with `{slot}` replaced by a blue-green task's slot (empty
/// without one) in its url, address or command.
pub fn with_slot(check: &HealthCheck, slot: Option<&str>) -> HealthCheck {
    let slot = slot.unwrap_or("");
    let sub = |s: &str| s.replace("{slot}", slot);
    let probe = match &check.probe {
        Probe::Http { url, expect_status } => Probe::Http {
            url: sub(url),
            expect_status: *expect_status,
        },
        Probe::Tcp { address } => Probe::Tcp {
            address: sub(address),
        },
        Probe::Command(cmd) => Probe::Command(cmd.map(sub)),
        other => other.clone(),
    };
    HealthCheck {
        probe,
        ..check.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn target(health: &str) -> Result<TargetSpec, serde_norway::Error> {
        serde_norway::from_str(&format!(
            "name: web-1\nenvironment: dev\n\
             ssh: {{host: 127.0.0.1, user: deploy, credential: 'file:/k'}}\n\
             health: {health}\n"
        ))
    }

    fn health(yaml: &str) -> HealthCheck {
        target(yaml).unwrap().health.unwrap()
    }

    #[test]
    fn the_older_flat_spelling_reads_as_the_one_shape() {
        let cases = [
            (
                "{http: 'http://h/health', expect_status: 204, retries: 3}",
                "{check: http, url: 'http://h/health', expect_status: 204, retries: 3}",
            ),
            (
                "{tcp: 'h:5432', timeout: 1s}",
                "{check: tcp, address: 'h:5432', timeout: 1s}",
            ),
            (
                "{command: 'test -f /srv/ready', interval: 500ms}",
                "{check: command, command: 'test -f /srv/ready', interval: 500ms}",
            ),
        ];
        for (old, new) in cases {
            let check = health(old);
            assert_eq!(check, health(new), "{old}");
            // Written back in the one shape, which reads as the same check.
            let json = serde_json::to_value(&check).unwrap();
            assert!(json.get("check").is_some(), "{json}");
            let t = target(old).unwrap();
            let back: TargetSpec =
                serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
        // What the flat struct used to store, every default written out.
        let stored: TargetSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "environment": "dev",
            "ssh": {"host": "h", "user": "u", "credential": "file:/k"},
            "health": {"tcp": "h:1", "timeout": "5s", "interval": "2s", "retries": 5},
        }))
        .unwrap();
        assert_eq!(stored.health.unwrap().retries, Some(5));
    }

    #[test]
    fn post_deploy_defaults_are_the_orchestrators() {
        let t = health("{http: 'http://h/'}").timing(POST_DEPLOY);
        assert_eq!(t.timeout, Duration::from_secs(5));
        assert_eq!(t.interval, Duration::from_secs(2));
        assert_eq!(t.retries, 5);
        let t = health("{check: http, url: 'http://h/', start_period: 10s}").timing(POST_DEPLOY);
        assert_eq!(t.start_period, Duration::from_secs(10));
    }

    #[test]
    fn misspelt_keys_and_ambiguous_checks_are_refused() {
        for (yaml, word) in [
            (
                "{check: http, url: 'http://h/', expect_stauts: 200}",
                "expect_stauts",
            ),
            ("{check: tcp, address: 'h:1', retires: 2}", "retires"),
            ("{http: 'http://h/', retires: 2}", "retires"),
            ("{htp: 'http://h/'}", "htp"),
            ("{http: 'http://h/', tcp: 'h:1'}", "exactly one"),
            ("{retries: 2}", "exactly one"),
            ("{url: 'http://h/'}", "check"),
            ("{check: command}", "argv"),
            ("{check: http, url: 'http://h/', http: 'http://h/'}", "http"),
        ] {
            let err = target(yaml).unwrap_err().to_string();
            assert!(err.contains(word), "{yaml}: {err}");
        }
        assert_eq!(target("null").unwrap().health, None);
    }

    #[test]
    fn probes_the_orchestrator_cannot_run_are_refused_naming_the_target() {
        let problem_of = |yaml: &str| problem(&target(yaml).unwrap()).map_err(|e| e.to_string());
        let docker = problem_of("{check: docker}").unwrap_err();
        assert!(docker.contains("web-1") && docker.contains("agent.container.health"));
        let ip = problem_of("{check: http, url: 'http://{ip}:{port:80}/'}").unwrap_err();
        assert!(ip.contains("web-1") && ip.contains("{ip}"), "{ip}");
        assert!(problem_of("{check: tcp, address: '{ip}:80'}").is_err());
        assert!(problem_of("{check: http, url: 'ftp://h/'}").is_err());
        assert!(problem_of("{check: command, command: ' '}").is_err());
        assert!(problem_of("{check: none}").is_ok());
        assert!(problem_of("{check: command, argv: [test, -f, /ready]}").is_ok());
        assert!(problem_of("{http: 'https://h/{slot}/health'}").is_ok());
    }

    #[test]
    fn the_slot_is_filled_in_every_probe() {
        let http = with_slot(&health("{http: 'http://h/{slot}'}"), Some("blue"));
        assert_eq!(
            http.probe,
            Probe::Http {
                url: "http://h/blue".into(),
                expect_status: None
            }
        );
        let argv = with_slot(&health("{check: command, argv: [curl, '{slot}']}"), None);
        assert_eq!(
            argv.probe,
            Probe::Command(ProbeCommand::Argv(vec!["curl".into(), String::new()]))
        );
    }
}
