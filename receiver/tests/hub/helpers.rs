//! Starts a hub on port 0 with a database of its own, for one test.

use std::net::SocketAddr;

use serde_json::{Value, json};
use sextant_receiver::config::{Secret, TokenConfig};
use sextant_receiver::{Application, HubConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The store backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database made for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    admin: Option<(String, String)>,
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

/// A running hub.
pub struct TestApp {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A token for tests: (token, tenant, scopes).
pub fn token(token: &str, tenant: &str, scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        token: Secret::new(token),
        tenant: tenant.into(),
        scopes: scopes
            .iter()
            .map(|s| serde_json::from_value(json!(s)).expect("scope"))
            .collect(),
    }
}

/// Logs to the test output only when `TEST_LOG` is set.
fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("debug")
            .try_init();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut HubConfig)) -> TestApp {
    init_tracing();
    let db = TestDb::new(backend).await;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(db.url.clone()),
        ..HubConfig::default()
    };
    configure(&mut config);
    let app = Application::build(&config).await.expect("hub builds");
    let (grpc, http, api) = (app.otlp_grpc_addr(), app.otlp_http_addr(), app.api_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        grpc,
        http,
        api,
        client: reqwest::Client::new(),
        db,
        shutdown,
        task: Some(task),
    }
}

impl TestApp {
    /// POSTs OTLP/JSON to `/v1/{signal}`.
    pub async fn post_json(
        &self,
        signal: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("http://{}/v1/{signal}", self.http))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("OTLP/HTTP request")
    }

    /// POSTs logs and expects every record accepted.
    pub async fn send_logs(&self, body: &Value) {
        let res = self.post_json("logs", body, None).await;
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.expect("json response");
        assert!(
            answer["partialSuccess"].is_null(),
            "unexpected rejection: {answer}"
        );
    }

    /// GETs an API path and returns (status, JSON).
    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .get(format!("http://{}{path_and_query}", self.api));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("API request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("hub task").expect("hub stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A string attribute in OTLP/JSON.
pub fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// Where a workload runs: (application, workload, environment, target).
pub type At<'a> = (&'a str, &'a str, &'a str, &'a str);

fn placement((app, workload, env, target): At<'_>) -> Vec<Value> {
    vec![
        kv("sextant.application", app),
        kv("sextant.workload", workload),
        kv("deployment.environment.name", env),
        kv("sextant.target", target),
    ]
}

/// A `sextant.deployment.desired` log record.
pub fn desired(at: At<'_>, version: &str, revision: &str, time: u64) -> Value {
    let mut attrs = placement(at);
    attrs.push(kv("service.version", version));
    attrs.push(kv("sextant.revision", revision));
    json!({"eventName": "sextant.deployment.desired", "timeUnixNano": time.to_string(), "attributes": attrs})
}

/// A `sextant.deployment.observed` log record.
pub fn observed(host: &str, at: At<'_>, revision: &str, status: &str, time: u64) -> Value {
    let mut attrs = placement(at);
    attrs.push(kv("host.name", host));
    attrs.push(kv("sextant.revision", revision));
    attrs.push(kv("deployment.status", status));
    json!({"eventName": "sextant.deployment.observed", "timeUnixNano": time.to_string(), "attributes": attrs})
}

/// An ExportLogsServiceRequest in OTLP/JSON with one resource.
pub fn logs(records: Vec<Value>) -> Value {
    json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": records}]}]})
}

/// Instantiates async test functions `fn(Backend)` for both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Postgres).await
            })*
        }
    };
}
pub(crate) use on_both_backends;
