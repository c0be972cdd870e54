//! Health, errors and the API's edges.

use serde_json::json;

use crate::helpers::{Backend, on_both_backends, spawn_app};

async fn health_reports_the_database(b: Backend) {
    let mut app = spawn_app(b).await;
    let (status, live) = app.get("/health/live", None).await;
    assert_eq!((status, &live["status"]), (200, &json!("live")));
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready["database"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    if b == Backend::Postgres {
        // The database goes away: not ready, while still live.
        app.db.drop_now().await;
        let (status, ready) = app.get("/health/ready", None).await;
        assert_eq!(
            (status, &ready["status"]),
            (503, &json!("not_ready")),
            "{ready}"
        );
        let (status, _) = app.get("/health/live", None).await;
        assert_eq!(status, 200);
        let (status, e) = app.get("/api/v1/state", None).await;
        assert_eq!((status, &e["error"]["code"]), (503, &json!("unavailable")));
    }
    app.stop().await;
}

async fn errors_have_one_shape(b: Backend) {
    let app = spawn_app(b).await;
    let (status, e) = app.get("/api/v1/nope", None).await;
    assert_eq!((status, &e["error"]["code"]), (404, &json!("not_found")));
    let (status, e) = app.get("/api/v1/state?enviroment=stage", None).await;
    assert_eq!(
        (status, &e["error"]["code"]),
        (400, &json!("invalid_query"))
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("enviroment"),
        "{e}"
    );
    app.stop().await;
}

on_both_backends!(health_reports_the_database, errors_have_one_shape);
