//! The orchestrator's API without a socket: the router built by
//! `api::router` answers requests through `tower::ServiceExt::oneshot`, on a
//! store of the test's own. One real-socket test per surface lives with the
//! end-to-end tests (`promotion.rs`, `auth.rs`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use sextant_e2e::{Backend, TestDb};
use sextant_orchestrator::api::{self, ApiState, TokenConfig};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::{Orchestrator, Settings};
use sextant_orchestrator::store::Store;
use tower::ServiceExt as _;

/// The API and the UI of one orchestrator on `db`, as `app::start` builds
/// them, with no listener.
async fn router(db: &TestDb, tokens: &[TokenConfig]) -> Router {
    let store = Store::open(&db.url).await.expect("open store");
    let orchestrator = Orchestrator::new(
        store,
        Settings::default(),
        None,
        None,
        Arc::new(SshExecutor::new()),
    );
    api::router(
        ApiState::new(Arc::new(orchestrator), tokens, Vec::new()),
        sextant_orchestrator::ui::router(),
    )
}

async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-sextant-actor", "alice");
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[tokio::test]
async fn apply_then_read_back_without_a_socket() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = router(&db, &[]).await;
    let (status, applied) = call(
        &app,
        "POST",
        "/api/v1/apply",
        Some(json!({"environments": [{"name": "dev"}, {"name": "prod"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{applied:#}");
    let (status, envs) = call(&app, "GET", "/api/v1/environments", None).await;
    assert_eq!(status, StatusCode::OK, "{envs:#}");
    let names: Vec<&str> = envs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "prod"]);
    let (status, me) = call(&app, "GET", "/api/v1/whoami", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, json!({"tenant": "default", "actor": "alice"}));
}

#[tokio::test]
async fn errors_have_one_shape() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = router(&db, &[]).await;
    let (status, body) = call(&app, "GET", "/api/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body:#}");
    let (status, body) = call(&app, "GET", "/api/v1/jobs/no-such-job", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body:#}");
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/promotions",
        Some(json!({"release": "r9", "environment": "nowhere"})),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body:#}");
    assert!(body["error"]["message"].is_string(), "{body:#}");
}

#[tokio::test]
async fn with_tokens_a_request_without_one_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = router(&db, &[TokenConfig::admin("s3cret", "acme", "ops")]).await;
    let (status, body) = call(&app, "GET", "/api/v1/environments", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:#}");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body:#}");
    // The document and health stay open.
    let (status, doc) = call(&app, "GET", "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/apply"].is_object());
}

/// A store that fails answers 503 `unavailable` and says nothing of the
/// database: its error text goes to the log, not to the client.
#[tokio::test]
async fn a_store_failure_is_503_without_the_databases_words() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = router(&db, &[]).await;
    let (status, _) = call(&app, "GET", "/api/v1/environments", None).await;
    assert_eq!(status, StatusCode::OK);
    // Take the database away under the running store.
    let admin = sqlx::PgPool::connect(&sextant_e2e::postgres_admin_url())
        .await
        .unwrap();
    let name = url::Url::parse(&db.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let (status, body) = call(&app, "GET", "/api/v1/environments", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
    assert_eq!(body["error"]["code"], "unavailable", "{body:#}");
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message, "the orchestrator store is unavailable", "{body:#}");
}
