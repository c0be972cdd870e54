//! Who may call the orchestrator's API: tokens (`--tokens-file`) name a
//! tenant, a subject and scopes. Reading needs `read`, `deploy` or `admin`;
//! every route that changes state needs `deploy` or `admin`; `ingest`
//! alone grants nothing; a token without `scopes` is `admin`, as tokens
//! files written before scopes existed meant. Every route is taken from
//! the OpenAPI document, so a route added later is checked as well.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sextant_orchestrator::api::TokenConfig;
use sextant_orchestrator::app::{self, Running, RuntimeConfig};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use tokio_util::sync::CancellationToken;

/// A tokens file as `sextant orchestrator --tokens-file` reads it.
const TOKENS: &str = r#"
- {token: legacy-token-0123456789, tenant: acme, subject: olga}
- {token: admin-token-0123456789, tenant: acme, subject: ada, scopes: [admin]}
- {token: deploy-token-0123456789, tenant: acme, subject: carol, scopes: [deploy]}
- {token: read-token-0123456789, tenant: acme, subject: rita, scopes: [read]}
- {token: ingest-token-0123456789, tenant: acme, subject: ian, scopes: [ingest]}
- {token: both-token-0123456789, tenant: acme, subject: bea, scopes: [ingest, read]}
"#;

/// What a token may do: (token, subject, reads, changes).
const RULES: &[(&str, &str, bool, bool)] = &[
    ("legacy-token-0123456789", "olga", true, true),
    ("admin-token-0123456789", "ada", true, true),
    ("deploy-token-0123456789", "carol", true, true),
    ("read-token-0123456789", "rita", true, false),
    ("ingest-token-0123456789", "ian", false, false),
    ("both-token-0123456789", "bea", true, false),
];

/// A replica without a hub whose API takes `tokens`.
async fn replica(dir: &std::path::Path, tokens: Vec<TokenConfig>) -> (Running, CancellationToken) {
    let config = RuntimeConfig {
        listeners: Default::default(),
        metrics_require_token: false,
        links: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("orchestrator.db").display()),
        data_dir: dir.to_owned(),
        hub_api: None,
        hub_otlp: None,
        hub_token: None,
        tokens,
        insecure_registries: Vec::new(),
        agent_listen: Some("127.0.0.1:0".parse().unwrap()),
        agent_tls: Default::default(),
        agent_heartbeat: Duration::from_secs(30),
        registry_auth: Default::default(),
        api_rate_limit: Default::default(),
        settings: Settings {
            replica: "replica-a".into(),
            ..Settings::default()
        },
    };
    let cancel = CancellationToken::new();
    let running = app::start(config, Arc::new(SshExecutor::new()), cancel.clone())
        .await
        .unwrap();
    (running, cancel)
}

/// Every operation of the API's OpenAPI document, with its path
/// parameters filled in, and the HTML job page the document leaves out.
fn routes() -> Vec<(String, String)> {
    let doc = serde_json::to_value(sextant_orchestrator::api::openapi()).unwrap();
    let mut routes = vec![("get".to_owned(), "/jobs/no-such-job".to_owned())];
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let filled = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "no-such-id"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.clone(), filled.clone()));
            }
        }
    }
    assert!(routes.len() > 20, "{routes:?}");
    routes
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let mut req = http
        .request(method.clone(), url)
        .header("x-sextant-actor", "mallory");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if method != reqwest::Method::GET {
        req = req.json(&json!({}));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_needs_a_token_with_the_scope_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<TokenConfig> = serde_norway::from_str(TOKENS).unwrap();
    let (running, cancel) = replica(dir.path(), tokens).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    let mut wrong = Vec::new();
    for (method, path) in routes() {
        let url = format!("{base}{path}");
        let changes = method != "get";
        let (status, body) = call(&http, &method, &url, None).await;
        if status != 401 || body["error"]["code"] != "unauthenticated" {
            wrong.push(format!("{method} {path} without a token: {status} {body}"));
        }
        for (token, _, reads, may_change) in RULES {
            let allowed = if changes { *may_change } else { *reads };
            let (status, body) = call(&http, &method, &url, Some(token)).await;
            let refused = matches!(status, 401 | 403);
            if allowed && refused {
                wrong.push(format!("{method} {path} refused {token}: {status} {body}"));
            }
            if !allowed {
                // 403 `forbidden`, naming the scope that is missing.
                let scope = if changes { "`deploy`" } else { "`read`" };
                let message = body["error"]["message"].as_str().unwrap_or_default();
                if status != 403 || body["error"]["code"] != "forbidden" || !message.contains(scope)
                {
                    wrong.push(format!(
                        "{method} {path} let {token} through: {status} {body}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The actor is the token's subject, whatever the header says.
    for (token, subject, reads, _) in RULES {
        let (status, me) = call(&http, "get", &format!("{base}/api/v1/whoami"), Some(token)).await;
        if *reads {
            assert_eq!(status, 200, "{token}: {me}");
            assert_eq!(me["actor"], *subject, "{token}: {me}");
            assert_eq!(me["tenant"], "acme", "{token}: {me}");
        } else {
            assert_eq!(status, 403, "{token}: {me}");
        }
    }
    cancel.cancel();
    running.wait().await.unwrap();
}

/// Without tokens (the loopback default) nothing changes: tenant
/// `default`, the actor from `X-Sextant-Actor`, every route open.
#[tokio::test]
async fn without_tokens_the_actor_header_names_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (running, cancel) = replica(dir.path(), Vec::new()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let (status, me) = call(&http, "get", &format!("{base}/api/v1/whoami"), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"tenant": "default", "actor": "mallory", "can_change": true})
    );
    let (status, body) = call(&http, "post", &format!("{base}/api/v1/agents/tokens"), None).await;
    assert_eq!(status, 201, "{body}");
    cancel.cancel();
    running.wait().await.unwrap();
}
