//! How a deployment's health is verified: a [`Probe`] and its timing. The
//! agent runs this shape for a container (`health:` of a deploy spec) and
//! the orchestrator for a target after a deploy (a target's `health:`); each
//! fills what is left out from its own [`HealthTiming`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use super::error::ProbeCommandError;

/// How a deployment's health is verified: a probe and its timing. Timing
/// left out falls back on the runner's defaults ([`HealthTiming`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to probe. Flattened: its `check` tag and fields sit beside the
    /// timing, and its `deny_unknown_fields` refuses every key that is
    /// neither.
    #[serde(flatten)]
    pub probe: Probe,
    /// Per probe (agent default 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Between probes (agent default 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Consecutive failures, after the start period, that fail the check
    /// (agent default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Failures in this window after start don't count (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<HumanDuration>,
}

/// The probe of a [`HealthCheck`], tagged by `check`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "lowercase", deny_unknown_fields)]
pub enum Probe {
    /// Nothing beyond the deploy itself (for the agent: the container is
    /// running).
    #[default]
    None,
    /// The image's Docker `HEALTHCHECK` (agent only).
    Docker,
    /// An HTTP GET. The agent substitutes `{port:N}` and `{ip}`.
    Http {
        url: String,
        /// The status to expect; absent means any 2xx.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect_status: Option<u16>,
    },
    /// A TCP connect. The agent substitutes `{port:N}` and `{ip}`.
    Tcp { address: String },
    /// A command; exit 0 passes. The agent runs it inside the container
    /// (`docker exec`), the orchestrator on the target (over SSH, or through
    /// the target's agent inside its container).
    Command(ProbeCommand),
}

/// The command of a [`Probe::Command`]: `argv: [..]`, run as it is, or
/// `command: "…"`, a shell string run with `sh -c`. Exactly one is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProbeCommandWire", into = "ProbeCommandWire")]
pub enum ProbeCommand {
    /// The program and its arguments, no shell.
    Argv(Vec<String>),
    /// A shell string, run with `sh -c`.
    Shell(String),
}

/// How a [`ProbeCommand`] is written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeCommandWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
}

impl TryFrom<ProbeCommandWire> for ProbeCommand {
    type Error = ProbeCommandError;
    fn try_from(w: ProbeCommandWire) -> Result<Self, ProbeCommandError> {
        match (w.argv, w.command) {
            (Some(argv), None) => Ok(Self::Argv(argv)),
            (None, Some(command)) => Ok(Self::Shell(command)),
            _ => Err(ProbeCommandError),
        }
    }
}

impl From<ProbeCommand> for ProbeCommandWire {
    fn from(c: ProbeCommand) -> Self {
        match c {
            ProbeCommand::Argv(argv) => Self {
                argv: Some(argv),
                command: None,
            },
            ProbeCommand::Shell(command) => Self {
                argv: None,
                command: Some(command),
            },
        }
    }
}

impl ProbeCommand {
    /// The program and its arguments: a shell string becomes
    /// `sh -c STRING`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Argv(argv) => argv.clone(),
            Self::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        }
    }

    /// One shell string: an argv is quoted word by word.
    pub fn shell(&self) -> String {
        match self {
            Self::Shell(s) => s.clone(),
            Self::Argv(argv) => argv
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// True when there is nothing to run.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Argv(argv) => argv.is_empty(),
            Self::Shell(s) => s.trim().is_empty(),
        }
    }

    /// The same command with `f` applied to each word (or to the string).
    pub fn map(&self, f: impl Fn(&str) -> String) -> Self {
        match self {
            Self::Argv(argv) => Self::Argv(argv.iter().map(|w| f(w)).collect()),
            Self::Shell(s) => Self::Shell(f(s)),
        }
    }
}

/// `word` as one POSIX shell word: bare when it is plain, else in single
/// quotes.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The timing a [`HealthCheck`] runs with once its runner's defaults fill
/// what it leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTiming {
    /// Per probe.
    pub timeout: Duration,
    /// Between probes.
    pub interval: Duration,
    /// Failures, after the start period, that fail the check (at least 1).
    pub retries: u32,
    /// Failures in this window after start don't count.
    pub start_period: Duration,
}

impl HealthTiming {
    /// The agent's defaults for a container's check: 2 s, 1 s, 3, 0.
    pub const AGENT: Self = Self {
        timeout: Duration::from_secs(2),
        interval: Duration::from_secs(1),
        retries: 3,
        start_period: Duration::ZERO,
    };
}

impl HealthCheck {
    /// This check's timing, `defaults` filling what it leaves out.
    pub fn timing(&self, defaults: HealthTiming) -> HealthTiming {
        HealthTiming {
            timeout: self.timeout.map_or(defaults.timeout, |d| d.0),
            interval: self.interval.map_or(defaults.interval, |d| d.0),
            retries: self.retries.unwrap_or(defaults.retries).max(1),
            start_period: self.start_period.map_or(defaults.start_period, |d| d.0),
        }
    }
    /// The per-probe timeout (agent default).
    pub fn timeout(&self) -> Duration {
        self.timing(HealthTiming::AGENT).timeout
    }
    /// The pause between probes (agent default).
    pub fn interval(&self) -> Duration {
        self.timing(HealthTiming::AGENT).interval
    }
    /// Consecutive failures that fail the check (agent default).
    pub fn retries(&self) -> u32 {
        self.timing(HealthTiming::AGENT).retries
    }
    /// The grace window after start.
    pub fn start_period(&self) -> Duration {
        self.timing(HealthTiming::AGENT).start_period
    }

    /// The probe's name for logs and spans: `none`, `docker`, `http`, `tcp`
    /// or `command`.
    pub fn probe_name(&self) -> &'static str {
        match self.probe {
            Probe::None => "none",
            Probe::Docker => "docker",
            Probe::Http { .. } => "http",
            Probe::Tcp { .. } => "tcp",
            Probe::Command(_) => "command",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<HealthCheck, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    #[test]
    fn a_command_is_an_argv_or_a_shell_string() {
        let argv = parse("{check: command, argv: [test, -e, /ready], retries: 2}").unwrap();
        assert_eq!(
            argv.probe,
            Probe::Command(ProbeCommand::Argv(vec![
                "test".into(),
                "-e".into(),
                "/ready".into()
            ]))
        );
        let shell = parse("{check: command, command: 'curl -fs localhost | grep ok'}").unwrap();
        let Probe::Command(cmd) = &shell.probe else {
            panic!("not a command: {shell:?}")
        };
        assert_eq!(cmd.argv(), ["sh", "-c", "curl -fs localhost | grep ok"]);
        // Each spelling reads back as it was written.
        for check in [&argv, &shell] {
            let json = serde_json::to_string(check).unwrap();
            assert_eq!(&serde_json::from_str::<HealthCheck>(&json).unwrap(), check);
        }
        assert_eq!(
            serde_json::to_value(&shell).unwrap(),
            serde_json::json!({"check": "command", "command": "curl -fs localhost | grep ok"})
        );
        for bad in [
            "{check: command}",
            "{check: command, argv: [true], command: 'true'}",
            "{check: command, args: [true]}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(
            parse("{check: command, args: [true]}")
                .unwrap_err()
                .to_string()
                .contains("args"),
        );
    }

    #[test]
    fn an_argv_quotes_into_one_shell_string() {
        let cmd = ProbeCommand::Argv(vec!["test".into(), "-e".into(), "it's here".into()]);
        assert_eq!(cmd.shell(), r"test -e 'it'\''s here'");
        assert_eq!(ProbeCommand::Shell("a | b".into()).shell(), "a | b");
    }

    #[test]
    fn timing_falls_back_on_the_runners_defaults() {
        let check = parse("{check: tcp, address: 'h:1', retries: 0, interval: 5s}").unwrap();
        let t = check.timing(HealthTiming::AGENT);
        assert_eq!(t.retries, 1);
        assert_eq!(t.interval, Duration::from_secs(5));
        assert_eq!(t.timeout, Duration::from_secs(2));
        assert!(parse("{check: tcp, address: 'h:1', colour: red}").is_err());
    }
}
