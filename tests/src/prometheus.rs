//! A real Prometheus server (Debian's `prometheus`) for one test.
//!
//! [`Prometheus::start`] writes a configuration that scrapes the given
//! targets every second, starts `/usr/bin/prometheus` on 127.0.0.1 with its
//! storage in a temporary folder, and waits until it is ready. Prometheus
//! cannot report a port it picked itself, so the kit takes a free port from
//! the kernel (bind to port 0, read it, release it) just before the start,
//! and retries on another one if that port was taken in between. The
//! process is killed and its folder removed when the value is dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs the server.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A private Prometheus on 127.0.0.1; see the module docs.
pub struct Prometheus {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`)
    /// every second, and waits until it answers `/-/ready`.
    pub async fn start(targets: &[SocketAddr]) -> Self {
        Self::start_with(targets, &[]).await
    }

    /// [`Self::start`] with exemplar storage on
    /// (`--enable-feature=exemplar-storage`): exemplars of OpenMetrics
    /// scrapes can be read back with [`Self::exemplars`].
    pub async fn start_with_exemplars(targets: &[SocketAddr]) -> Self {
        Self::start_with(targets, &["--enable-feature=exemplar-storage"]).await
    }

    /// [`Self::start`] with more command-line arguments.
    pub async fn start_with(targets: &[SocketAddr], args: &[&str]) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus (./scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .expect("write prometheus.yml");
        for _ in 0..5 {
            let addr = free_addr();
            let mut child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
                .spawn()
                .expect("start prometheus");
            if wait_ready(addr, &mut child).await {
                return Self { addr, child, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "prometheus did not become ready:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value of an instant query's first sample, if it has one.
    pub async fn value(&self, query: &str) -> Option<f64> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` has a sample for which `check` holds; panics
    /// after 60 s with the last value.
    pub async fn wait_for(&self, query: &str, check: impl Fn(f64) -> bool) -> f64 {
        let check = &check;
        crate::wait::until(
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async move {
                let value = self.value(query).await;
                value.filter(|v| check(*v)).ok_or_else(|| {
                    format!(
                        "prometheus never saw {query} as wanted (last: {value:?}):\n{}",
                        self.log()
                    )
                })
            },
        )
        .await
    }

    /// The exemplars of the series `query` selects
    /// (`/api/v1/query_exemplars`, over all time): the `data` array, one
    /// entry per series with its `seriesLabels` and `exemplars` (each with
    /// `labels`, `value`, `timestamp`); empty when there are none or the
    /// query failed.
    pub async fn exemplars(&self, query: &str) -> Vec<serde_json::Value> {
        let body: Option<serde_json::Value> = async {
            reqwest::Client::new()
                .get(format!("{}/api/v1/query_exemplars", self.url()))
                .query(&[("query", query), ("start", "0"), ("end", "4102444800")])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        body.and_then(|b| b["data"].as_array().cloned())
            .unwrap_or_default()
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// True once `/-/ready` answers 200; false if the process exits (the port
/// was taken) or 30 s pass.
async fn wait_ready(addr: SocketAddr, child: &mut Child) -> bool {
    let client = &reqwest::Client::new();
    // Ok(false): the process exited; Err: not ready yet.
    let ready = crate::wait::poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        async move {
            if exited {
                return Ok(false);
            }
            match client.get(format!("http://{addr}/-/ready")).send().await {
                Ok(res) if res.status().is_success() => Ok(true),
                _ => Err(()),
            }
        }
    })
    .await;
    ready == Ok(true)
}
