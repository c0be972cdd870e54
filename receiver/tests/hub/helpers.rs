//! Starts a hub on port 0 with a database of its own, for one test.

use std::net::SocketAddr;

use serde_json::{Value, json};
use sextant_kit::Secret;
use sextant_receiver::auth::TokenConfig;
use sextant_receiver::{Application, HubConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use sextant_e2e::{Backend, TestDb};

/// A running hub.
pub struct TestApp {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), sextant_receiver::app::AppError>>>,
}

/// A token for tests: (token, tenant, scopes).
pub fn token(token: &str, tenant: &str, scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        token: Secret::new(token),
        tenant: tenant.into(),
        subject: None,
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

/// A hub's settings for a test: every listener on port 0, `db` as its
/// database, then `configure`.
pub fn hub_config(db: &TestDb, configure: impl FnOnce(&mut HubConfig)) -> HubConfig {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(db.url.clone()),
        ..HubConfig::default()
    };
    configure(&mut config);
    config
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut HubConfig)) -> TestApp {
    init_tracing();
    let db = TestDb::new(backend).await;
    let config = hub_config(&db, configure);
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
