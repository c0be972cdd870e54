//! The orchestrator's commands as processes: `sextant orchestrator` on port
//! 0 with its own data directory, driven by `sextant apply`, `release`,
//! `promote`, `approve`, `promotions`, `deployments watch` and `rollback`;
//! and `sextant up` starting an orchestrator next to the hub.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sextant_e2e::wait;

const BIN: &str = env!("CARGO_BIN_EXE_sextant");

/// `sextant` without settings from the caller's environment.
fn sextant() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "SEXTANT_CONFIG",
        "SEXTANT_DATA_DIR",
        "SEXTANT_HUB_URL",
        "SEXTANT_HUB_TOKEN",
        "SEXTANT_HUB_OTLP_ENDPOINT",
        "SEXTANT_TOKEN",
        "SEXTANT_ACTOR",
        "SEXTANT_API_ADDR",
        "SEXTANT_OTLP_GRPC_ADDR",
        "SEXTANT_OTLP_HTTP_ADDR",
        "SEXTANT_DATABASE_URL",
        "SEXTANT_ORCHESTRATOR_ADDR",
        "SEXTANT_ORCHESTRATOR_URL",
        "SEXTANT_ORCHESTRATOR_DATABASE_URL",
        "SEXTANT_ORCHESTRATOR_TOKENS_FILE",
        "SEXTANT_INSECURE_REGISTRIES",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts `cmd` and returns it with its banner (up to "Press Ctrl-C");
/// stdout keeps being drained afterwards.
fn start(mut cmd: Command) -> (Child, String) {
    // The servers' logs only with TEST_LOG set.
    if std::env::var_os("TEST_LOG").is_none() {
        cmd.env("RUST_LOG", "error");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sextant");
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("banner line");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            std::thread::spawn(move || for _ in lines {});
            return (child, banner);
        }
    }
    let status = child.wait().expect("sextant exits");
    panic!("sextant stopped before it was up ({status}):\n{banner}");
}

/// The `http://host:port` printed after `label` in a banner.
fn url(banner: &str, label: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| format!("http://{a}"))
        .unwrap_or_else(|| panic!("no {label} address in:\n{banner}"))
}

/// Sends SIGTERM and waits for the exit.
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    child.wait().expect("sextant exits")
}

/// A `sextant orchestrator` process without a hub, on port 0.
struct Orchestrator {
    url: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Orchestrator {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = sextant();
        cmd.args(["orchestrator", "--listen", "127.0.0.1:0", "--no-hub"])
            .args(["--poll", "200ms", "--lease", "5s", "--replica", "test"])
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        let (child, banner) = start(cmd);
        assert!(
            banner.contains("Sextant orchestrator is up (sqlite database)"),
            "{banner}"
        );
        assert!(
            dir.path().join("data/orchestrator.db").exists(),
            "no database in the data dir:\n{banner}"
        );
        Self {
            url: url(&banner, "API"),
            dir,
            child: Some(child),
        }
    }

    /// Runs `sextant ARGS --orchestrator URL` as `actor`, with `stdin`.
    fn run_as(&self, actor: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = sextant();
        cmd.args(args).args(["--orchestrator", &self.url]);
        if let Some(a) = actor {
            cmd.args(["--as", a]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sextant");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        wait_with_deadline(child, Duration::from_secs(120))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_as(None, args, None)
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, actor: Option<&str>, args: &[&str]) -> String {
        let out = self.run_as(actor, args, None);
        assert!(
            out.status.success(),
            "sextant {args:?} failed ({}):\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write file");
        path
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let status = terminate(child);
            if !std::thread::panicking() {
                assert!(status.success(), "exit on SIGTERM: {status}");
            }
        }
    }
}

fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let finished = wait::poll_blocking(limit, Duration::from_millis(50), || {
        match child.try_wait().expect("try_wait") {
            Some(_) => Ok(()),
            None => Err(()),
        }
    });
    if finished.is_err() {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!(
            "sextant did not finish within {limit:?}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    child.wait_with_output().expect("wait")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An ed25519 key pair: the private key file and the public key line.
fn key_pair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let line = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    (key, line)
}

/// dev and stage (approvals, separation of duties), the web component,
/// and an SSH target in each at `port`.
fn config(port: u16, key: &Path, host_key: &str, stage_approvals: u32) -> String {
    format!(
        r#"environments:
  - name: dev
  - name: stage
    required_approvals: {stage_approvals}
components:
  - name: web
    image: 127.0.0.1:5000/shop/web
    application: shop
targets:
  - name: web-1
    environment: stage
    ssh:
      host: 127.0.0.1
      port: {port}
      user: deploy
      credential: file:{key}
      host_key: {host_key}
    deploy:
      template: custom
      command: "true"
  - name: web-dev
    environment: dev
    ssh:
      host: 127.0.0.1
      port: {port}
      user: deploy
      credential: file:{key}
      host_key: {host_key}
    deploy:
      template: custom
      command: "true"
"#,
        key = key.display()
    )
}

const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

#[test]
fn apply_is_idempotent_and_prints_what_changed() {
    let o = Orchestrator::start();
    let (key, host_key) = key_pair(o.dir.path());
    let port = closed_port();
    let file = o.file("sextant.yaml", &config(port, &key, &host_key, 1));
    let file = file.to_str().expect("utf-8 path");

    let first = o.ok(None, &["apply", "-f", file]);
    for line in [
        "environment/dev created",
        "environment/stage created",
        "component/web created",
        "target/web-1 created",
        "target/web-dev created",
        "5 created, 0 updated, 0 unchanged",
    ] {
        assert!(first.lines().any(|l| l == line), "no {line:?} in:\n{first}");
    }

    let second = o.ok(None, &["apply", "-f", file]);
    let objects: Vec<&str> = second.lines().filter(|l| l.contains('/')).collect();
    assert_eq!(objects.len(), 5, "{second}");
    assert!(
        objects.iter().all(|l| l.ends_with(" unchanged")),
        "{second}"
    );
    assert!(
        second.contains("0 created, 0 updated, 5 unchanged"),
        "{second}"
    );

    // One change, read from stdin: exactly one object is updated.
    let changed = config(port, &key, &host_key, 2);
    let out = o.run_as(None, &["apply", "-f", "-"], Some(&changed));
    assert!(out.status.success(), "{}", stderr(&out));
    let third = stdout(&out);
    let updated: Vec<&str> = third.lines().filter(|l| l.ends_with(" updated")).collect();
    assert_eq!(updated, ["environment/stage updated"], "{third}");
    assert!(
        third.contains("0 created, 1 updated, 4 unchanged"),
        "{third}"
    );

    // JSON for scripts.
    let json: serde_json::Value =
        serde_json::from_str(&o.ok(None, &["apply", "-f", file, "-o", "json"])).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(5), "{json}");
    assert_eq!(json[0]["kind"], "environment");

    // A field the schema does not know: a clear error, exit 2, nothing
    // written.
    let bad = o.file(
        "bad.yaml",
        "environments:\n  - name: qa\n    required_aprovals: 1\n",
    );
    let out = o.run(&["apply", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: invalid configuration")
            && err.contains("required_aprovals")
            && err.trim_end().ends_with("(invalid)"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let not_yaml = o.run_as(None, &["apply", "-f", "-"], Some("environments: [\n"));
    assert_eq!(not_yaml.status.code(), Some(2), "{}", stderr(&not_yaml));
    assert!(stderr(&not_yaml).contains("invalid configuration"));
    let envs = o.ok(None, &["apply", "-f", file]);
    assert!(!envs.contains("qa"), "{envs}");

    // A missing file names itself.
    let out = o.run(&["apply", "-f", "/nonexistent/sextant.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/sextant.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_promotion_needs_an_approval_from_someone_else_then_its_job_fails_on_a_closed_port() {
    let o = Orchestrator::start();
    let (key, host_key) = key_pair(o.dir.path());
    let file = o.file("sextant.yaml", &config(closed_port(), &key, &host_key, 1));
    o.ok(None, &["apply", "-f", file.to_str().expect("utf-8")]);

    // A release pinned by digest needs no registry.
    let image = format!("127.0.0.1:5000/shop/web@{DIGEST}");
    let created = o.ok(
        Some("alice"),
        &[
            "release",
            "create",
            "web-1.0",
            "--component",
            &format!("web={image}"),
        ],
    );
    assert!(
        created.contains("release   web-1.0 (finalized)"),
        "{created}"
    );
    let shown = o.ok(None, &["release", "show", "web-1.0"]);
    assert!(shown.contains(&image) && shown.contains("alice"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&o.ok(None, &["release", "show", "web-1.0", "-o", "json"]))
            .expect("JSON");
    assert_eq!(json["components"][0]["digest"], DIGEST, "{json}");
    assert!(o.ok(None, &["release", "list"]).contains("web-1.0"));
    // Releases are immutable: the same name again is a conflict.
    let again = o.run(&[
        "release",
        "create",
        "web-1.0",
        "-c",
        &format!("web={image}"),
    ]);
    assert_eq!(again.status.code(), Some(5), "{}", stderr(&again));
    assert!(stderr(&again).contains("(conflict)"), "{}", stderr(&again));
    // A draft: `@sha256:…` is appended to the component's repository.
    let draft = o.ok(
        None,
        &[
            "release",
            "create",
            "web-1.1",
            "-c",
            &format!("web=@{DIGEST}"),
            "--draft",
        ],
    );
    assert!(
        draft.contains("(draft)") && draft.contains(&image),
        "{draft}"
    );
    let refused = o.run_as(
        Some("alice"),
        &["promote", "web-1.1", "--to", "stage"],
        None,
    );
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("draft"), "{}", stderr(&refused));
    assert!(
        o.ok(None, &["release", "finalize", "web-1.1"])
            .contains("(finalized)")
    );

    // alice asks; stage wants one approval.
    let promoted = o.ok(
        Some("alice"),
        &[
            "promote",
            "web-1.0",
            "--to",
            "stage",
            "--strategy",
            "rolling",
            "--batch-size",
            "1",
        ],
    );
    let id = promoted
        .lines()
        .find_map(|l| l.strip_prefix("promotion "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no promotion id in:\n{promoted}"))
        .to_owned();
    assert!(
        promoted.contains("state     awaiting_approval (waiting for 0/1 approvals)"),
        "{promoted}"
    );
    let listed = o.ok(
        None,
        &["promotions", "list", "--state", "awaiting_approval"],
    );
    assert!(listed.contains(&id), "{listed}");

    // alice may not approve her own promotion.
    let own = o.run_as(Some("alice"), &["approve", &id], None);
    assert_eq!(
        own.status.code(),
        Some(3),
        "{}{}",
        stdout(&own),
        stderr(&own)
    );
    let err = stderr(&own);
    assert!(
        err.starts_with("error: ")
            && err.contains("separation of duties")
            && err.contains("(forbidden)"),
        "{err}"
    );

    // bob may.
    let approved = o.ok(Some("bob"), &["approve", &id, "--comment", "looks good"]);
    assert!(
        approved.contains(&format!("promotion {id} approved (1 approval)")),
        "{approved}"
    );
    assert!(!approved.contains("awaiting_approval"), "{approved}");

    let show = o.ok(None, &["promotions", "show", &id]);
    assert!(
        show.contains("bob") && show.contains("looks good"),
        "{show}"
    );
    assert!(show.contains("gates and approvals passed"), "{show}");
    let detail: serde_json::Value =
        serde_json::from_str(&o.ok(None, &["promotions", "show", &id, "-o", "json"]))
            .expect("JSON");
    assert_eq!(detail["decision"]["outcome"], "approved", "{detail}");
    assert_eq!(detail["strategy"]["type"], "rolling", "{detail}");
    let job = detail["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job: {detail}"))
        .to_owned();

    // Nothing listens on web-1's port: the job fails, and watch says where.
    let watch = o.run(&["deployments", "watch", &job, "--interval", "200ms"]);
    let out = stdout(&watch);
    assert_eq!(watch.status.code(), Some(1), "{out}{}", stderr(&watch));
    assert!(
        out.contains(&format!("job {job} deploy web-1.0 → stage (rolling)")),
        "{out}"
    );
    let failed = out
        .split("failed targets:")
        .nth(1)
        .unwrap_or_else(|| panic!("no failed targets in:\n{out}"));
    assert!(
        failed.trim_start().starts_with("web-1: web deploy: "),
        "{out}"
    );
    // As JSON: one object per change, ending in the failed state.
    let json = o.run(&["deployments", "watch", &job, "-o", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let last: serde_json::Value =
        serde_json::from_str(stdout(&json).lines().last().expect("a line")).expect("JSON line");
    assert_eq!(last["id"], job.as_str());
    assert!(
        matches!(last["state"].as_str(), Some("failed" | "rolled_back")),
        "{last}"
    );
    assert_eq!(last["tasks"][0]["target"], "web-1");
    assert_eq!(last["tasks"][0]["state"], "failed");
    // On a terminal (a pseudo-terminal from util-linux `script`): a
    // progress bar per target, left where it stood, naming the failure.
    let mut script = Command::new("script");
    for (k, v) in sextant().get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let tty = script
        .args(["-qec"])
        .arg(format!(
            "{BIN} deployments watch {job} --orchestrator {}",
            o.url
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let screen = stdout(&tty);
    assert_eq!(tty.status.code(), Some(1), "{screen}{}", stderr(&tty));
    assert!(
        screen.contains("web-1") && screen.contains("] 1/1 failed: web deploy: "),
        "{screen}"
    );

    let promotion = o.ok(None, &["promotions", "show", &id, "-o", "json"]);
    assert!(promotion.contains("\"state\": \"failed\""), "{promotion}");
    assert!(o.ok(None, &["deployments", "list"]).contains(&job));

    // dev needs no approval: --wait follows the promotion to its end, and
    // exits 1 because it did not deploy.
    let waited = o.run_as(
        Some("alice"),
        &[
            "promote",
            "web-1.1",
            "--to",
            "dev",
            "--wait",
            "--interval",
            "200ms",
        ],
        None,
    );
    let out = stdout(&waited);
    assert_eq!(waited.status.code(), Some(1), "{out}{}", stderr(&waited));
    assert!(out.contains("state     deploying"), "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("state     failed")),
        "{out}"
    );

    // Unknown jobs are not found (exit 4).
    let missing = o.run(&["rollback", "no-such-job"]);
    assert_eq!(missing.status.code(), Some(4), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("(not_found)"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn strategy_flags_must_fit_the_strategy_and_errors_name_the_url() {
    let o = Orchestrator::start();
    let out = o.run_as(
        Some("alice"),
        &[
            "promote",
            "r",
            "--to",
            "dev",
            "--strategy",
            "canary",
            "--batch-size",
            "2",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--batch-size"), "{}", stderr(&out));
    // No targets in an unknown environment: the API says so.
    let out = o.run_as(Some("alice"), &["promote", "r", "--to", "dev"], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no release \"r\" (not_found)"),
        "{}",
        stderr(&out)
    );

    let port = closed_port();
    let out = sextant()
        .args(["release", "list", "--orchestrator"])
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run sextant");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "cannot reach the orchestrator at http://127.0.0.1:{port}/api/v1/releases"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn up_starts_an_orchestrator_next_to_the_hub() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = sextant();
    cmd.args([
        "up",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
    ])
    .args([
        "--api-addr",
        "127.0.0.1:0",
        "--orchestrator-addr",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(dir.path());
    let (child, banner) = start(cmd);
    let orchestrator = url(&banner, "orchestrator");
    assert!(!orchestrator.ends_with(":0"), "{banner}");
    assert!(dir.path().join("orchestrator.db").exists(), "{banner}");
    let out = sextant()
        .args([
            "promotions",
            "list",
            "-o",
            "json",
            "--orchestrator",
            &orchestrator,
        ])
        .output()
        .expect("run sextant");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");
    // Both stop on SIGTERM.
    let status = terminate(child);
    assert!(status.success(), "exit on SIGTERM: {status}");
    let after = sextant()
        .args(["promotions", "list", "--orchestrator", &orchestrator])
        .output()
        .expect("run sextant");
    assert!(!after.status.success(), "the orchestrator still answers");
}
