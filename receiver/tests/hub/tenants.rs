//! Tokens, scopes and tenant isolation on OTLP/HTTP and the API.

use serde_json::json;
use sextant_receiver::{Application, HubConfig};

use crate::helpers::{Backend, logs, observed, on_both_backends, spawn_app_with, token};

const AT: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");

async fn a_reader_sees_only_its_own_tenant(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.tokens = vec![
            token("a-all", "tenant-a", &["ingest", "read"]),
            token("b-all", "tenant-b", &["ingest", "read"]),
            token("a-ingest", "tenant-a", &["ingest"]),
            token("admin", "tenant-b", &["admin"]),
        ];
    })
    .await;
    let a = logs(vec![observed("a-host", AT, "sha256:aa", "succeeded", 1)]);
    let b_batch = logs(vec![observed("b-host", AT, "sha256:bb", "failed", 1)]);
    assert_eq!(app.post_json("logs", &a, Some("a-all")).await.status(), 200);
    assert_eq!(
        app.post_json("logs", &b_batch, Some("admin"))
            .await
            .status(),
        200
    );

    let (status, state) = app.get("/api/v1/state", Some("a-all")).await;
    assert_eq!(status, 200);
    assert_eq!(state.as_array().map(Vec::len), Some(1));
    assert_eq!(state[0]["hosts"][0]["host"], "a-host");
    assert_eq!(
        state[0]["hosts"].as_array().map(Vec::len),
        Some(1),
        "same names, other tenant"
    );
    let (_, state) = app.get("/api/v1/state", Some("b-all")).await;
    assert_eq!(state[0]["hosts"][0]["host"], "b-host");
    assert_eq!(state[0]["hosts"].as_array().map(Vec::len), Some(1));
    let (_, rollout) = app
        .get(
            "/api/v1/rollout?workload=checkout&environment=stage&hosts=all",
            Some("b-all"),
        )
        .await;
    assert_eq!(
        (&rollout["total_hosts"], &rollout["hosts"][0]["host"]),
        (&json!(1), &json!("b-host"))
    );

    // Every report and list is scoped the same way.
    for (path, pick) in [
        ("/api/v1/hosts", "/items/0/host"),
        ("/api/v1/drift", "/items/0/host"),
        ("/api/v1/hosts/b-host", "/host"),
        ("/api/v1/history?workload=checkout", "/items/0/host"),
        ("/api/v1/environments/stage/state", "/0/deployed/0/status"),
    ] {
        let (status, body) = app.get(path, Some("b-all")).await;
        assert_eq!(status, 200, "{path}: {body}");
        let want = if pick.ends_with("status") {
            "failed"
        } else {
            "b-host"
        };
        assert_eq!(body.pointer(pick), Some(&json!(want)), "{path}: {body}");
    }
    let (_, hosts) = app.get("/api/v1/hosts", Some("a-all")).await;
    assert_eq!(hosts["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(hosts["items"][0]["host"], "a-host");
    let (status, _) = app.get("/api/v1/hosts/b-host", Some("a-all")).await;
    assert_eq!(
        status, 404,
        "another tenant's host does not exist for this reader"
    );
    let (_, drift) = app.get("/api/v1/drift", Some("a-all")).await;
    assert!(
        drift["items"]
            .as_array()
            .is_some_and(|d| d.iter().all(|x| x["host"] == "a-host"))
    );
    let (_, envs) = app.get("/api/v1/environments", Some("a-all")).await;
    assert_eq!(
        envs["items"],
        json!([{"name": "stage", "targets": 1, "hosts": 1}])
    );

    // The UI reads as the cookie's token: tenant b's page shows b only.
    let page = app
        .client
        .get(format!("http://{}/hosts", app.api))
        .header("cookie", "sextant_token=b-all")
        .send()
        .await
        .expect("UI page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains(">b-host<") && !html.contains(">a-host<"),
        "{html}"
    );
    let page = app
        .client
        .get(format!("http://{}/", app.api))
        .send()
        .await
        .expect("UI page");
    assert_eq!(page.status(), 401, "no token: the login form");

    // Scopes and unknown tokens.
    let (status, e) = app.get("/api/v1/state", Some("a-ingest")).await;
    assert_eq!((status, &e["error"]["code"]), (403, &json!("forbidden")));
    let (status, e) = app.get("/api/v1/state", None).await;
    assert_eq!(
        (status, &e["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    let (status, _) = app.get("/api/v1/state", Some("wrong")).await;
    assert_eq!(status, 401);
    assert_eq!(app.post_json("logs", &a, None).await.status(), 401);
    assert_eq!(app.post_json("logs", &a, Some("wrong")).await.status(), 401);
    let (status, _) = app.get("/api/v1/state", Some("admin")).await;
    assert_eq!(status, 200, "admin implies read");
    app.stop().await;
}

async fn a_read_only_token_cannot_ingest(b: Backend) {
    let app = spawn_app_with(b, |c| c.tokens = vec![token("r", "t", &["read"])]).await;
    let a = logs(vec![observed("h", AT, "sha256:aa", "succeeded", 1)]);
    let res = app.post_json("logs", &a, Some("r")).await;
    assert_eq!(res.status(), 403);
    let (_, state) = app.get("/api/v1/state", Some("r")).await;
    assert_eq!(state, json!([]));
    app.stop().await;
}

on_both_backends!(
    a_reader_sees_only_its_own_tenant,
    a_read_only_token_cannot_ingest
);

#[tokio::test]
async fn a_public_address_without_tokens_refuses_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    let config = HubConfig {
        otlp_grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        otlp_http_addr: "0.0.0.0:0".parse().expect("addr"),
        api_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..HubConfig::default()
    };
    let err = Application::build(&config).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("refusing to listen on non-loopback address 0.0.0.0:0"),
        "{message}"
    );
    assert!(
        !dir.path().join("hub.db").exists(),
        "refused before touching the database"
    );
}
