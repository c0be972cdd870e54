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

on_both_backends!(
    health_reports_the_database,
    errors_have_one_shape,
    openapi_documents_every_endpoint
);

async fn openapi_documents_every_endpoint(b: Backend) {
    let app = spawn_app(b).await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/v1/applications",
            "/api/v1/compare",
            "/api/v1/drift",
            "/api/v1/environments",
            "/api/v1/environments/{environment}/state",
            "/api/v1/history",
            "/api/v1/hosts",
            "/api/v1/hosts/{host}",
            "/api/v1/rollout",
            "/api/v1/state",
            "/api/v1/targets",
            "/api/v1/workloads",
        ]
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let op = &item["get"];
        for status in ["200", "400", "401", "403", "503"] {
            assert!(op["responses"][status].is_object(), "{path} lacks {status}");
        }
        // Every documented endpoint answers (errors included) in the
        // documented shape.
        let concrete = path
            .replace("{environment}", "stage")
            .replace("{host}", "nobody");
        let (status, body) = app.get(&concrete, None).await;
        assert!(
            op["responses"][status.to_string()].is_object(),
            "{concrete} answered {status}, not documented"
        );
        if status != 200 {
            assert!(body["error"]["code"].is_string(), "{concrete}: {body}");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "TargetSummary",
        "Comparison",
        "HostDeployment",
        "HistoryEntry",
        "ErrorBody",
        "DriftReason",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let res = app
        .client
        .get(format!("http://{}/api/docs", app.api))
        .send()
        .await
        .expect("docs page");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let page = res.text().await.expect("page");
    for needle in [
        "/api/v1/drift",
        "id=\"schema-TargetSummary\"",
        "/api/openapi.json",
    ] {
        assert!(page.contains(needle), "{needle} not on the docs page");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page must not load anything remote"
    );
    app.stop().await;
}
