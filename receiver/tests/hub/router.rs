//! The hub's API without a socket: the router `Application::api_router`
//! builds answers requests through `tower::ServiceExt::oneshot`, on a
//! database of the test's own. The real-socket tests are the other files.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use sextant_receiver::{Application, HubConfig};
use tower::ServiceExt as _;

use crate::helpers::{Backend, TestDb, hub_config, on_both_backends, token};

async fn router(db: &TestDb, configure: impl FnOnce(&mut HubConfig)) -> Router {
    Application::build(&hub_config(db, configure))
        .await
        .expect("hub builds")
        .api_router()
}

async fn get(app: &Router, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().uri(path);
    if let Some(t) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn reads_answer_without_a_socket(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = router(&db, |_| {}).await;
    let (status, environments) = get(&app, "/api/v1/environments", None).await;
    assert_eq!(status, StatusCode::OK, "{environments}");
    assert_eq!(environments["items"], Value::Array(Vec::new()));
    let (status, drift) = get(&app, "/api/v1/drift?limit=5", None).await;
    assert_eq!(status, StatusCode::OK, "{drift}");
    let (status, doc) = get(&app, "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["paths"]["/api/v1/drift"]["get"]["responses"]["429"].is_object(),
        "{doc}"
    );
}

async fn a_bad_query_is_a_400_with_the_error_body(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = router(&db, |_| {}).await;
    for path in [
        "/api/v1/hosts?colour=blue",
        "/api/v1/drift?limit=0",
        "/api/v1/history?since=soon",
        "/api/v1/environments?cursor=zz",
    ] {
        let (status, body) = get(&app, path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
}

async fn every_read_needs_a_token_with_the_read_scope(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = router(&db, |c| {
        c.tokens = vec![
            token("r-token", "acme", &["read"]),
            token("i-token", "acme", &["ingest"]),
        ];
    })
    .await;
    for path in [
        "/api/v1/state",
        "/api/v1/hosts",
        "/api/v1/drift",
        "/api/v1/history",
        "/api/v1/environments",
        "/api/v1/applications",
        "/api/v1/workloads",
        "/api/v1/targets",
        "/api/v1/compare?environments=a,b",
        "/api/v1/environments/prod/state",
        "/api/v1/hosts/h1",
    ] {
        let (status, body) = get(&app, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let (status, body) = get(&app, path, Some("i-token")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        let (status, body) = get(&app, path, Some("r-token")).await;
        assert!(
            matches!(status, StatusCode::OK | StatusCode::NOT_FOUND),
            "{path}: {status} {body}"
        );
    }
}

on_both_backends!(
    reads_answer_without_a_socket,
    a_bad_query_is_a_400_with_the_error_body,
    every_read_needs_a_token_with_the_read_scope
);
