//! One execution of one request on an SSH target: prepare, upload, start,
//! follow, result (see the parent module for the protocol).

use std::time::{Duration, Instant};

use sextant_protocol::deploy::{ErrorKind, TaskOutcome};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::lines::Lines;
use super::session::{self, Chunk, ConnectError, Endpoint, Session};
use super::{SshExecutor, human, script, tail_note};
use crate::domain::TargetSpec;
use crate::domain::task::LogStream;
use crate::executor::{TaskEvent, TaskRequest};

/// How long the small bookkeeping commands (prepare, start, result) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What `prepare` found on the target.
#[derive(Debug, Default)]
struct Prepared {
    home: String,
    dir: String,
    state: String,
    now: Option<u64>,
    started_at: Option<u64>,
}

impl Prepared {
    fn parse(text: &str) -> Self {
        let mut p = Prepared::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "home" => p.home = value.to_string(),
                "dir" => p.dir = value.to_string(),
                "state" => p.state = value.to_string(),
                "now" => p.now = value.trim().parse().ok(),
                "started_at" => p.started_at = value.trim().parse().ok(),
                _ => {}
            }
        }
        p
    }

    /// How long the command has been running, by the target's clock.
    fn elapsed(&self) -> Duration {
        match (self.now, self.started_at) {
            (Some(now), Some(start)) => Duration::from_secs(now.saturating_sub(start)),
            _ => Duration::ZERO,
        }
    }
}

/// Why a run stopped before its command was followed.
enum Stop {
    /// The target refused a step: the session works, and is closed.
    Refused(TaskOutcome),
    /// The connection failed, or the target's answer made no sense.
    Broken(TaskOutcome),
}

/// Where a run stands once it has been prepared.
enum Begun {
    /// It had finished before: its recorded result is read.
    Finished,
    /// It runs (started now or before), and has run for `elapsed` by the
    /// target's clock.
    Running { elapsed: Duration },
}

/// How following a started run ended.
enum Followed {
    Finished,
    Lost,
    TimedOut,
    Failed(TaskOutcome),
}

/// One execution of one request.
pub(super) struct Run<'a> {
    executor: &'a SshExecutor,
    target: &'a TargetSpec,
    request: &'a TaskRequest,
    events: &'a mpsc::Sender<TaskEvent>,
    run_key: String,
    resumed: bool,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        executor: &'a SshExecutor,
        target: &'a TargetSpec,
        request: &'a TaskRequest,
        events: &'a mpsc::Sender<TaskEvent>,
    ) -> Self {
        Self {
            executor,
            target,
            request,
            events,
            run_key: request.run_key(),
            resumed: false,
        }
    }

    async fn emit(&self, event: TaskEvent) {
        // A closed receiver is not an error: the task runs on regardless.
        let _ = self.events.send(event).await;
    }

    async fn note(&self, line: String) {
        self.emit(TaskEvent::Log {
            stream: LogStream::System,
            line,
        })
        .await;
    }

    fn invalid(&self, message: impl Into<String>) -> TaskOutcome {
        TaskOutcome::failed(ErrorKind::Invalid, false, message)
    }

    /// Checks what can be checked without the network.
    fn validate(&self) -> Result<(Endpoint, String), Box<TaskOutcome>> {
        let invalid = |message: String| Box::new(self.invalid(message));
        let Some(conn) = &self.target.ssh else {
            return Err(invalid(format!(
                "target {:?} has no ssh connection",
                self.target.name
            )));
        };
        let run_dir = script::run_dir(conn.work_dir.as_deref(), &self.run_key)
            .map_err(|e| invalid(e.to_string()))?;
        let mut names = std::collections::BTreeSet::new();
        for artifact in &self.request.artifacts {
            if !script::is_safe_name(&artifact.name) {
                return Err(invalid(format!(
                    "artifact name {:?} is not a plain file name (letters, digits, '.', '_', '-'; \
                     not starting with '.')",
                    artifact.name
                )));
            }
            if !names.insert(artifact.name.as_str()) {
                return Err(invalid(format!(
                    "artifact {:?} appears twice",
                    artifact.name
                )));
            }
            let sha = hex::encode(Sha256::digest(&artifact.content));
            if !sha.eq_ignore_ascii_case(artifact.sha256.trim()) {
                return Err(invalid(format!(
                    "artifact {:?} does not match its sha256 (recorded {}, content {sha})",
                    artifact.name, artifact.sha256
                )));
            }
        }
        // The template and vars, with placeholder paths.
        script::deploy_script(self.target, self.request, "/", "/")
            .map_err(|e| invalid(e.to_string()))?;
        let endpoint = Endpoint::new(conn).map_err(|e| Box::new(e.outcome()))?;
        Ok((endpoint, run_dir))
    }

    pub(super) async fn execute(mut self) -> TaskOutcome {
        let (endpoint, run_dir) = match self.validate() {
            Ok(v) => v,
            Err(outcome) => return *outcome,
        };
        self.note(format!(
            "Connecting to {}@{}:{}",
            endpoint.user, endpoint.host, endpoint.port
        ))
        .await;
        let session = match Session::connect(&endpoint, self.executor.connect_timeout).await {
            Ok(s) => s,
            Err(e) => return e.outcome(),
        };
        let outcome = self.on(&endpoint, session, &run_dir).await;
        TaskOutcome {
            resumed: self.resumed,
            ..outcome
        }
    }

    /// Everything after connecting: prepare, start (or find the run
    /// started or finished already), follow, result. Until the command
    /// starts, a failure is retryable: nothing ran.
    async fn on(&mut self, endpoint: &Endpoint, session: Session, run_dir: &str) -> TaskOutcome {
        let begun = match self.prepare(endpoint, &session, run_dir).await {
            Ok(prepared) => self
                .begin(endpoint, &session, &prepared)
                .await
                .map(|begun| (prepared.dir, begun)),
            Err(stop) => Err(stop),
        };
        let (dir, elapsed) = match begun {
            Ok((dir, Begun::Finished)) => return self.result(endpoint, session, &dir, false).await,
            Ok((dir, Begun::Running { elapsed })) => (dir, elapsed),
            Err(Stop::Refused(outcome)) => {
                session.close().await;
                return outcome;
            }
            Err(Stop::Broken(outcome)) => return outcome,
        };
        self.emit(TaskEvent::Status("running".into())).await;
        let deadline = Instant::now() + self.request.timeout.saturating_sub(elapsed);
        let (session, followed) = self.follow(endpoint, session, &dir, deadline).await;
        let Some(session) = session else {
            return match followed {
                Followed::Failed(outcome) => outcome,
                _ => TaskOutcome::failed(ErrorKind::Connection, false, "lost the connection"),
            };
        };
        self.conclude(endpoint, session, &dir, followed).await
    }

    /// Creates the run directory (or finds it) and reads what the target
    /// knows of the run.
    async fn prepare(
        &self,
        endpoint: &Endpoint,
        session: &Session,
        run_dir: &str,
    ) -> Result<Prepared, Stop> {
        let out = self
            .step(session, &script::prepare(run_dir), None)
            .await
            .map_err(Stop::Broken)?;
        if out.exit != 0 {
            return Err(Stop::Refused(TaskOutcome::failed(
                ErrorKind::Command,
                false,
                format!(
                    "cannot create the run directory {run_dir} on {}{}",
                    endpoint.host,
                    tail_note("", &out.stderr_text())
                ),
            )));
        }
        let prepared = Prepared::parse(&out.stdout_text());
        if prepared.dir.is_empty() || prepared.home.is_empty() {
            return Err(Stop::Broken(TaskOutcome::failed(
                ErrorKind::Command,
                false,
                format!(
                    "unexpected answer from {} while preparing {run_dir}",
                    session.label()
                ),
            )));
        }
        Ok(prepared)
    }

    /// Starts the command, unless the run already started or finished
    /// (then it is resumed, not run twice).
    async fn begin(
        &mut self,
        endpoint: &Endpoint,
        session: &Session,
        prepared: &Prepared,
    ) -> Result<Begun, Stop> {
        match prepared.state.as_str() {
            "done" => {
                self.resumed = true;
                self.note(format!(
                    "Run {} already finished on {}; returning its recorded result",
                    self.run_key,
                    session.label()
                ))
                .await;
                Ok(Begun::Finished)
            }
            "started" => {
                self.resumed = true;
                self.note(format!(
                    "Run {} already started on {}; following it",
                    self.run_key,
                    session.label()
                ))
                .await;
                Ok(Begun::Running {
                    elapsed: prepared.elapsed(),
                })
            }
            _ => {
                self.upload(session, &prepared.dir, &prepared.home)
                    .await
                    .map_err(Stop::Refused)?;
                self.start(endpoint, session, &prepared.dir)
                    .await
                    .map(|started_now| Begun::Running {
                        elapsed: if started_now {
                            Duration::ZERO
                        } else {
                            prepared.elapsed()
                        },
                    })
            }
        }
    }

    /// Starts the uploaded command; `true` if this call started it,
    /// `false` if someone else did meanwhile.
    async fn start(
        &mut self,
        endpoint: &Endpoint,
        session: &Session,
        dir: &str,
    ) -> Result<bool, Stop> {
        let out = match self.step(session, &script::start(dir), None).await {
            Ok(out) => out,
            // We may not know whether it started: resume by the same key.
            Err(outcome) => {
                return Err(Stop::Broken(TaskOutcome {
                    retryable: false,
                    ..outcome
                }));
            }
        };
        match (out.exit, out.stdout_text().trim()) {
            (0, "started") => {
                tracing::info!(dir = %dir, "Command started");
                self.note(format!("Started the deploy command in {dir}"))
                    .await;
                Ok(true)
            }
            (0, "already") => {
                self.resumed = true;
                self.note(format!(
                    "Run {} was started by someone else meanwhile; following it",
                    self.run_key
                ))
                .await;
                Ok(false)
            }
            _ => Err(Stop::Refused(TaskOutcome::failed(
                ErrorKind::Command,
                false,
                format!(
                    "cannot start the command in {dir} on {} (exit {}){}",
                    endpoint.host,
                    out.exit,
                    tail_note(&out.stdout_text(), &out.stderr_text())
                ),
            ))),
        }
    }

    /// The outcome of a run followed to its end (or its deadline) with the
    /// session still open.
    async fn conclude(
        &self,
        endpoint: &Endpoint,
        session: Session,
        dir: &str,
        followed: Followed,
    ) -> TaskOutcome {
        match followed {
            Followed::Finished => self.result(endpoint, session, dir, false).await,
            Followed::TimedOut => self.kill(endpoint, session, dir).await,
            Followed::Lost => {
                session.close().await;
                TaskOutcome::failed(
                    ErrorKind::Command,
                    false,
                    format!(
                        "the command of run {} on {} ended without recording an exit code \
                         (the target rebooted, or its process was killed)",
                        self.run_key, endpoint.host
                    ),
                )
            }
            Followed::Failed(outcome) => {
                session.close().await;
                outcome
            }
        }
    }

    /// Kills a command past its timeout and reads what it recorded.
    async fn kill(&self, endpoint: &Endpoint, session: Session, dir: &str) -> TaskOutcome {
        tracing::warn!(timeout = ?self.request.timeout, "Task timed out; killing it");
        self.note(format!(
            "Timed out after {}; killing the command",
            human(self.request.timeout)
        ))
        .await;
        let kill = script::kill(dir, self.executor.kill_grace);
        if let Err(outcome) = self.step(&session, &kill, None).await {
            return TaskOutcome::failed(
                ErrorKind::Timeout,
                true,
                format!(
                    "the task timed out after {} and could not be killed: {}",
                    human(self.request.timeout),
                    outcome.error.unwrap_or_default()
                ),
            );
        }
        self.result(endpoint, session, dir, true).await
    }

    /// Runs one bookkeeping command; a transport failure is a retryable
    /// connection error.
    async fn step(
        &self,
        session: &Session,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<session::Output, TaskOutcome> {
        match tokio::time::timeout(
            STEP_TIMEOUT,
            session.run(command, stdin, 2 * self.executor.output_cap + 4096),
        )
        .await
        {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(TaskOutcome::failed(
                ErrorKind::Connection,
                true,
                format!("SSH to {} failed: {e}", session.label()),
            )),
            Err(_) => Err(TaskOutcome::failed(
                ErrorKind::Connection,
                true,
                format!(
                    "a command over SSH to {} did not answer within {}",
                    session.label(),
                    human(STEP_TIMEOUT)
                ),
            )),
        }
    }

    /// Uploads the artifacts, the wrapper and the deploy script.
    async fn upload(&self, session: &Session, dir: &str, home: &str) -> Result<(), TaskOutcome> {
        let script = script::deploy_script(self.target, self.request, home, dir)
            .map_err(|e| self.invalid(e.to_string()))?;
        let span = tracing::info_span!("ssh.upload", artifacts = self.request.artifacts.len());
        async {
            let task = script::TASK_DIR;
            let files = self
                .request
                .artifacts
                .iter()
                .map(|a| (a.name.clone(), a.content.as_slice()))
                .chain([
                    (format!("{task}/wrapper.sh"), script::WRAPPER.as_bytes()),
                    (format!("{task}/script.sh"), script.as_bytes()),
                ]);
            for (name, content) in files {
                let out = self
                    .step(session, &script::upload(dir, &name), Some(content))
                    .await?;
                if out.exit != 0 {
                    return Err(TaskOutcome::failed(
                        ErrorKind::Command,
                        false,
                        format!(
                            "cannot write {name} into {dir} on {} (exit {}){}",
                            session.label(),
                            out.exit,
                            tail_note("", &out.stderr_text())
                        ),
                    ));
                }
                let answer = out.stdout_text();
                let answer = answer.trim();
                if answer == "skipped" {
                    // The run started meanwhile; `start` will say so.
                    return Ok(());
                }
                let sha = hex::encode(Sha256::digest(content));
                if !answer.is_empty() && answer != sha {
                    return Err(TaskOutcome::failed(
                        ErrorKind::Connection,
                        true,
                        format!(
                            "{name} arrived corrupted on {} (sha256 {answer}, sent {sha})",
                            session.label()
                        ),
                    ));
                }
                tracing::debug!(file = %name, bytes = content.len(), verified = !answer.is_empty(), "Uploaded");
            }
            if !self.request.artifacts.is_empty() {
                self.note(format!(
                    "Uploaded {} artifact(s) to {dir}",
                    self.request.artifacts.len()
                ))
                .await;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Streams the run's output until it ends, times out, or is lost;
    /// reconnects when the connection drops. Returns the session to carry
    /// on with (`None` if there is none).
    async fn follow(
        &self,
        endpoint: &Endpoint,
        mut session: Session,
        dir: &str,
        deadline: Instant,
    ) -> (Option<Session>, Followed) {
        let span = tracing::info_span!("ssh.run", dir = %dir);
        let (mut out_off, mut err_off) = (0u64, 0u64);
        let mut out_lines = Lines::new(LogStream::Stdout);
        let mut err_lines = Lines::new(LogStream::Stderr);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return (Some(session), Followed::TimedOut);
            }
            // Whole seconds on the target, rounded up so we never stop early.
            let window = self
                .executor
                .follow_window
                .min(Duration::from_secs(remaining.as_secs() + 1));
            let command =
                script::follow(dir, out_off, err_off, self.executor.poll_interval, window);
            let followed = tokio::time::timeout(window + Duration::from_secs(20), async {
                let mut exec = session.start(&command, None).await?;
                while let Some(chunk) = exec.next().await {
                    let mut batch = Vec::new();
                    match chunk {
                        Chunk::Stdout(data) => {
                            out_off += data.len() as u64;
                            out_lines.push(&data, &mut batch);
                        }
                        Chunk::Stderr(data) => {
                            err_off += data.len() as u64;
                            err_lines.push(&data, &mut batch);
                        }
                    }
                    for event in batch {
                        self.emit(event).await;
                    }
                }
                exec.exit_status()
            })
            .instrument(span.clone())
            .await;
            match followed {
                Ok(Ok(script::FOLLOW_FINISHED)) => {
                    let mut batch = Vec::new();
                    out_lines.finish(&mut batch);
                    err_lines.finish(&mut batch);
                    for event in batch {
                        self.emit(event).await;
                    }
                    return (Some(session), Followed::Finished);
                }
                Ok(Ok(script::FOLLOW_RUNNING)) => continue,
                Ok(Ok(script::FOLLOW_LOST)) => return (Some(session), Followed::Lost),
                Ok(Ok(code)) => {
                    return (
                        Some(session),
                        Followed::Failed(TaskOutcome::failed(
                            ErrorKind::Command,
                            false,
                            format!(
                                "following run {} on {} failed (exit {code}): its directory {dir} \
                                 is gone or unreadable",
                                self.run_key, endpoint.host
                            ),
                        )),
                    );
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "Lost the SSH connection while following; reconnecting");
                }
                Err(_) => {
                    tracing::warn!(
                        "The SSH connection stopped answering while following; reconnecting"
                    );
                }
            }
            session.close().await;
            match self.reconnect(endpoint, deadline).await {
                Ok(s) => session = s,
                Err(outcome) => return (None, Followed::Failed(outcome)),
            }
        }
    }

    /// Reconnects after the connection dropped mid-run, with backoff, until
    /// `reconnect_for` past the deadline.
    async fn reconnect(
        &self,
        endpoint: &Endpoint,
        deadline: Instant,
    ) -> Result<Session, TaskOutcome> {
        self.note(format!(
            "Lost the connection to {}; reconnecting (the command keeps running there)",
            endpoint.host
        ))
        .await;
        let give_up = deadline + self.executor.reconnect_for;
        let mut delay = Duration::from_millis(500);
        loop {
            match Session::connect(endpoint, self.executor.connect_timeout).await {
                Ok(session) => return Ok(session),
                Err(ConnectError::Unreachable(message)) => {
                    if Instant::now() + delay >= give_up {
                        return Err(TaskOutcome::failed(
                            ErrorKind::Connection,
                            // Not retryable: a retry would be a new attempt,
                            // and this one may still be running. Executing
                            // the same request again resumes it.
                            false,
                            format!(
                                "lost the connection to {} while run {} was running there, \
                                 and could not reconnect ({message}); its outcome is unknown: \
                                 execute the same request again to resume it",
                                endpoint.host, self.run_key
                            ),
                        ));
                    }
                    tracing::info!(error = %message, delay = ?delay, "Reconnect failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(other) => return Err(other.outcome()),
            }
        }
    }

    /// Reads the recorded exit code and output and makes the outcome.
    async fn result(
        &self,
        endpoint: &Endpoint,
        session: Session,
        dir: &str,
        timed_out: bool,
    ) -> TaskOutcome {
        let cap = self.executor.output_cap;
        let out = self.step(&session, &script::result(dir, cap), None).await;
        session.close().await;
        let out = match out {
            Ok(out) => out,
            Err(outcome) => {
                return TaskOutcome {
                    retryable: false,
                    error: Some(format!(
                        "{} (run {} finished; execute the same request again to read its result)",
                        outcome.error.unwrap_or_default(),
                        self.run_key
                    )),
                    ..outcome
                };
            }
        };
        let text = out.stdout_text();
        let (header, stdout) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        let mut exit_code = None;
        let mut killed = timed_out;
        for field in header.split_whitespace() {
            match field.split_once('=') {
                Some(("exit_code", v)) => exit_code = v.trim().parse::<i32>().ok(),
                Some(("timed_out", "1")) => killed = true,
                _ => {}
            }
        }
        let stdout = trim_tail(stdout.to_string(), cap);
        let stderr = trim_tail(out.stderr_text(), cap);
        let base = TaskOutcome {
            exit_code,
            stdout,
            stderr,
            ..TaskOutcome::default()
        };
        match exit_code {
            Some(0) => TaskOutcome {
                success: true,
                deployed_digest: Some(self.request.digest.clone()),
                ..base
            },
            _ if killed => TaskOutcome {
                error: Some(format!(
                    "the deploy command on {} timed out after {} and was killed{}",
                    endpoint.host,
                    human(self.request.timeout),
                    tail_note(&base.stdout, &base.stderr)
                )),
                error_type: Some(ErrorKind::Timeout),
                retryable: true,
                ..base
            },
            Some(code) => TaskOutcome {
                error: Some(format!(
                    "the deploy command on {} exited with {code}{}",
                    endpoint.host,
                    tail_note(&base.stdout, &base.stderr)
                )),
                error_type: Some(ErrorKind::Command),
                retryable: false,
                ..base
            },
            None => TaskOutcome {
                error: Some(format!(
                    "run {} on {} recorded no readable exit code",
                    self.run_key, endpoint.host
                )),
                error_type: Some(ErrorKind::Command),
                retryable: false,
                ..base
            },
        }
    }
}

/// Output read with `tail -c cap` may start mid-line (or mid-character):
/// drop that partial first line.
fn trim_tail(text: String, cap: usize) -> String {
    if text.len() < cap {
        return text;
    }
    match text.find('\n') {
        Some(pos) => text[pos + 1..].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_state_parses() {
        let p = Prepared::parse(
            "home=/root\ndir=/root/.sextant/runs/a.1\nstate=started\nnow=100\nstarted_at=40\n",
        );
        assert_eq!(p.state, "started");
        assert_eq!(p.elapsed(), Duration::from_secs(60));
        assert_eq!(Prepared::parse("state=new\n").elapsed(), Duration::ZERO);
    }

    #[test]
    fn tails_lose_their_partial_first_line() {
        assert_eq!(trim_tail("abc\ndef\n".into(), 8), "def\n");
        assert_eq!(trim_tail("abc\ndef\n".into(), 100), "abc\ndef\n");
    }
}
