//! The shell text the SSH executor sends: the deploy script built from the
//! target's template and the request, and the small POSIX `sh` programs that
//! prepare, start, follow, read and kill a run on the target.
//!
//! A run lives in `<work_dir>/runs/<run_key>/`: the artifacts at the top, the
//! executor's own files in `.task/` (artifact names never start with a dot).
//! `.task/started/` is created with an atomic `mkdir`, so of two executors
//! racing on one run key only one starts the command; `.task/exit_code`
//! appears (by rename) only once the command has ended.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::domain::task::TaskKind;
use crate::domain::{DeployTemplate, TargetSpec};
use crate::executor::TaskRequest;

/// The executor's files inside a run directory.
pub const TASK_DIR: &str = ".task";

/// Exit status of the remote programs when the run directory is unusable.
pub const EXIT_NO_RUN_DIR: u32 = 90;
/// `follow`: the command has ended (`exit_code` exists).
pub const FOLLOW_FINISHED: u32 = 0;
/// `follow`: the command still runs; call again.
pub const FOLLOW_RUNNING: u32 = 10;
/// `follow`: nothing runs and no exit code was recorded (the target
/// rebooted, or the process was killed from outside).
pub const FOLLOW_LOST: u32 = 11;

/// Variables the executor sets itself; `vars` may not override them.
const RESERVED: &[&str] = &[
    "SEXTANT_RELEASE",
    "SEXTANT_RELEASE_ID",
    "SEXTANT_COMPONENT",
    "SEXTANT_IMAGE",
    "SEXTANT_DIGEST",
    "SEXTANT_PREVIOUS_DIGEST",
    "SEXTANT_ARTIFACT_DIR",
    "SEXTANT_TASK_ID",
    "SEXTANT_TASK_KIND",
    "SEXTANT_SLOT",
    "TRACEPARENT",
];

/// Quotes `text` for POSIX `sh`: one single-quoted word, whatever it holds.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name safe as one path component on any target: `[A-Za-z0-9._-]`, not
/// starting with a dot, at most 200 bytes.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A Docker container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Why a run directory cannot be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunDirError {
    #[error("work_dir {work_dir:?} contains a line break or NUL")]
    WorkDir { work_dir: String },
    #[error(
        "run key {run_key:?} is not a safe file name (letters, digits, '.', '_', '-'; \
         not starting with '.')"
    )]
    RunKey { run_key: String },
}

/// Why the deploy script for a request cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("variable name {name:?} is not a shell identifier ([A-Za-z_][A-Za-z0-9_]*)")]
    VarName { name: String },
    #[error("variable {name} is set by Sextant and cannot be overridden in vars")]
    Reserved { name: String },
    #[error("the value of {name} contains a NUL byte")]
    Nul { name: String },
    #[error("target {target:?} has no deploy template (custom, docker or compose)")]
    NoTemplate { target: String },
    #[error("slot {slot:?} is not a safe name")]
    Slot { slot: String },
    #[error("target {target:?}: a switch task needs the custom template's `switch` command")]
    NoSwitchCommand { target: String },
    #[error("target {target:?}: a switch task needs a custom template with a `switch` command")]
    SwitchNeedsCustom { target: String },
    #[error("target {target:?}: the custom command is empty")]
    EmptyCommand { target: String },
    #[error("container name {container:?} is not valid ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")]
    ContainerName { container: String },
    #[error(
        "target {target:?} uses the compose template but the task has no compose-lock.yml artifact"
    )]
    NoComposeLock { target: String },
}

/// The run directory as the remote shell should see it: `work_dir` (default
/// `.sextant`, relative to the login directory) `/runs/<run_key>`.
pub fn run_dir(work_dir: Option<&str>, run_key: &str) -> Result<String, RunDirError> {
    let work_dir = work_dir.unwrap_or(".sextant").trim_end_matches('/');
    let work_dir = if work_dir.is_empty() { "/" } else { work_dir };
    if work_dir.contains(['\n', '\r', '\0']) {
        return Err(RunDirError::WorkDir {
            work_dir: work_dir.to_owned(),
        });
    }
    if !is_safe_name(run_key) {
        return Err(RunDirError::RunKey {
            run_key: run_key.to_owned(),
        });
    }
    Ok(format!("{}/runs/{run_key}", work_dir.trim_end_matches('/')))
}

/// `cd` into `dir`, where `~/…` means the login directory.
fn cd(dir: &str) -> String {
    match dir.strip_prefix("~/") {
        Some(rest) => format!("cd \"$HOME\"/{} ", quote(rest)),
        None => format!("cd {} ", quote(dir)),
    }
}

/// `mkdir -p` of `dir`, where `~/…` means the login directory.
fn mkdir_p(dir: &str) -> String {
    match dir.strip_prefix("~/") {
        Some(rest) => format!("mkdir -p \"$HOME\"/{}", quote(rest)),
        None => format!("mkdir -p {}", quote(dir)),
    }
}

/// Creates the run directory and reports, one `key=value` a line: the login
/// directory (`home`), the run directory's absolute path (`dir`), the run's
/// `state` (`new`, `started` or `done`), the target's clock (`now`) and when
/// the command started (`started_at`), in Unix seconds.
pub fn prepare(run_dir: &str) -> String {
    format!(
        "home=$(pwd)\n\
         {mkdir} || exit {EXIT_NO_RUN_DIR}\n\
         {cd}|| exit {EXIT_NO_RUN_DIR}\n\
         printf 'home=%s\\n' \"$home\"\n\
         printf 'dir=%s\\n' \"$(pwd -P)\"\n\
         if [ -e {TASK_DIR}/exit_code ]; then echo state=done\n\
         elif [ -d {TASK_DIR}/started ]; then echo state=started\n\
         else echo state=new; fi\n\
         echo now=$(date +%s)\n\
         if [ -e {TASK_DIR}/started_at ]; then echo started_at=$(cat {TASK_DIR}/started_at); fi\n",
        mkdir = mkdir_p(&format!("{run_dir}/{TASK_DIR}")),
        cd = cd(run_dir),
    )
}

/// Writes stdin to `dir/name` (through a temporary file and a rename, so a
/// reader never sees half a file) unless the run already started, then
/// prints the file's sha256 (empty when neither `sha256sum` nor `shasum`
/// exists). Prints `skipped` instead when the run started meanwhile.
pub fn upload(dir: &str, name: &str) -> String {
    let name = quote(name);
    format!(
        "{cd}|| exit {EXIT_NO_RUN_DIR}\n\
         if [ -d {TASK_DIR}/started ]; then cat > /dev/null; echo skipped; exit 0; fi\n\
         umask 077\n\
         tmp=.upload.$$\n\
         cat > \"$tmp\" && mv -f \"$tmp\" {name} || {{ rm -f \"$tmp\"; exit 91; }}\n\
         (sha256sum {name} 2>/dev/null || shasum -a 256 {name} 2>/dev/null) | cut -d ' ' -f 1\n",
        cd = cd(dir),
    )
}

/// Runs `script.sh` detached from the SSH session, in a session of its own
/// (its process group id goes to `pid`, for a kill on timeout), and records
/// its exit status in `exit_code` by rename. Runs in `.task/`.
pub const WRAPPER: &str = r#"#!/bin/sh
# Written by Sextant: runs script.sh detached from the SSH session and
# records its exit status. Runs in the run's .task directory.
# `pid` gets the script's process group, which a timeout kills. setsid does
# not fork here (its caller is no group leader); -w (util-linux >= 2.31) only
# matters if it did.
echo $$ > wrapper_pid
if ! command -v setsid > /dev/null 2>&1; then
  sh -c 'echo $$ > pid; exec sh ./script.sh' > stdout 2> stderr < /dev/null
elif setsid -w true > /dev/null 2>&1; then
  setsid -w sh -c 'echo $$ > pid; exec sh ./script.sh' > stdout 2> stderr < /dev/null
else
  setsid sh -c 'echo $$ > pid; exec sh ./script.sh' > stdout 2> stderr < /dev/null
fi
echo $? > exit_code.tmp
mv -f exit_code.tmp exit_code
"#;

/// Starts the wrapper unless someone already did: prints `started`, or
/// `already` when `.task/started` existed.
pub fn start(dir: &str) -> String {
    format!(
        "{cd}|| exit {EXIT_NO_RUN_DIR}\n\
         cd {TASK_DIR} || exit {EXIT_NO_RUN_DIR}\n\
         mkdir started 2> /dev/null || {{ echo already; exit 0; }}\n\
         date +%s > started_at\n\
         cat /proc/sys/kernel/random/boot_id > boot_id 2> /dev/null || :\n\
         : > stdout; : > stderr\n\
         if command -v setsid > /dev/null 2>&1; then\n\
         \x20 setsid nohup sh ./wrapper.sh > /dev/null 2>&1 < /dev/null &\n\
         else\n\
         \x20 nohup sh ./wrapper.sh > /dev/null 2>&1 < /dev/null &\n\
         fi\n\
         echo started\n",
        cd = cd(dir),
    )
}

/// Streams what the command wrote after byte `out` of its stdout (to
/// stdout) and byte `err` of its stderr (to stderr), every `poll`, for at
/// most `window`; exits [`FOLLOW_FINISHED`] once everything up to the exit
/// code has been sent, [`FOLLOW_RUNNING`] when the window ends first, or
/// [`FOLLOW_LOST`] when nothing runs any more and no exit code was recorded.
pub fn follow(dir: &str, out: u64, err: u64, poll: Duration, window: Duration) -> String {
    let poll = format!("{:.3}", poll.as_secs_f64().max(0.01));
    let poll_whole = poll.as_str().split('.').next().unwrap_or("1").to_string();
    let poll_whole = if poll_whole == "0" {
        "1".to_string()
    } else {
        poll_whole
    };
    format!(
        "{cd}|| exit {EXIT_NO_RUN_DIR}\n\
         cd {TASK_DIR} || exit {EXIT_NO_RUN_DIR}\n\
         o={out}; e={err}; end=$(( $(date +%s) + {window} ))\n\
         alive() {{\n\
         \x20 b=$(cat /proc/sys/kernel/random/boot_id 2> /dev/null)\n\
         \x20 if [ -n \"$b\" ] && [ -s boot_id ] && [ \"$b\" != \"$(cat boot_id)\" ]; then return 1; fi\n\
         \x20 if [ -s wrapper_pid ]; then\n\
         \x20   w=$(cat wrapper_pid); kill -0 \"$w\" 2> /dev/null || return 1\n\
         \x20   # A zombie (an orphan nobody reaped yet) does not run.\n\
         \x20   [ -r /proc/$w/stat ] || return 0\n\
         \x20   [ \"$(sed 's/.*) //' /proc/$w/stat | cut -c 1)\" != Z ]; return\n\
         \x20 fi\n\
         \x20 s=$(cat started_at 2> /dev/null); [ -n \"$s\" ] || s=0\n\
         \x20 [ $(( $(date +%s) - s )) -lt 30 ]\n\
         }}\n\
         size() {{ n=$(wc -c < \"$1\" 2> /dev/null); n=$(echo $n); [ -n \"$n\" ] || n=0; echo \"$n\"; }}\n\
         while :; do\n\
         \x20 fin=0; [ -e exit_code ] && fin=1\n\
         \x20 n=$(size stdout); if [ \"$n\" -gt \"$o\" ]; then tail -c +$((o + 1)) stdout | head -c $((n - o)); o=$n; fi\n\
         \x20 n=$(size stderr); if [ \"$n\" -gt \"$e\" ]; then tail -c +$((e + 1)) stderr | head -c $((n - e)) >&2; e=$n; fi\n\
         \x20 [ $fin = 1 ] && exit {FOLLOW_FINISHED}\n\
         \x20 if ! alive && [ ! -e exit_code ]; then exit {FOLLOW_LOST}; fi\n\
         \x20 [ $(date +%s) -lt $end ] || exit {FOLLOW_RUNNING}\n\
         \x20 sleep {poll} 2> /dev/null || sleep {poll_whole}\n\
         done\n",
        cd = cd(dir),
        window = window.as_secs().max(1),
    )
}

/// Prints `exit_code=<code>` (and `timed_out=1` when the executor killed
/// the command) on the first line of stdout, then the last `cap` bytes of
/// the command's stdout; the last `cap` bytes of its stderr go to stderr.
pub fn result(dir: &str, cap: usize) -> String {
    format!(
        "{cd}|| exit {EXIT_NO_RUN_DIR}\n\
         cd {TASK_DIR} || exit {EXIT_NO_RUN_DIR}\n\
         printf 'exit_code=%s' \"$(cat exit_code 2> /dev/null)\"\n\
         if [ -e timed_out ]; then printf ' timed_out=1'; fi\n\
         echo\n\
         tail -c {cap} stdout 2> /dev/null\n\
         tail -c {cap} stderr >&2 2> /dev/null\n\
         exit 0\n",
        cd = cd(dir),
    )
}

/// Marks the run as timed out and kills the command's process group: TERM,
/// then KILL after `grace` if it has not ended. Prints `finished` if it had
/// already ended, else `killed`.
pub fn kill(dir: &str, grace: Duration) -> String {
    let tenths = (grace.as_millis() / 100).max(1);
    format!(
        "{cd}|| exit {EXIT_NO_RUN_DIR}\n\
         cd {TASK_DIR} || exit {EXIT_NO_RUN_DIR}\n\
         if [ -e exit_code ]; then echo finished; exit 0; fi\n\
         : > timed_out\n\
         p=$(cat pid 2> /dev/null)\n\
         if [ -n \"$p\" ]; then kill -TERM -\"$p\" 2> /dev/null || kill -TERM \"$p\" 2> /dev/null; fi\n\
         i=0\n\
         while [ ! -e exit_code ] && [ $i -lt {tenths} ]; do sleep 0.1 2> /dev/null || sleep 1; i=$((i + 1)); done\n\
         if [ ! -e exit_code ] && [ -n \"$p\" ]; then kill -KILL -\"$p\" 2> /dev/null || kill -KILL \"$p\" 2> /dev/null; fi\n\
         echo killed\n",
        cd = cd(dir),
    )
}

/// Wraps a health-check command: `sh -c` under `timeout` when the target
/// has it, so a hung check does not outlive its deadline there either.
pub fn check(command: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs().max(1);
    let command = quote(command);
    format!(
        "if command -v timeout > /dev/null 2>&1; then exec timeout -k 2 {secs} sh -c {command}; \
         else exec sh -c {command}; fi"
    )
}

/// `--label` flags for `docker run`: the `sextant.*` labels an agent puts
/// on the containers it deploys (`sextant_protocol::deploy::labels`), the
/// job included, so an agent observing the host reports the container
/// with its job.
fn container_labels(target: &TargetSpec, request: &TaskRequest) -> String {
    use sextant_protocol::deploy::labels;
    [
        (labels::APPLICATION, request.context.application.as_str()),
        (labels::WORKLOAD, request.component.as_str()),
        (labels::TARGET, target.hub_target()),
        (labels::ENVIRONMENT, request.context.environment.as_str()),
        (labels::RELEASE, request.release.as_str()),
        (labels::REVISION, request.digest.as_str()),
        (labels::JOB, request.context.job_id.as_str()),
    ]
    .iter()
    .map(|(k, v)| format!("--label {} ", quote(&format!("{k}={v}"))))
    .collect()
}

/// Builds `script.sh`: the exports, a `cd` to the login directory, and the
/// command the target's template makes for this request.
pub fn deploy_script(
    target: &TargetSpec,
    request: &TaskRequest,
    home: &str,
    artifact_dir: &str,
) -> Result<String, ScriptError> {
    let body = command(target, request)?;
    let mut vars: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in target.vars.iter().chain(request.vars.iter()) {
        if !is_identifier(name) {
            return Err(ScriptError::VarName { name: name.clone() });
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(ScriptError::Reserved { name: name.clone() });
        }
        vars.insert(name, value);
    }
    let mut fixed: Vec<(&str, String)> = vec![
        ("SEXTANT_RELEASE", request.release.clone()),
        ("SEXTANT_RELEASE_ID", request.release_id.clone()),
        ("SEXTANT_COMPONENT", request.component.clone()),
        ("SEXTANT_IMAGE", request.image.clone()),
        ("SEXTANT_DIGEST", request.digest.clone()),
        (
            "SEXTANT_PREVIOUS_DIGEST",
            request.previous_digest.clone().unwrap_or_default(),
        ),
        ("SEXTANT_ARTIFACT_DIR", artifact_dir.to_string()),
        ("SEXTANT_TASK_ID", request.task_id.clone()),
        ("SEXTANT_TASK_KIND", request.kind.as_str().to_string()),
        ("SEXTANT_SLOT", request.slot.clone().unwrap_or_default()),
    ];
    if let Some(tp) = &request.traceparent {
        fixed.push(("TRACEPARENT", tp.clone()));
    }
    let mut script = String::from("#!/bin/sh\n# Written by Sextant for task ");
    script.push_str(&request.run_key());
    script.push('\n');
    for (name, value) in fixed.iter().map(|(n, v)| (*n, v.as_str())).chain(vars) {
        if value.contains('\0') {
            return Err(ScriptError::Nul {
                name: name.to_owned(),
            });
        }
        let _ = writeln!(script, "export {name}={}", quote(value));
    }
    let _ = writeln!(script, "cd {} || exit 1", quote(home));
    script.push_str(&body);
    if !script.ends_with('\n') {
        script.push('\n');
    }
    Ok(script)
}

/// The command the target's template makes for this request's kind.
fn command(target: &TargetSpec, request: &TaskRequest) -> Result<String, ScriptError> {
    let name = || target.name.clone();
    let Some(template) = &target.deploy else {
        return Err(ScriptError::NoTemplate { target: name() });
    };
    if let Some(slot) = &request.slot
        && !is_safe_name(slot)
    {
        return Err(ScriptError::Slot { slot: slot.clone() });
    }
    match (template, request.kind) {
        (DeployTemplate::Custom { switch, .. }, TaskKind::Switch) => match switch {
            Some(switch) if !switch.trim().is_empty() => Ok(switch.clone()),
            _ => Err(ScriptError::NoSwitchCommand { target: name() }),
        },
        (_, TaskKind::Switch) => Err(ScriptError::SwitchNeedsCustom { target: name() }),
        (DeployTemplate::Custom { command, .. }, _) => {
            if command.trim().is_empty() {
                return Err(ScriptError::EmptyCommand { target: name() });
            }
            Ok(command.clone())
        }
        (DeployTemplate::Docker { name, args }, _) => {
            let container = match &request.slot {
                Some(slot) => format!("{name}-{slot}"),
                None => name.clone(),
            };
            if !is_container_name(&container) {
                return Err(ScriptError::ContainerName { container });
            }
            let container = quote(&container);
            let labels = container_labels(target, request);
            let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("{} ", args.join(" "))
            };
            Ok(format!(
                "set -eu\n\
                 docker pull \"$SEXTANT_IMAGE\"\n\
                 docker rm -f {container} > /dev/null 2>&1 || true\n\
                 docker run -d --name {container} {labels}{args}\"$SEXTANT_IMAGE\"\n"
            ))
        }
        (DeployTemplate::Compose { project }, _) => {
            if !request
                .artifacts
                .iter()
                .any(|a| a.name == "compose-lock.yml")
            {
                return Err(ScriptError::NoComposeLock { target: name() });
            }
            let project = match project {
                Some(p) => format!("-p {} ", quote(p)),
                None => String::new(),
            };
            // Compose v2 (the `docker compose` plugin), else the
            // standalone `docker-compose` (v1, as Debian 12 ships it).
            Ok(format!(
                "set -eu\n\
                 if docker compose version > /dev/null 2>&1; then\n\
                 \x20 docker compose {project}-f \"$SEXTANT_ARTIFACT_DIR/compose-lock.yml\" up -d\n\
                 else\n\
                 \x20 docker-compose {project}-f \"$SEXTANT_ARTIFACT_DIR/compose-lock.yml\" up -d\n\
                 fi\n"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::Artifact;
    use crate::executor::TaskContext;

    fn target(deploy: Option<DeployTemplate>) -> TargetSpec {
        TargetSpec {
            name: "web-1".into(),
            environment: "dev".into(),
            ssh: None,
            agent: None,
            labels: BTreeMap::new(),
            deploy,
            health: None,
            vars: BTreeMap::from([("PORT".to_string(), "8080".to_string())]),
            hub_target: None,
        }
    }

    fn request(kind: TaskKind) -> TaskRequest {
        TaskRequest {
            task_id: "t1".into(),
            attempt: 1,
            kind,
            release: "r'1".into(),
            release_id: "0b6c7f0e-1".into(),
            component: "web".into(),
            image: "reg/web@sha256:abc".into(),
            digest: "sha256:abc".into(),
            previous_digest: None,
            slot: None,
            artifacts: vec![],
            timeout: Duration::from_secs(60),
            traceparent: Some("00-abc-def-01".into()),
            vars: BTreeMap::new(),
            context: TaskContext {
                tenant: "default".into(),
                job_id: "j-1".into(),
                environment: "dev".into(),
                application: "shop".into(),
            },
        }
    }

    fn sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("run sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quoting_survives_the_shell() {
        for text in ["plain", "it's", "$(rm -rf /)", "a\nb", "'", "", "\\'\"`"] {
            assert_eq!(sh(&format!("printf %s {}", quote(text))), text);
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(is_identifier("_A1"));
        assert!(!is_identifier("1A"));
        assert!(!is_identifier("A-B"));
        assert!(!is_identifier(""));
        assert!(is_safe_name("task-1.2"));
        assert!(!is_safe_name(".task"));
        assert!(!is_safe_name("a/b"));
        assert!(run_dir(None, "t.1").is_ok_and(|d| d == ".sextant/runs/t.1"));
        assert!(run_dir(Some("/srv/x/"), "t.1").is_ok_and(|d| d == "/srv/x/runs/t.1"));
        assert!(run_dir(None, "../x").is_err());
    }

    #[test]
    fn custom_script_exports_everything_quoted() {
        let t = target(Some(DeployTemplate::Custom {
            command: "echo \"$SEXTANT_RELEASE $PORT\"".into(),
            switch: None,
        }));
        let script = deploy_script(&t, &request(TaskKind::Deploy), "/", "/tmp/a dir").unwrap();
        assert!(
            script.contains("export SEXTANT_RELEASE='r'\\''1'\n"),
            "{script}"
        );
        assert!(script.contains("export SEXTANT_RELEASE_ID='0b6c7f0e-1'\n"));
        assert!(script.contains("export TRACEPARENT='00-abc-def-01'\n"));
        assert!(script.contains("export SEXTANT_PREVIOUS_DIGEST=''\n"));
        assert_eq!(sh(&script), "r'1 8080\n");
    }

    #[test]
    fn bad_vars_and_switches_are_refused() {
        let mut t = target(Some(DeployTemplate::Custom {
            command: "true".into(),
            switch: None,
        }));
        let err = deploy_script(&t, &request(TaskKind::Switch), "/", "/d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("switch"), "{err}");
        t.vars.insert("BAD-NAME".into(), "x".into());
        let err = deploy_script(&t, &request(TaskKind::Deploy), "/", "/d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("BAD-NAME"), "{err}");
        t.vars.clear();
        t.vars.insert("SEXTANT_IMAGE".into(), "x".into());
        assert!(deploy_script(&t, &request(TaskKind::Deploy), "/", "/d").is_err());
        assert!(deploy_script(&target(None), &request(TaskKind::Deploy), "/", "/d").is_err());
    }

    #[test]
    fn docker_and_compose_commands() {
        let t = target(Some(DeployTemplate::Docker {
            name: "web".into(),
            args: vec!["-p".into(), "8080:80".into()],
        }));
        let mut req = request(TaskKind::Deploy);
        req.slot = Some("blue".into());
        let script = deploy_script(&t, &req, "/", "/d").unwrap();
        assert!(
            script.contains("docker pull \"$SEXTANT_IMAGE\"\n"),
            "{script}"
        );
        // Labelled as the agent labels its containers, the job included,
        // so an agent on the host links the container to its job.
        assert!(
            script.contains(
                "docker run -d --name 'web-blue' --label 'sextant.application=shop' \
                 --label 'sextant.workload=web' --label 'sextant.target=web-1' \
                 --label 'sextant.environment=dev' --label 'sextant.release=r'\\''1' \
                 --label 'sextant.revision=sha256:abc' --label 'sextant.job=j-1' \
                 '-p' '8080:80' \"$SEXTANT_IMAGE\"\n"
            ),
            "{script}"
        );
        assert!(deploy_script(&t, &request(TaskKind::Switch), "/", "/d").is_err());

        let t = target(Some(DeployTemplate::Compose {
            project: Some("shop".into()),
        }));
        assert!(deploy_script(&t, &req, "/", "/d").is_err());
        req.artifacts.push(Artifact {
            name: "compose-lock.yml".into(),
            content: vec![],
            sha256: String::new(),
        });
        let script = deploy_script(&t, &req, "/", "/d").unwrap();
        assert!(script.contains(
            "  docker compose -p 'shop' -f \"$SEXTANT_ARTIFACT_DIR/compose-lock.yml\" up -d\n"
        ));
        assert!(script.contains(
            "  docker-compose -p 'shop' -f \"$SEXTANT_ARTIFACT_DIR/compose-lock.yml\" up -d\n"
        ));
    }
}
