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
use sextant_orchestrator::domain::{JobKind, ReleaseComponent, Strategy};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::{Orchestrator, Settings};
use sextant_orchestrator::store::{NewJob, Store};
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
    assert_eq!(
        me,
        json!({"tenant": "default", "actor": "alice", "can_change": true})
    );
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

/// The ids of a list's rows, read a page at a time: `limit` rows, each
/// page `before` the last id of the one before, until a short page.
async fn page_ids(app: &Router, path: &str, limit: usize) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ids: Vec<String> = Vec::new();
    loop {
        let mut uri = format!("{path}{sep}limit={limit}");
        if let Some(last) = ids.last() {
            uri.push_str(&format!("&before={last}"));
        }
        let (status, page) = call(app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page:#}");
        let page = page.as_array().unwrap().clone();
        assert!(page.len() <= limit, "{uri}: {} rows", page.len());
        ids.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        if page.len() < limit {
            return ids;
        }
    }
}

/// A list read whole (`limit=1000`): (created_at, id) of each row, checked
/// newest first with ties broken by id, descending.
async fn whole_list(app: &Router, path: &str) -> Vec<(time::OffsetDateTime, String)> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, rows) = call(app, "GET", &format!("{path}{sep}limit=1000"), None).await;
    assert_eq!(status, StatusCode::OK, "{rows:#}");
    let rows: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let at = time::OffsetDateTime::parse(
                r["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            (at, r["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut sorted = rows.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(rows, sorted, "{path} is not newest first");
    rows
}

fn ids(rows: &[(time::OffsetDateTime, String)]) -> Vec<String> {
    rows.iter().map(|(_, id)| id.clone()).collect()
}

/// Seven releases, each promoted into dev, the first three into qa too
/// (ten jobs, one a promotion), and seven jobs more written to the store.
async fn seed_lists(db: &TestDb, app: &Router) {
    let target = |name: &str, env: &str| {
        json!({"name": name, "environment": env,
            "ssh": {"host": "127.0.0.1", "port": 1, "user": "nobody", "credential": "file:/no-key"},
            "deploy": {"template": "custom", "command": "true"}})
    };
    let doc = json!({
        "environments": [{"name": "dev"}, {"name": "qa"}],
        "components": [{"name": "web", "image": "127.0.0.1:5000/web", "application": "shop"}],
        "targets": [target("web-1", "dev"), target("web-2", "qa")],
    });
    let (status, body) = call(app, "POST", "/api/v1/apply", Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let store = Store::open(&db.url).await.unwrap();
    for n in 0..7 {
        let digest = format!("sha256:{}", n.to_string().repeat(64));
        let release = json!({"name": format!("r{n}"),
            "components": [{"component": "web", "image": format!("127.0.0.1:5000/web@{digest}")}]});
        let (status, r) = call(app, "POST", "/api/v1/releases", Some(release)).await;
        assert_eq!(status, StatusCode::CREATED, "{r:#}");
        let envs: &[&str] = if n < 3 { &["dev", "qa"] } else { &["dev"] };
        for env in envs {
            let promotion = json!({"release": format!("r{n}"), "environment": env});
            let (status, p) = call(app, "POST", "/api/v1/promotions", Some(promotion)).await;
            assert_eq!(status, StatusCode::CREATED, "{p:#}");
        }
        let job = NewJob {
            tenant: "default".into(),
            kind: JobKind::Deploy,
            promotion_id: None,
            parent_job_id: None,
            release_id: r["id"].as_str().unwrap().to_owned(),
            environment: "dev".into(),
            strategy: Strategy::default(),
            max_attempts: 1,
            created_by: "alice".into(),
            tasks: Vec::new(),
        };
        store.create_job(&job).await.unwrap().unwrap();
    }
    // Another tenant's release: never a cursor of this tenant's lists.
    let other = ReleaseComponent {
        component: "web".into(),
        image: format!("127.0.0.1:5000/web@sha256:{}", "9".repeat(64)),
        digest: format!("sha256:{}", "9".repeat(64)),
        tag: None,
    };
    store
        .create_release("other", "elsewhere", &[other], "mallory", true)
        .await
        .unwrap()
        .unwrap();
}

/// Releases, promotions and jobs page with `limit` and `before` (the last
/// id of the previous page): every row exactly once, in the list's order
/// (created_at, then id, both descending), on both backends.
#[tokio::test]
async fn lists_page_through_every_row_once_in_order() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let app = router(&db, &[]).await;
        seed_lists(&db, &app).await;
        for (path, rows) in [
            ("/api/v1/releases", 7),
            ("/api/v1/promotions", 10),
            // Each promotion's job (approved at once, none started: this
            // router drives no engine), and the seven written here.
            ("/api/v1/jobs", 17),
            ("/api/v1/jobs?active=true", 17),
        ] {
            let whole = whole_list(&app, path).await;
            assert_eq!(whole.len(), rows, "{backend:?} {path}");
            for limit in [1, 3, 7] {
                assert_eq!(
                    page_ids(&app, path, limit).await,
                    ids(&whole),
                    "{backend:?} {path} limit {limit}"
                );
            }
        }
        // Without `limit`: releases keep their 200, the others 100.
        let (_, all) = call(&app, "GET", "/api/v1/releases", None).await;
        assert_eq!(all.as_array().unwrap().len(), 7);
        // A page reads its releases' components in the same statement:
        // each row is the release as `GET /releases/{id}` shows it.
        for r in all.as_array().unwrap() {
            let path = format!("/api/v1/releases/{}", r["id"].as_str().unwrap());
            let (_, one) = call(&app, "GET", &path, None).await;
            assert!(!one["components"].as_array().unwrap().is_empty(), "{one:#}");
            assert_eq!(&one, r, "{backend:?}");
        }
    }
}

/// Promotions filter by environment and by release (id or name), with
/// the state filter and paging.
#[tokio::test]
async fn promotions_filter_by_environment_and_release() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let app = router(&db, &[]).await;
        seed_lists(&db, &app).await;
        let qa = whole_list(&app, "/api/v1/promotions?environment=qa").await;
        assert_eq!(qa.len(), 3, "{backend:?}");
        assert_eq!(
            page_ids(&app, "/api/v1/promotions?environment=qa", 2).await,
            ids(&qa)
        );
        let (_, rows) = call(&app, "GET", "/api/v1/promotions?environment=qa", None).await;
        for p in rows.as_array().unwrap() {
            assert_eq!(p["environment"], "qa", "{p:#}");
        }
        let (_, rows) = call(&app, "GET", "/api/v1/promotions?release=r1", None).await;
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 2, "{backend:?} {rows:#?}");
        assert!(rows.iter().all(|p| p["release"] == "r1"), "{rows:#?}");
        let id = rows[0]["release_id"].as_str().unwrap();
        let by_id = whole_list(&app, &format!("/api/v1/promotions?release={id}")).await;
        assert_eq!(by_id.len(), 2);
        let (_, rows) = call(
            &app,
            "GET",
            "/api/v1/promotions?release=r1&environment=dev",
            None,
        )
        .await;
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0]["environment"], "dev");
        let state = rows[0]["state"].as_str().unwrap();
        let (_, rows) = call(
            &app,
            "GET",
            &format!("/api/v1/promotions?state={state}&environment=qa"),
            None,
        )
        .await;
        assert_eq!(rows.as_array().unwrap().len(), 3, "{rows:#}");
        let (status, body) = call(&app, "GET", "/api/v1/promotions?release=r99", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
        let (_, rows) = call(&app, "GET", "/api/v1/promotions?environment=prod", None).await;
        assert_eq!(rows, json!([]));
    }
}

/// A `before` that is not a row of the list (unknown, another tenant's,
/// or another list's) is a 400 `invalid` that names it.
#[tokio::test]
async fn an_unknown_cursor_is_a_400() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = router(&db, &[]).await;
    seed_lists(&db, &app).await;
    let store = Store::open(&db.url).await.unwrap();
    let elsewhere = store.release("other", "elsewhere").await.unwrap().unwrap();
    let (_, releases) = call(&app, "GET", "/api/v1/releases", None).await;
    let release = releases[0]["id"].as_str().unwrap().to_owned();
    for path in ["/api/v1/releases", "/api/v1/promotions", "/api/v1/jobs"] {
        for before in ["no-such-row", elsewhere.id.as_str()] {
            let (status, body) = call(&app, "GET", &format!("{path}?before={before}"), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body:#}");
            assert_eq!(body["error"]["code"], "invalid", "{body:#}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(before), "{message}");
        }
    }
    // A release's id is no cursor of the promotions.
    let (status, _) = call(
        &app,
        "GET",
        &format!("/api/v1/promotions?before={release}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The document names the new parameters.
    let (_, doc) = call(&app, "GET", "/api/openapi.json", None).await;
    for (path, names) in [
        ("/api/v1/releases", &["limit", "before"][..]),
        ("/api/v1/jobs", &["active", "limit", "before"][..]),
        (
            "/api/v1/promotions",
            &["state", "environment", "release", "limit", "before"][..],
        ),
    ] {
        let params: Vec<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has no parameters"))
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in names {
            assert!(params.contains(name), "{path}: {params:?}");
        }
    }
}

/// `GET /` sends a browser to the hub's pipeline page (303), token or no
/// token: it reveals nothing. Without a hub there is nowhere to go (404).
#[tokio::test]
async fn the_root_redirects_to_the_hubs_pipeline() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = Store::open(&db.url).await.unwrap();
    let hub = sextant_orchestrator::promotion::gates::hub::hub_client(
        "http://hub.example:8080/sextant/",
        None,
    )
    .unwrap();
    let orchestrator = Orchestrator::new(
        store,
        Settings::default(),
        Some(hub),
        None,
        Arc::new(SshExecutor::new()),
    );
    let tokens = [TokenConfig::admin("s3cret", "acme", "ops")];
    let app = api::router(
        ApiState::new(Arc::new(orchestrator), &tokens, Vec::new()),
        sextant_orchestrator::ui::router(),
    );
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "http://hub.example:8080/sextant/pipeline"
    );
    // Without a hub: no page here.
    let app = router(&db, &[]).await;
    let (status, body) = call(&app, "GET", "/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
}
