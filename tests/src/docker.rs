//! Real Docker for tests: a local registry on 127.0.0.1, tiny test images
//! pushed to it and pinned by digest, a per-test scope whose containers and
//! networks are removed on drop, inspection helpers, and the "external
//! change" helpers (stop or remove a container behind the agent's back).
//!
//! The registry is Debian's `docker-registry` (distribution 2.8) started by
//! the kit itself, so the Debian service is not needed. Docker trusts
//! registries on 127.0.0.0/8 over plain HTTP by default, so push and pull by
//! digest are real. The images are built `FROM scratch` with
//! `busybox-static` (`/bin/busybox`) serving `/www` on port 8080:
//!
//! | image | page `/` | `/health` | Docker HEALTHCHECK |
//! |---|---|---|---|
//! | `v1` | `sextant test web v1` | `ok` | passes |
//! | `v2` | `sextant test web v2` | `ok` | passes |
//! | `broken` | `sextant test web broken` | 404 | fails |
//!
//! Each image's HEALTHCHECK runs every second (2 retries) and its stop signal
//! is SIGKILL (busybox httpd as PID 1 ignores SIGTERM), so tests are quick.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The label every container and network of a [`DockerScope`] carries.
pub const TEST_LABEL: &str = "sextant.test";

/// The test images, pushed to the kit's registry and removed locally, as
/// `127.0.0.1:PORT/sextant-test/web@sha256:…`.
#[derive(Debug, Clone)]
pub struct TestImages {
    /// `127.0.0.1:PORT`.
    pub registry: String,
    /// Healthy, page "sextant test web v1".
    pub v1: String,
    /// Healthy, page "sextant test web v2".
    pub v2: String,
    /// Serves pages but has no `/health`: every health check fails.
    pub broken: String,
}

static IMAGES: OnceLock<TestImages> = OnceLock::new();
/// Keeps the registry's watchdog alive: when the test process exits, its
/// stdin closes and the watchdog stops the registry and cleans up.
static REGISTRY_GUARD: Mutex<Option<ChildStdin>> = Mutex::new(None);

/// Starts the registry and builds and pushes the images, once per test
/// process.
pub async fn test_images() -> &'static TestImages {
    tokio::task::spawn_blocking(|| IMAGES.get_or_init(build_test_images))
        .await
        .expect("building the test images panicked")
}

fn build_test_images() -> TestImages {
    check_prerequisites();
    let registry = start_registry();
    let build = |variant: &str| build_and_push(&registry, variant);
    TestImages {
        v1: build("v1"),
        v2: build("v2"),
        broken: build("broken"),
        registry,
    }
}

fn check_prerequisites() {
    let docker = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    assert!(
        docker.as_ref().is_ok_and(|o| o.status.success()),
        "the Docker engine is not reachable (`docker version` failed: {:?}); \
         these tests need a running Docker daemon",
        docker.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install busybox-static (./scripts/test.sh does)"
    );
    assert!(
        Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "docker-registry is missing: install Debian's docker-registry (./scripts/test.sh does)"
    );
}

const BUSYBOX: &str = "/bin/busybox";

/// Runs a command; panics with its output when it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Starts `docker-registry serve` on a free port of 127.0.0.1 with storage in
/// a temporary folder, under a watchdog shell; returns `127.0.0.1:PORT`.
fn start_registry() -> String {
    let dir = std::env::temp_dir().join(format!("sextant-registry-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("storage")).expect("registry dir");
    for _attempt in 0..3 {
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.join("storage").display()
            ),
        )
        .expect("registry config");
        // The watchdog: when our stdin closes (this process exited), stop the
        // registry, remove the images pulled from it and its storage.
        let script = r#"docker-registry serve "$1" >"$3/registry.log" 2>&1 & r=$!
cat >/dev/null
kill "$r" 2>/dev/null; wait "$r" 2>/dev/null
docker images --format '{{.Repository}} {{.ID}}' | awk -v p="$2/" 'index($1, p) == 1 {print $2}' | sort -u | xargs -r docker rmi -f >/dev/null 2>&1
rm -rf "$3""#;
        let mut child = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&config)
            .arg(&addr)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        // Ok(false): the registry exited (its port was taken, say).
        let started =
            crate::wait::poll_blocking(Duration::from_secs(15), Duration::from_millis(100), || {
                if registry_answers(&addr) {
                    Ok(true)
                } else if child.try_wait().ok().flatten().is_some() {
                    Ok(false)
                } else {
                    Err(())
                }
            });
        if started == Ok(true) {
            *REGISTRY_GUARD.lock().unwrap_or_else(|e| e.into_inner()) = child.stdin.take();
            // The watchdog is reaped by nobody; it ends with the process.
            std::mem::forget(child);
            return addr;
        }
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    panic!("docker-registry did not start on 127.0.0.1:\n{log}");
}

/// `GET /v2/` answers 200.
fn registry_answers(addr: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200")
        || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.0 200")
}

/// Builds one variant, pushes it, returns its `repo@sha256:…` and removes
/// the local image so that a deploy really pulls.
fn build_and_push(registry: &str, variant: &str) -> String {
    let ctx = tempfile::tempdir().expect("build context");
    let www = ctx.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::copy(BUSYBOX, ctx.path().join("busybox")).expect("copy busybox");
    std::fs::write(
        www.join("index.html"),
        format!("sextant test web {variant}\n"),
    )
    .expect("page");
    if variant != "broken" {
        std::fs::write(www.join("health"), "ok\n").expect("health page");
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         COPY www /www\n\
         STOPSIGNAL SIGKILL\n\
         EXPOSE 8080\n\
         HEALTHCHECK --interval=1s --timeout=2s --retries=2 \
         CMD [\"/bin/busybox\",\"wget\",\"-q\",\"-O\",\"/dev/null\",\"http://127.0.0.1:8080/health\"]\n\
         CMD [\"/bin/busybox\",\"httpd\",\"-f\",\"-v\",\"-p\",\"8080\",\"-h\",\"/www\"]\n",
    )
    .expect("Dockerfile");
    let tag = format!("{registry}/sextant-test/web:{variant}");
    run(Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(ctx.path()));
    run(Command::new("docker").args(["push", &tag]));
    let pinned =
        run(Command::new("docker").args(["inspect", "--format", "{{index .RepoDigests 0}}", &tag]));
    assert!(
        pinned.starts_with(&format!("{registry}/sextant-test/web@sha256:")),
        "unexpected digest reference {pinned:?}"
    );
    run(Command::new("docker").args(["rmi", &tag]));
    pinned
}

/// The digest part `sha256:…` of a pinned reference.
pub fn digest_of(pinned: &str) -> &str {
    pinned.rsplit_once('@').map_or(pinned, |(_, d)| d)
}

/// Whether Docker has an image locally (by id, tag or `repo@digest`).
pub fn image_present(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes a local image (e.g. before a test that must see a real pull).
pub fn remove_image(reference: &str) {
    let _ = Command::new("docker")
        .args(["rmi", "-f", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One test's Docker objects: unique names and a unique label; every
/// container and network with the label is removed when this is dropped,
/// so tests clean up and never collide when run in parallel.
pub struct DockerScope {
    id: String,
}

impl Default for DockerScope {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerScope {
    pub fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        }
    }

    /// The unique id (also the label's value).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A unique name: `sx-ID-BASE`.
    pub fn name(&self, base: &str) -> String {
        format!("sx-{}-{base}", self.id)
    }

    /// The labels to put on every container and network of the test.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(TEST_LABEL.to_owned(), self.id.clone())])
    }

    /// `sextant.test=ID`, for `docker ps --filter label=…`.
    pub fn label_filter(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }

    /// Names of the scope's containers, running or not, sorted.
    pub fn containers(&self) -> Vec<String> {
        let out = run(Command::new("docker").args([
            "ps",
            "-a",
            "--filter",
            &format!("label={}", self.label_filter()),
            "--format",
            "{{.Names}}",
        ]));
        let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// Removes every container and network of the scope now.
    pub fn cleanup(&self) {
        let filter = format!("label={}", self.label_filter());
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let nets = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let nets: Vec<&str> = nets.split_whitespace().collect();
        if !nets.is_empty() {
            let _ = Command::new("docker")
                .args(["network", "rm"])
                .args(&nets)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `docker inspect` of a container, or `None` when there is none.
pub fn inspect(container: &str) -> Option<serde_json::Value> {
    let out = Command::new("docker")
        .args(["container", "inspect", container])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    all.pop()
}

/// The container's full id.
pub fn container_id(container: &str) -> Option<String> {
    Some(inspect(container)?["Id"].as_str()?.to_owned())
}

/// Whether the container exists and runs.
pub fn is_running(container: &str) -> bool {
    inspect(container).is_some_and(|i| i["State"]["Running"] == true)
}

/// Docker's health status (`healthy`, `unhealthy`, `starting`), if any.
pub fn health_status(container: &str) -> Option<String> {
    Some(
        inspect(container)?["State"]["Health"]["Status"]
            .as_str()?
            .to_owned(),
    )
}

/// The container's labels.
pub fn labels(container: &str) -> BTreeMap<String, String> {
    inspect(container)
        .and_then(|i| serde_json::from_value(i["Config"]["Labels"].clone()).ok())
        .unwrap_or_default()
}

/// The image reference the container was created from (`Config.Image`).
pub fn image_of(container: &str) -> Option<String> {
    Some(inspect(container)?["Config"]["Image"].as_str()?.to_owned())
}

/// The host port published for `port` (`8080/tcp`).
pub fn host_port(container: &str, port: &str) -> Option<u16> {
    inspect(container)?["NetworkSettings"]["Ports"][port][0]["HostPort"]
        .as_str()?
        .parse()
        .ok()
}

/// GETs `http://127.0.0.1:HOSTPORT/path` of a container's published 8080;
/// returns the status and body.
pub async fn get_page(container: &str, path: &str) -> Option<(u16, String)> {
    let port = host_port(container, "8080/tcp")?;
    let res = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    Some((status, res.text().await.ok()?))
}

/// Waits until Docker reports the container `healthy` (panics after `limit`).
pub async fn wait_healthy(container: &str, limit: Duration) {
    crate::wait::until(limit, Duration::from_millis(200), || async {
        match health_status(container) {
            Some(status) if status == "healthy" => Ok(()),
            status => Err(format!(
                "{container} not healthy after {limit:?} (status {status:?})"
            )),
        }
    })
    .await;
}

/// External change: someone runs `docker stop` on the container.
pub fn stop_container(container: &str) {
    run(Command::new("docker").args(["stop", "-t", "1", container]));
}

/// External change: someone runs `docker rm -f` on the container.
pub fn remove_container(container: &str) {
    run(Command::new("docker").args(["rm", "-f", container]));
}

/// External change: someone starts a stopped container again.
pub fn start_container(container: &str) {
    run(Command::new("docker").args(["start", container]));
}

/// External change: someone runs a container by hand (not through the
/// agent) with the given labels; returns its id. It joins the scope.
pub fn run_unmanaged(
    scope: &DockerScope,
    name: &str,
    image: &str,
    labels: &BTreeMap<String, String>,
) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "-d", "--name", name, "-p", "127.0.0.1::8080"]);
    cmd.args(["--label", &scope.label_filter()]);
    for (k, v) in labels {
        cmd.args(["--label", &format!("{k}={v}")]);
    }
    cmd.arg(image);
    run(&mut cmd)
}

/// A temporary data dir for an executor's journal.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp data dir")
}
