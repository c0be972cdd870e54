//! One view over all sources: a Flux cluster, an Argo CD cluster, agent
//! hosts (one on an older agent that sent type `docker`) and a report that
//! named no reconciler share one environment; every read shows each row's
//! source and reconciler and filters by them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, desired, kv, logs, observed, on_both_backends, spawn_app};

const S: u64 = 1_000_000_000;

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("fits")
}

/// `record` as reported by reconciler `name` of type `kind`.
pub(crate) fn by(mut record: Value, name: &str, kind: &str) -> Value {
    let attrs = record["attributes"].as_array_mut().expect("attributes");
    attrs.push(kv("sextant.reconciler.name", name));
    attrs.push(kv("sextant.reconciler.type", kind));
    record
}

/// prod runs shop/checkout on three targets, each promoted to r2:
/// `cluster-a` (Flux `flux-system` on host cluster-a, on r2, in sync),
/// `cluster-b` (Argo CD `argocd-prod` on host cluster-b, still on r1),
/// `docker` (the agent on docker-1, failed on r2, and on docker-0, an older
/// agent that sent type `docker`, in sync). `manual-1` reported `edge`,
/// never promoted, naming no reconciler.
pub(crate) async fn mixed_estate(app: &TestApp) -> u64 {
    let t = now();
    let at = |target| ("shop", "checkout", "prod", target);
    app.send_logs(&logs(vec![
        desired(at("cluster-a"), "1.2", "r2", t - 100 * S),
        desired(at("cluster-b"), "1.2", "r2", t - 100 * S),
        desired(at("docker"), "1.2", "r2", t - 100 * S),
        by(
            observed("cluster-a", at("cluster-a"), "r2", "succeeded", t - 10 * S),
            "flux-system",
            "flux",
        ),
        by(
            observed("cluster-b", at("cluster-b"), "r1", "succeeded", t - 10 * S),
            "argocd-prod",
            "argocd",
        ),
        by(
            observed("docker-1", at("docker"), "r2", "failed", t - 10 * S),
            "sextant-agent",
            "agent",
        ),
        by(
            observed("docker-0", at("docker"), "r2", "succeeded", t - 10 * S),
            "sextant-agent",
            "docker",
        ),
        observed("manual-1", at("edge"), "e1", "succeeded", t - 10 * S),
    ]))
    .await;
    t
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// (host, source, reconciler) of each row of a list.
fn sources(rows: &Value) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<_> = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["host"].as_str().expect("host").to_owned(),
                r["source"].as_str().expect("source").to_owned(),
                r["reconciler"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out
}

fn row(host: &str, source: &str, reconciler: Option<&str>) -> (String, String, Option<String>) {
    (host.into(), source.into(), reconciler.map(str::to_owned))
}

async fn drift_rows_carry_their_source_and_filter_by_it(backend: Backend) {
    let app = spawn_app(backend).await;
    mixed_estate(&app).await;

    let all = get_ok(&app, "/api/v1/drift").await;
    assert_eq!(
        sources(&all["items"]),
        [
            row("cluster-b", "argocd", Some("argocd-prod")),
            row("docker-1", "agent", Some("sextant-agent")),
            row("manual-1", "otlp", None),
        ],
        "{all}"
    );

    for (query, hosts) in [
        ("source=argocd", vec!["cluster-b"]),
        ("source=agent,otlp", vec!["docker-1", "manual-1"]),
        ("source=otlp", vec!["manual-1"]),
        ("source=flux", vec![]),
        ("reconciler=argocd-prod", vec!["cluster-b"]),
        ("source=agent&reconciler=sextant-agent", vec!["docker-1"]),
        ("source=flux&reconciler=sextant-agent", vec![]),
        ("source=", vec!["cluster-b", "docker-1", "manual-1"]),
    ] {
        let page = get_ok(&app, &format!("/api/v1/drift?{query}")).await;
        let got: Vec<String> = sources(&page["items"])
            .into_iter()
            .map(|(h, _, _)| h)
            .collect();
        assert_eq!(got, hosts, "{query}: {page}");
    }

    // Pages of a filtered list hold only filtered rows, and all of them.
    let first = get_ok(&app, "/api/v1/drift?source=agent,otlp&limit=1").await;
    assert_eq!(
        sources(&first["items"]),
        [row("docker-1", "agent", Some("sextant-agent"))]
    );
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = get_ok(
        &app,
        &format!("/api/v1/drift?source=agent,otlp&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(sources(&second["items"]), [row("manual-1", "otlp", None)]);
    app.stop().await;
}

async fn an_unknown_source_is_a_400_naming_the_allowed_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    mixed_estate(&app).await;
    for path in [
        "/api/v1/drift?source=docker",
        "/api/v1/drift?source=flux,helm",
        "/api/v1/environments/prod/state?source=Flux",
        "/api/v1/hosts?source=argo",
        "/api/v1/hosts/docker-1?source=agents",
        "/api/v1/state?source=k8s",
        "/api/v1/history?workload=checkout&source=x",
    ] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{path}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("flux, argocd, agent, kalypso, otlp"),
            "{path}: {message}"
        );
    }
    app.stop().await;
}

/// One reporter of a target: (source, reconciler, hosts).
type Reporter = (String, Option<String>, u64);

/// The `sources` of each target of an environment-state answer:
/// target → [(source, reconciler, hosts)].
fn reporters(state: &Value) -> Vec<(String, Vec<Reporter>)> {
    state
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["target"].as_str().expect("target").to_owned(),
                t["sources"]
                    .as_array()
                    .expect("sources")
                    .iter()
                    .map(|s| {
                        (
                            s["source"].as_str().expect("source").to_owned(),
                            s["reconciler"].as_str().map(str::to_owned),
                            s["hosts"].as_u64().expect("hosts"),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

fn reporter(source: &str, reconciler: Option<&str>, hosts: u64) -> Reporter {
    (source.into(), reconciler.map(str::to_owned), hosts)
}

async fn environment_state_shows_every_source_side_by_side(backend: Backend) {
    let app = spawn_app(backend).await;
    mixed_estate(&app).await;
    let path = "/api/v1/environments/prod/state";

    let state = get_ok(&app, path).await;
    assert_eq!(
        reporters(&state),
        [
            (
                "cluster-a".to_owned(),
                vec![reporter("flux", Some("flux-system"), 1)]
            ),
            (
                "cluster-b".to_owned(),
                vec![reporter("argocd", Some("argocd-prod"), 1)]
            ),
            // docker-0's older type `docker` is the same source and name.
            (
                "docker".to_owned(),
                vec![reporter("agent", Some("sextant-agent"), 2)]
            ),
            ("edge".to_owned(), vec![reporter("otlp", None, 1)]),
        ],
        "{state}"
    );

    // Filtered: only the targets the source reports, counted from its rows.
    let flux = get_ok(&app, &format!("{path}?source=flux")).await;
    assert_eq!(
        reporters(&flux),
        [(
            "cluster-a".to_owned(),
            vec![reporter("flux", Some("flux-system"), 1)]
        )],
        "{flux}"
    );
    assert_eq!(flux[0]["total_hosts"], 1);
    assert_eq!(flux[0]["in_sync_hosts"], 1);

    let agent = get_ok(&app, &format!("{path}?source=agent")).await;
    assert_eq!(agent.as_array().expect("targets").len(), 1, "{agent}");
    assert_eq!(agent[0]["target"], "docker");
    assert_eq!(agent[0]["total_hosts"], 2);
    assert_eq!(
        agent[0]["in_sync_hosts"], 1,
        "docker-0 on r2, docker-1 failed"
    );

    let argo = get_ok(&app, &format!("{path}?reconciler=argocd-prod")).await;
    assert_eq!(argo.as_array().expect("targets").len(), 1, "{argo}");
    assert_eq!(argo[0]["target"], "cluster-b");
    assert_eq!(argo[0]["deployed"][0]["revision"], "r1");

    let none = get_ok(&app, &format!("{path}?source=kalypso")).await;
    assert_eq!(none, json!([]));

    // The report cache keeps filtered and unfiltered answers apart.
    let again = get_ok(&app, path).await;
    assert_eq!(again.as_array().expect("targets").len(), 4, "{again}");
    let flux_again = get_ok(&app, &format!("{path}?source=flux")).await;
    assert_eq!(flux_again, flux);

    // /api/v1/state: every host carries its source.
    let state = get_ok(&app, "/api/v1/state?environment=prod&source=agent").await;
    let hosts: Vec<_> = state
        .as_array()
        .expect("targets")
        .iter()
        .flat_map(|t| t["hosts"].as_array().expect("hosts").clone())
        .collect();
    assert_eq!(
        sources(&Value::Array(hosts)),
        [
            row("docker-0", "agent", Some("sextant-agent")),
            row("docker-1", "agent", Some("sextant-agent")),
        ]
    );
    app.stop().await;
}

async fn host_view_and_hosts_list_show_and_filter_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    mixed_estate(&app).await;

    let host = get_ok(&app, "/api/v1/hosts/cluster-b").await;
    assert_eq!(
        sources(&host["deployments"]),
        [row("cluster-b", "argocd", Some("argocd-prod"))]
    );
    let same = get_ok(&app, "/api/v1/hosts/cluster-b?source=argocd").await;
    assert_eq!(same["deployments"], host["deployments"]);
    let (status, body) = app.get("/api/v1/hosts/cluster-b?source=flux", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app
        .get("/api/v1/hosts/cluster-b?reconciler=flux-system", None)
        .await;
    assert_eq!(status, 404, "{body}");

    let list = get_ok(&app, "/api/v1/hosts").await;
    let listed: Vec<(String, Vec<String>)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().expect("host").to_owned(),
                h["sources"]
                    .as_array()
                    .expect("sources")
                    .iter()
                    .map(|s| s.as_str().expect("source").to_owned())
                    .collect(),
            )
        })
        .collect();
    let expect = |h: &str, s: &str| (h.to_owned(), vec![s.to_owned()]);
    assert_eq!(
        listed,
        [
            expect("cluster-a", "flux"),
            expect("cluster-b", "argocd"),
            expect("docker-0", "agent"),
            expect("docker-1", "agent"),
            expect("manual-1", "otlp"),
        ]
    );
    for (query, hosts) in [
        ("source=agent", vec!["docker-0", "docker-1"]),
        ("source=flux,argocd", vec!["cluster-a", "cluster-b"]),
        ("reconciler=flux-system", vec!["cluster-a"]),
        ("source=kalypso", vec![]),
    ] {
        let page = get_ok(&app, &format!("/api/v1/hosts?{query}")).await;
        let got: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|h| h["host"].as_str().expect("host"))
            .collect();
        assert_eq!(got, hosts, "{query}: {page}");
    }
    app.stop().await;
}

async fn history_entries_carry_their_source(backend: Backend) {
    let app = spawn_app(backend).await;
    mixed_estate(&app).await;
    let all = get_ok(&app, "/api/v1/history?workload=checkout").await;
    let observed: Vec<Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "observed")
        .cloned()
        .collect();
    assert_eq!(
        sources(&Value::Array(observed)),
        [
            row("cluster-a", "flux", Some("flux-system")),
            row("cluster-b", "argocd", Some("argocd-prod")),
            row("docker-0", "agent", Some("sextant-agent")),
            row("docker-1", "agent", Some("sextant-agent")),
            row("manual-1", "otlp", None),
        ]
    );

    // Filtered: the source's changes, and every promotion still.
    let flux = get_ok(&app, "/api/v1/history?workload=checkout&source=flux").await;
    let items = flux["items"].as_array().expect("items");
    let kinds: Vec<(&str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind"),
                e["host"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "desired").count(),
        3,
        "{flux}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, _)| *k == "observed")
            .map(|(_, h)| *h)
            .collect::<Vec<_>>(),
        ["cluster-a"],
        "{flux}"
    );
    app.stop().await;
}

/// The matrix page, as HTML: the prod cell of checkout lists the three
/// clusters' and hosts' sources side by side, and the source filter
/// narrows it.
async fn ui_matrix_and_drift_show_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    mixed_estate(&app).await;
    let page = |path: &'static str| {
        let url = format!("http://{}{path}", app.api);
        let client = app.client.clone();
        async move {
            let res = client.get(url).send().await.expect("UI request");
            (res.status().as_u16(), res.text().await.expect("html"))
        }
    };

    let (status, html) = page("/").await;
    assert_eq!(status, 200);
    let cell = cell_of(&html, r#"data-environment="prod" data-workload="checkout""#);
    for (target, source, name) in [
        ("cluster-a", "flux", "flux-system"),
        ("cluster-b", "argocd", "argocd-prod"),
        ("docker", "agent", "sextant-agent"),
    ] {
        let t = cell_of(cell, &format!(r#"data-target="{target}""#));
        assert!(
            t.contains(&format!(r#"data-source="{source}""#)) && t.contains(name),
            "{target} shows no {source} badge: {t}"
        );
    }
    assert!(
        html.contains(r#"<select name="source">"#),
        "no source filter"
    );

    // As the filter form submits it: every field, the empty ones too.
    let (_, html) =
        page("/?workspace=&application=&workload=&environments=&source=argocd&reconciler=").await;
    let cell = cell_of(&html, r#"data-environment="prod" data-workload="checkout""#);
    assert!(cell.contains(r#"data-target="cluster-b""#), "{cell}");
    assert!(!cell.contains(r#"data-target="cluster-a""#), "{cell}");
    assert!(!cell.contains(r#"data-source="agent""#), "{cell}");
    assert!(
        html.contains(r#"<option value="argocd" selected>"#),
        "the filter shows its value"
    );

    let (_, html) = page("/drift").await;
    for (host, source) in [
        ("cluster-b", "argocd"),
        ("docker-1", "agent"),
        ("manual-1", "otlp"),
    ] {
        assert!(
            html.contains(&format!(r#"data-host="{host}""#))
                && cell_of(&html, &format!(r#"data-host="{host}""#))
                    .contains(&format!(r#"data-source="{source}""#)),
            "{host} {source}"
        );
    }
    let (_, html) = page("/drift?source=otlp").await;
    assert!(html.contains(r#"data-host="manual-1""#));
    assert!(!html.contains(r#"data-host="cluster-b""#));

    let (_, html) = page("/hosts/docker-0").await;
    assert!(html.contains(r#"data-source="agent""#), "{html}");
    let (_, html) = page("/hosts?source=flux").await;
    assert!(html.contains(r#"data-host="cluster-a""#));
    assert!(!html.contains(r#"data-host="docker-1""#));

    let (status, html) = page("/drift?source=helm").await;
    assert_eq!(status, 400);
    assert!(
        html.contains("flux, argocd, agent, kalypso, otlp"),
        "{html}"
    );
    app.stop().await;
}

/// The element that starts with the tag holding `marker`, up to the end of
/// its line of siblings: from `marker` to the next element of the same
/// kind (`data-environment`, `data-target`, `data-host`), or to the end.
fn cell_of<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let rest = &html[start + marker.len()..];
    let key = &marker[..marker.find('=').expect("attribute")];
    let end = rest.find(&format!("{key}=")).unwrap_or(rest.len());
    &rest[..end]
}

/// An agent upgraded from type `docker` to `agent` (or a fleet with both)
/// keeps one row per host and target: the two types of one name are one
/// reconciler.
async fn an_upgraded_agent_keeps_its_rows(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now();
    let at = ("shop", "checkout", "prod", "docker");
    app.send_logs(&logs(vec![
        desired(at, "1.2", "r2", t - 100 * S),
        by(
            observed("old", at, "r1", "succeeded", t - 50 * S),
            "sextant-agent",
            "docker",
        ),
    ]))
    .await;
    // The host's agent is upgraded; another host still runs an old one.
    app.send_logs(&logs(vec![
        by(
            observed("old", at, "r2", "succeeded", t - 10 * S),
            "sextant-agent",
            "agent",
        ),
        by(
            observed("other", at, "r2", "in_progress", t - 10 * S),
            "sextant-agent",
            "docker",
        ),
    ]))
    .await;
    let host = get_ok(&app, "/api/v1/hosts/old").await;
    let rows = host["deployments"].as_array().expect("deployments");
    assert_eq!(rows.len(), 1, "one row for old: {host}");
    assert_eq!(rows[0]["revision"], "r2");
    assert_eq!(rows[0]["source"], "agent");
    let state = get_ok(&app, "/api/v1/environments/prod/state").await;
    assert_eq!(
        reporters(&state),
        [(
            "docker".to_owned(),
            vec![reporter("agent", Some("sextant-agent"), 2)]
        )],
        "{state}"
    );
    // Drift: old is in sync now; nothing stale is left behind.
    let drift = get_ok(&app, "/api/v1/drift").await;
    assert_eq!(drift["items"], json!([]), "{drift}");
    app.stop().await;
}

/// The OpenAPI document names the filters where they apply and the fields
/// every observed row carries.
async fn openapi_documents_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = get_ok(&app, "/api/openapi.json").await;
    for path in [
        "/api/v1/drift",
        "/api/v1/environments/{environment}/state",
        "/api/v1/hosts",
        "/api/v1/hosts/{host}",
        "/api/v1/state",
        "/api/v1/history",
    ] {
        let params: Vec<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has parameters"))
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        assert!(
            params.contains(&"source") && params.contains(&"reconciler"),
            "{path}: {params:?}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Source"]["enum"],
        json!(["flux", "argocd", "agent", "kalypso", "otlp"]),
        "{}",
        schemas["Source"]
    );
    // A property of a schema, also where `#[serde(flatten)]` made it an allOf.
    let has = |schema: &Value, name: &str| {
        schema["properties"][name].is_object()
            || schema["allOf"]
                .as_array()
                .is_some_and(|parts| parts.iter().any(|p| p["properties"][name].is_object()))
    };
    for (schema, field) in [
        ("HostDeployment", "source"),
        ("HostView", "source"),
        ("SourceHosts", "source"),
        ("TargetSummary", "sources"),
        ("HostSummary", "sources"),
        ("CompareTarget", "sources"),
    ] {
        assert!(
            has(&schemas[schema], field),
            "{schema}: {}",
            schemas[schema]
        );
    }
    app.stop().await;
}

on_both_backends!(
    openapi_documents_sources,
    an_upgraded_agent_keeps_its_rows,
    drift_rows_carry_their_source_and_filter_by_it,
    an_unknown_source_is_a_400_naming_the_allowed_ones,
    environment_state_shows_every_source_side_by_side,
    host_view_and_hosts_list_show_and_filter_sources,
    history_entries_carry_their_source,
    ui_matrix_and_drift_show_sources,
);
