//! Starts `sextant agent run` for one test, as the hub's suite starts a hub
//! with `spawn_app`: the agent's config file and data directory live in a
//! temporary directory of their own, it watches only the test's
//! [`DockerScope`], listens on port 0 and reports to the endpoint the test
//! names (a hub, a collector, or an address where nothing listens yet).
//!
//! The agent runs as a process, so a test can kill it as a crash would and
//! start it again on the same data directory.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sextant_e2e::docker::DockerScope;
use sextant_e2e::{sextant_binary, wait};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How a test wants its agent.
pub struct AgentSettings {
    /// The OTLP endpoint, `http://host:port`.
    pub endpoint: String,
    /// `grpc` or `http/protobuf`.
    pub protocol: &'static str,
    /// The `host.name` it reports as.
    pub host: String,
    /// Only containers with this label too (the scope's `sextant.test=ID`).
    pub watch_label: String,
    /// The Docker endpoint; `None`: `DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
}

impl AgentSettings {
    /// Reports to `endpoint` over `protocol` as `agent-<scope id>`, and
    /// watches the scope's containers only.
    pub fn new(scope: &DockerScope, endpoint: impl Into<String>, protocol: &'static str) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            host: format!("agent-{}", scope.id()),
            watch_label: scope.label_filter(),
            docker_host: None,
        }
    }
}

/// A running `sextant agent run`; killed when dropped.
pub struct TestAgent {
    /// Where `/metrics` and `/health/*` listen (a new port after
    /// [`TestAgent::restart`]).
    pub listen: SocketAddr,
    /// The `host.name` it reports as.
    pub host: String,
    pub client: reqwest::Client,
    /// Its data directory: the outbox, and the task journal it counts.
    pub data_dir: PathBuf,
    child: Option<Child>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes the agent's config file into a new temporary directory (its data
/// directory beside it) and starts the agent on it: heartbeats every
/// second, a resync every 3 s.
pub async fn spawn_agent(settings: AgentSettings) -> TestAgent {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    let mut file = toml::Table::new();
    let mut set = |key: &str, value: toml::Value| file.insert(key.to_owned(), value);
    set("host_name", settings.host.clone().into());
    set("environment", "test".into());
    set("otlp_endpoints", vec![settings.endpoint].into());
    set("otlp_protocol", settings.protocol.into());
    set("heartbeat", "1s".into());
    set("resync", "3s".into());
    set("listen", "127.0.0.1:0".into());
    set("watch_labels", vec![settings.watch_label].into());
    let data = dir.path().join("data");
    set("data_dir", data.display().to_string().into());
    // The process gets no environment (see `start`), so DOCKER_HOST goes
    // into the file.
    if let Some(host) = settings
        .docker_host
        .or_else(|| std::env::var("DOCKER_HOST").ok())
    {
        set("docker_host", host.into());
    }
    std::fs::write(&config, toml::to_string(&file).expect("TOML")).expect("write the config");
    let (child, listen) = start(&config).await;
    TestAgent {
        listen,
        host: settings.host,
        client: reqwest::Client::new(),
        data_dir: data,
        child: Some(child),
        config,
        _dir: dir,
    }
}

/// Starts the agent on `config` and waits for the address it prints. Its
/// log lines go to the test's output.
async fn start(config: &Path) -> (Child, SocketAddr) {
    let log = if std::env::var_os("TEST_LOG").is_some() {
        "debug"
    } else {
        "info,sextant_exporters=warn"
    };
    let mut child = Command::new(sextant_binary())
        .args(["agent", "run", "--config"])
        .arg(config)
        // Only the file configures it: no OTEL_*, SEXTANT_* or DOCKER_HOST
        // of the test's own environment.
        .env_clear()
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sextant agent run");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("health and metrics on http://").nth(1) {
                return rest.trim().parse::<SocketAddr>().ok();
            }
            eprintln!("agent: {line}");
        }
        None
    })
    .await;
    let Ok(Some(listen)) = banner else {
        let _ = child.start_kill();
        let status = child.wait().await;
        panic!("sextant agent run did not print its address (exited: {status:?})");
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("agent: {line}");
        }
    });
    (child, listen)
}

impl TestAgent {
    /// `http://LISTEN{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// GETs `path`: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = self.client.get(self.url(path)).send().await.expect("GET");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        let (status, page) = self.get("/metrics").await;
        assert_eq!(status, 200, "{page}");
        page
    }

    /// Polls `path` until it answers `status`, or fails after 30 s; the body.
    pub async fn until_status(&self, path: &str, status: u16) -> String {
        let what = format!("{path} answering {status}");
        eventually(&what, Duration::from_secs(30), || async {
            match self.get(path).await {
                (got, body) if got == status => ControlFlow::Break(body),
                other => ControlFlow::Continue(other),
            }
        })
        .await
    }

    /// Polls `/metrics` until `check` holds for the page, or fails after 30 s.
    pub async fn until_metrics(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        eventually(what, Duration::from_secs(30), || async {
            let page = self.metrics().await;
            if check(&page) {
                ControlFlow::Break(page)
            } else {
                ControlFlow::Continue(page)
            }
        })
        .await
    }

    /// SIGKILL, as a crash would; the data directory stays.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts the agent again on the same config and data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        let (child, listen) = start(&self.config).await;
        self.child = Some(child);
        self.listen = listen;
    }

    /// SIGTERM: the agent stops its tasks and exits 0 within 10 s.
    pub async fn shutdown(mut self) {
        let mut child = self.child.take().expect("the agent runs");
        let pid = child.id().expect("the agent has not been reaped");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the agent exits within 10 s of SIGTERM")
            .expect("wait for the agent");
        assert!(status.success(), "exit on SIGTERM: {status}");
    }
}

/// Runs `probe` every 100 ms until it breaks with a value, or fails after
/// `limit` naming `what` and the last thing the probe saw. For waits on
/// real I/O (Docker, sockets, another process); timers of the code under
/// test are driven on paused time instead.
pub async fn eventually<T, L, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    L: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<T, L>>,
{
    wait::until(limit, Duration::from_millis(100), || {
        let probe = probe();
        async move {
            match probe.await {
                ControlFlow::Break(value) => Ok(value),
                ControlFlow::Continue(last) => {
                    Err(format!("never {what} within {limit:?}; last seen {last:?}"))
                }
            }
        }
    })
    .await
}

/// The value of the sample `line_prefix VALUE` in a Prometheus text page.
pub fn sample(page: &str, line_prefix: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' ')?.parse().ok())
}

/// An address on 127.0.0.1 where nothing listens (until someone binds it).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
