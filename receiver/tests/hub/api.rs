//! Health, errors and the API's edges.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app};

/// `/health`'s one check, `database`: (HTTP status, overall status, the
/// check's status), after checking the report's shape.
async fn database_check(app: &TestApp) -> (u16, Value, Value) {
    let (status, health) = app.get("/health", None).await;
    assert_eq!(health["service"], "sextant-hub", "{health}");
    assert!(health["version"].is_string(), "{health}");
    let checks = health["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["database"], "{health}");
    let check = &checks[0];
    assert!(check["latency_ms"].is_number(), "{health}");
    (status, health["status"].clone(), check["status"].clone())
}

async fn health_reports_the_database(b: Backend) {
    let mut app = spawn_app(b).await;
    let (status, live) = app.get("/health/live", None).await;
    assert_eq!((status, &live["status"]), (200, &json!("live")));
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    let backend = if b == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(ready["database"], backend);
    assert_eq!(
        database_check(&app).await,
        (200, json!("pass"), json!("pass"))
    );
    let (_, health) = app.get("/health", None).await;
    assert_eq!(
        health["checks"][0]["detail"],
        format!("{backend} answers"),
        "{health}"
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
        assert_eq!(
            database_check(&app).await,
            (503, json!("fail"), json!("fail"))
        );
        let (_, health) = app.get("/health", None).await;
        assert!(
            health["checks"][0]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{health}"
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

/// The URL values of `src`, `href`, `action`, `srcset`, `poster`, `data`
/// and `formaction` attributes, and of CSS `url(…)` and `@import`.
fn referenced_urls(page: &str) -> Vec<String> {
    let lower = page.to_ascii_lowercase();
    let mut urls = Vec::new();
    for attr in [
        " src=",
        " href=",
        " action=",
        " srcset=",
        " poster=",
        " data=",
        " formaction=",
    ] {
        for (i, _) in lower.match_indices(attr) {
            let rest = &page[i + attr.len()..];
            let value = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                _ => rest
                    .split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or(""),
            };
            urls.extend(value.split(',').map(|v| v.trim().to_owned()));
        }
    }
    for opener in ["url(", "@import"] {
        for (i, _) in lower.match_indices(opener) {
            let rest = page[i + opener.len()..].trim_start();
            let value: String = rest
                .trim_start_matches(['"', '\'', '('])
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | ')' | ';'))
                .collect();
            urls.push(value.trim().to_owned());
        }
    }
    urls
}

/// Every UI page loads nothing from anywhere but the hub: each URL it
/// references is relative or the hub's own, and no other absolute URL
/// appears in the page at all.
async fn ui_pages_make_no_remote_requests(b: Backend) {
    let (app, _) = crate::reports::estate_with(b, |_| {}).await;
    let own = format!("http://{}/", app.api);
    for path in [
        "/",
        "/compare?environments=stage,prod",
        "/drift",
        "/hosts",
        "/hosts/s1",
        "/workloads/checkout/history",
        "/workloads/checkout/history?environment=stage",
    ] {
        let res = app
            .client
            .get(format!("http://{}{path}", app.api))
            .send()
            .await
            .expect("page");
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/html"),
            "{path}"
        );
        let page = res.text().await.expect("page");
        let urls = referenced_urls(&page);
        // The scan sees the navigation: it is not vacuous.
        assert!(urls.iter().any(|u| u == "/drift"), "{path}: {urls:?}");
        for url in &urls {
            let lower = url.to_ascii_lowercase();
            let absolute = lower.starts_with("//") || lower.contains("://");
            assert!(
                !absolute || lower.starts_with(&own),
                "{path} references {url}"
            );
        }
        for scheme in ["http://", "https://"] {
            for (i, _) in page.match_indices(scheme) {
                let rest = &page[i..];
                assert!(
                    rest.starts_with(&own) || rest.starts_with("http://www.w3.org/"),
                    "{path} names a remote URL: {}",
                    rest.chars().take(80).collect::<String>()
                );
            }
        }
    }
    // The scanner finds what it should.
    let remote = r#"<img src="https://cdn.example/x.png"><link href='//fonts.example/a.css'><style>@import "http://evil.example/b.css"; a{background:url(http://x.example/i.png)}</style>"#;
    assert_eq!(
        referenced_urls(remote),
        [
            "https://cdn.example/x.png",
            "//fonts.example/a.css",
            "http://x.example/i.png",
            "http://evil.example/b.css"
        ]
    );
    app.stop().await;
}

on_both_backends!(
    ui_pages_make_no_remote_requests,
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
            "/api/v1/insights/dora",
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
