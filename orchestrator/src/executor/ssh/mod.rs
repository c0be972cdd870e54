//! The SSH executor: runs a task's deploy command on a host over SSH
//! (russh), with the host key checked against a pinned key or known_hosts.
//!
//! A task runs in `<work_dir>/runs/<task_id>.<attempt>/` on the target
//! (`work_dir` defaults to `.sextant` in the login directory):
//!
//! 1. **prepare** creates the directory and reads the run's state;
//! 2. **upload** writes the artifacts there (`cat > tmp && mv`, then their
//!    sha256 is compared), and the deploy script and its wrapper into
//!    `.task/`;
//! 3. **start** launches the wrapper detached (`setsid nohup`), guarded by
//!    an atomic `mkdir .task/started`, so the command survives the SSH
//!    connection (or the orchestrator) dying, and two executors racing on
//!    one run key start it once;
//! 4. **follow** streams the command's new stdout and stderr lines back
//!    until `.task/exit_code` appears, killing its process group when the
//!    task's timeout passes;
//! 5. **result** reads the exit code and the last 64 KiB of each stream.
//!
//! Executing a run key that already started follows it (or, if it ended,
//! returns its recorded result) with `resumed: true` instead of starting it
//! again: the never-twice contract of [`crate::executor`].
//!
//! What runs comes from the target's `deploy` template: `custom` runs its
//! `command` (a switch task its `switch` command); `docker` pulls
//! `$SEXTANT_IMAGE` and replaces the container `name` (`name-<slot>` for a
//! blue-green slot) with `docker run -d`; `compose` runs `docker compose up
//! -d` on the uploaded `compose-lock.yml` (or `docker-compose`, the
//! standalone v1, where the plugin is missing). On an SSH target, a blue-green
//! "switch" is whatever the custom `switch` command does (repoint a proxy
//! at the slot, say); the docker and compose templates cannot switch.
//!
//! The deploy script runs under `/bin/sh` in the login directory, with the
//! `SEXTANT_*` variables, `TRACEPARENT` and the target's `vars` exported at
//! its top (sshd's `AcceptEnv` is not relied on). Targets need a POSIX
//! shell, `setsid` (util-linux) and `tail`/`head -c`; `sha256sum` or
//! `shasum` if uploads are to be verified.

mod known_hosts;
mod lines;
mod run;
mod script;
mod session;

use std::time::Duration;

use async_trait::async_trait;
use sextant_protocol::deploy::TaskOutcome;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use self::run::Run;
pub use self::session::{ConnectError, HostKeyError};
use self::session::{Endpoint, Session};
use crate::domain::TargetSpec;
use crate::executor::{CheckError, Executor, TaskEvent, TaskRequest};

/// Runs tasks on SSH targets. Cheap to clone settings; holds no connection
/// between tasks.
#[derive(Debug, Clone)]
pub struct SshExecutor {
    connect_timeout: Duration,
    poll_interval: Duration,
    follow_window: Duration,
    reconnect_for: Duration,
    kill_grace: Duration,
    output_cap: usize,
}

impl Default for SshExecutor {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            poll_interval: Duration::from_millis(200),
            follow_window: Duration::from_secs(30),
            reconnect_for: Duration::from_secs(60),
            kill_grace: Duration::from_secs(5),
            output_cap: 64 * 1024,
        }
    }
}

impl SshExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long connecting (TCP, handshake, authentication) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the target looks for new output while following a run.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long to keep reconnecting, after the task's deadline, when the
    /// connection drops while the command runs.
    pub fn with_reconnect_for(mut self, duration: Duration) -> Self {
        self.reconnect_for = duration;
        self
    }

    /// How many bytes of stdout and of stderr the outcome keeps (the tail).
    pub fn with_output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes.max(1024);
        self
    }
}

#[async_trait]
impl Executor for SshExecutor {
    async fn execute(
        &self,
        target: &TargetSpec,
        request: &TaskRequest,
        events: &mpsc::Sender<TaskEvent>,
    ) -> TaskOutcome {
        let span = tracing::info_span!(
            "ssh.execute",
            target = %target.name,
            run_key = %request.run_key(),
            kind = request.kind.as_str(),
        );
        async {
            let outcome = Run::new(self, target, request, events).execute().await;
            if outcome.success {
                tracing::info!(resumed = outcome.resumed, "Task succeeded");
            } else {
                tracing::warn!(
                    error = outcome.error.as_deref().unwrap_or(""),
                    error_type = ?outcome.error_type,
                    resumed = outcome.resumed,
                    "Task failed"
                );
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn check_command(
        &self,
        target: &TargetSpec,
        _request: &TaskRequest,
        command: &str,
        timeout: Duration,
    ) -> Result<(), CheckError> {
        let Some(conn) = &target.ssh else {
            return Err(CheckError::NoSsh {
                target: target.name.clone(),
            });
        };
        let endpoint = Endpoint::new(conn)?;
        let span = tracing::info_span!("ssh.check", target = %target.name);
        async {
            let session = Session::connect(&endpoint, self.connect_timeout).await?;
            let wrapped = script::check(command, timeout);
            // The target's `timeout` stops the command; this one stops us.
            let ran = tokio::time::timeout(
                timeout + Duration::from_secs(3),
                session.run(&wrapped, None, 4096),
            )
            .await;
            session.close().await;
            match ran {
                Err(_) => Err(CheckError::TimedOut {
                    after: timeout,
                    tail: String::new(),
                }),
                Ok(Err(source)) => Err(CheckError::Ssh { source }),
                Ok(Ok(out)) if out.exit == 0 => Ok(()),
                Ok(Ok(out)) if out.exit == 124 => Err(CheckError::TimedOut {
                    after: timeout,
                    tail: tail_note(&out.stdout_text(), &out.stderr_text()),
                }),
                Ok(Ok(out)) => Err(CheckError::Exited {
                    code: out.exit,
                    tail: tail_note(&out.stdout_text(), &out.stderr_text()),
                }),
            }
        }
        .instrument(span)
        .await
    }
}

/// `: <last lines>` of a command's output, or nothing: the last lines of
/// stdout, then those of stderr after `stderr:`, so that noise on one
/// stream (a login shell's profile that warns) never hides the other.
fn tail_note(stdout: &str, stderr: &str) -> String {
    let tail = |text: &str| {
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    };
    match (stdout.trim().is_empty(), stderr.trim().is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(": {}", tail(stdout)),
        (true, false) => format!(": {}", tail(stderr)),
        (false, false) => format!(": {}\nstderr: {}", tail(stdout), tail(stderr)),
    }
}

pub(super) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_last_lines() {
        assert_eq!(tail_note("", "a\nb\n"), ": a\nb");
        assert_eq!(tail_note("x\n", ""), ": x");
        assert_eq!(tail_note("", ""), "");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }

    /// A login shell's noise on stderr (a profile that warns) must not
    /// hide what the command itself printed (a CI failure: `pyenv:
    /// cannot rehash` replaced the check's `not ready yet`).
    #[test]
    fn a_note_keeps_stdout_when_stderr_has_lines_too() {
        let note = tail_note("not ready yet\n", "pyenv: cannot rehash\n");
        assert!(note.contains("not ready yet"), "{note}");
        assert!(note.contains("pyenv: cannot rehash"), "{note}");
    }
}
