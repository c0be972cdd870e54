//! The orchestrator's HTML job page, `GET /jobs/{id}` (issue 6 §4 "Links"):
//! a job and its tasks, with links to the hub's view of each task's target.
//! With a real hub (`sextant up`, a process): a release promoted onto an SSH
//! target, its page, and every hub link on it followed to a 200 answer (the
//! workload history showing the promotion the orchestrator sent); a failed
//! release's job, its rollback job and the link between them. Without a hub:
//! "no hub configured". Unknown jobs are 404; with tokens the page is
//! tenant-scoped like the API and refuses a browser without a token (401).
//! The stack is in `common/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use sextant_e2e::wait;

use common::{Stack, component, digest};
use serde_json::{Value, json};
use sextant_orchestrator::api::TokenConfig;
use sextant_orchestrator::app::{self, RuntimeConfig};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use tokio_util::sync::CancellationToken;

/// GETs `url`: status, content type and body.
async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ctype, res.text().await.unwrap_or_default())
}

/// Every `href="…"` of a page, unescaped, in order, without repeats.
fn hrefs(html: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in html.split("href=\"").skip(1) {
        let Some(end) = part.find('"') else { continue };
        let href = part[..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        if !out.contains(&href) {
            out.push(href);
        }
    }
    out
}

async fn promoted_job(stack: &Stack, release: &str, env: &str, state: &str) -> String {
    let p = stack
        .promote_to_end(release, env, "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], state, "{p:#}");
    p["job_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_job_page_links_to_the_hubs_view_of_its_targets() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let hub_base = format!("http://{}", hub.api);
    let stack = Stack::start_for(&hub).await;
    let (d1, d2) = (digest('1'), digest('2'));
    // web-1 is `eu-1` on the hub; its deploy command fails on r2.
    let fail = format!("if [ \"$SEXTANT_DIGEST\" = \"{d2}\" ]; then echo broken >&2; exit 3; fi;");
    let mut target = stack.target("web-1", "dev", &fail, None);
    target["hub_target"] = json!("eu-1");
    stack
        .apply(json!({"environments": [{"name": "dev"}], "components": component(), "targets": [target]}))
        .await;
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    let job = promoted_job(&stack, "r1", "dev", "deployed").await;

    let http = reqwest::Client::new();
    let page_url = format!("{}/jobs/{job}", stack.base);
    let (status, ctype, page) = get(&http, &page_url, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    for text in [
        job.as_str(),
        "web-1",
        "succeeded",
        "completed",
        "r1",
        "all_at_once",
        "hub target eu-1",
    ] {
        assert!(page.contains(text), "{text:?} missing from {page}");
    }
    assert!(!page.contains("no hub configured"), "{page}");

    let links = hrefs(&page);
    let on_hub: Vec<&String> = links.iter().filter(|h| h.starts_with(&hub_base)).collect();
    for expected in [
        format!("{hub_base}/"),
        format!("{hub_base}/?environments=dev"),
        format!("{hub_base}/hosts?environment=dev"),
        format!("{hub_base}/workloads/web/history?environment=dev&target=eu-1"),
    ] {
        assert!(
            on_hub.contains(&&expected),
            "{expected} missing from {on_hub:#?}"
        );
    }
    // An SSH target's address is not its hub host name: no host page link.
    assert!(!on_hub.iter().any(|h| h.contains("/hosts/")), "{on_hub:#?}");
    for link in &on_hub {
        let (status, ctype, body) = get(&http, link, None).await;
        assert_eq!(status, 200, "{link}: {body}");
        assert!(ctype.starts_with("text/html"), "{link}: {ctype}");
    }
    // The history link is the right filter: it shows the desired state the
    // orchestrator sent for eu-1, once its outbox has delivered it.
    let history = format!("{hub_base}/workloads/web/history?environment=dev&target=eu-1");
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (status, _, body) = get(&http, &history, None).await;
            assert_eq!(status, 200, "{body}");
            if body.contains("Promoted") && body.contains("eu-1") {
                return Ok(());
            }
            Err(format!("no desired state: {body}"))
        },
    )
    .await;
    // Orchestrator links: the JSON view of the same job.
    assert!(links.contains(&format!("/api/v1/jobs/{job}")), "{links:#?}");

    // r2 fails on web-1 and is rolled back: the page says why, and links
    // the rollback job, whose page links back to it.
    let failed = promoted_job(&stack, "r2", "dev", "rolled_back").await;
    let (status, _, page) = get(&http, &format!("{}/jobs/{failed}", stack.base), None).await;
    assert_eq!(status, 200, "{page}");
    for text in ["rolled_back", "failed", "command", "Rollback job"] {
        assert!(page.contains(text), "{text:?} missing from {page}");
    }
    let rollback = stack.job(&failed).await["rollback_job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        hrefs(&page).contains(&format!("/jobs/{rollback}")),
        "{page}"
    );
    let (status, _, page) = get(&http, &format!("{}/jobs/{rollback}", stack.base), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Parent job"), "{page}");
    assert!(page.contains("rollback"), "{page}");
    // Its tasks restore r1, named (not by the release's id).
    assert!(page.contains(r#"class="task-release">r1<"#), "{page}");
    assert!(hrefs(&page).contains(&format!("/jobs/{failed}")), "{page}");

    // An unknown job: a 404 page.
    let (status, ctype, page) = get(&http, &format!("{}/jobs/no-such-job", stack.base), None).await;
    assert_eq!(status, 404, "{page}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains("no-such-job"), "{page}");
}

#[tokio::test]
async fn without_a_hub_the_page_says_so() {
    let stack = Stack::start().await;
    stack
        .apply(
            json!({"environments": [{"name": "dev"}], "components": component(),
            "targets": [stack.target("web-1", "dev", "", None)]}),
        )
        .await;
    stack.release("r1", &digest('1')).await;
    let job = promoted_job(&stack, "r1", "dev", "deployed").await;
    let http = reqwest::Client::new();
    let (status, ctype, page) = get(&http, &format!("{}/jobs/{job}", stack.base), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains(&job), "{page}");
    assert!(
        page.contains("web-1") && page.contains("succeeded"),
        "{page}"
    );
    assert!(page.contains("no hub configured"), "{page}");
    assert!(
        hrefs(&page).iter().all(|h| h.starts_with('/')),
        "only links of the orchestrator's own: {page}"
    );
    let (status, _, page) = get(&http, &format!("{}/jobs/nope", stack.base), None).await;
    assert_eq!(status, 404, "{page}");
}

#[tokio::test]
async fn with_tokens_the_page_is_tenant_scoped() {
    let data = tempfile::tempdir().unwrap();
    let token =
        |token: &str, tenant: &str| TokenConfig::admin(token, tenant, format!("{tenant}-admin"));
    let config = RuntimeConfig {
        listeners: Default::default(),
        metrics_require_token: false,
        links: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", data.path().join("orchestrator.db").display()),
        data_dir: data.path().to_owned(),
        hub_api: None,
        hub_otlp: None,
        hub_token: None,
        tokens: vec![
            token("token-of-tenant-a-0123", "a"),
            token("token-of-tenant-b-0123", "b"),
        ],
        insecure_registries: Vec::new(),
        agent_listen: None,
        agent_tls: Default::default(),
        agent_heartbeat: Duration::from_secs(30),
        registry_auth: Default::default(),
        api_rate_limit: Default::default(),
        settings: Settings {
            replica: "replica-a".into(),
            poll: Duration::from_millis(200),
            task_timeout: Duration::from_secs(5),
            task_attempts: 1,
            ..Settings::default()
        },
    };
    let cancel = CancellationToken::new();
    let running = app::start(config, Arc::new(SshExecutor::new()), cancel.clone())
        .await
        .unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let (a, b) = (
        Some("token-of-tenant-a-0123"),
        Some("token-of-tenant-b-0123"),
    );
    let call = |method: &str, path: &str, body: Value| {
        let req = match method {
            "GET" => http.get(format!("{base}{path}")),
            _ => http.post(format!("{base}{path}")).json(&body),
        };
        async move {
            let res = req.bearer_auth(a.unwrap()).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Tenant a: a target nobody listens on; the job exists all the same.
    let target = json!({
        "name": "web-1", "environment": "dev",
        "ssh": {"host": "127.0.0.1", "port": 1, "user": "nobody",
                "credential": format!("file:{}", data.path().join("no-key").display())},
        "deploy": {"template": "custom", "command": "true"},
    });
    let doc =
        json!({"environments": [{"name": "dev"}], "components": component(), "targets": [target]});
    let (status, body) = call("POST", "/api/v1/apply", doc).await;
    assert_eq!(status, 200, "{body}");
    let release = json!({"name": "r1", "components": [{"component": "web", "image": format!("127.0.0.1:5000/web@{}", digest('1'))}]});
    let (status, body) = call("POST", "/api/v1/releases", release).await;
    assert_eq!(status, 201, "{body}");
    let (status, p) = call(
        "POST",
        "/api/v1/promotions",
        json!({"release": "r1", "environment": "dev"}),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let job = wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let (_, p) = call("GET", &format!("/api/v1/promotions/{id}"), Value::Null).await;
            if let Some(job) = p["job_id"].as_str() {
                return Ok(job.to_owned());
            }
            Err(format!("no job: {p:#}"))
        },
    )
    .await;

    let url = format!("{base}/jobs/{job}");
    // A browser without a token: the API's 401.
    let (status, ctype, body) = get(&http, &url, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "unauthenticated", "{body}");
    let (status, _, body) = get(&http, &url, Some("not-a-token-at-all-000")).await;
    assert_eq!(status, 401, "{body}");
    // Tenant a sees its job; tenant b does not.
    let (status, ctype, page) = get(&http, &url, a).await;
    assert_eq!(status, 200, "{page}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains(&job) && page.contains("web-1"), "{page}");
    let (status, _, page) = get(&http, &url, b).await;
    assert_eq!(status, 404, "{page}");
    assert!(!page.contains("web-1"), "{page}");

    cancel.cancel();
    running.stop().await.unwrap();
}
