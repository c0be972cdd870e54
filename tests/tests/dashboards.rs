//! Grafana dashboards in `deploy/grafana/`, checked with the real parts
//! their panels query (Grafana itself cannot be installed here): every
//! PromQL expression is run by a real Prometheus (Debian's, from the test
//! kit), which refuses bad syntax; every SQL panel of the hub reports runs
//! against a real hub's PostgreSQL database holding an estate sent over
//! OTLP, and shows what the hub's API shows. Also: every panel names a
//! provisioned datasource, and every metric is in docs/telemetry.md.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sextant_e2e::prometheus::Prometheus;
use sextant_e2e::{Backend, Hub, workspace_root};
use sqlx::Row as _;

fn dashboards() -> Vec<(String, Value)> {
    let dir = workspace_root().join("deploy/grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 4,
        "dashboards: {:?}",
        out.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    out
}

/// (dashboard, panel title, datasource uid, query) for every panel target.
fn targets() -> Vec<(String, String, String, Value)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let uid = t["datasource"]["uid"]
                    .as_str()
                    .or(p["datasource"]["uid"].as_str())
                    .unwrap_or_else(|| panic!("{file}: panel {} names no datasource", p["title"]))
                    .to_owned();
                out.push((
                    file.clone(),
                    p["title"].as_str().unwrap().to_owned(),
                    uid,
                    t.clone(),
                ));
            }
        }
    }
    out
}

/// Grafana's variables and macros, replaced as Grafana would for one
/// choice of values.
fn expand(query: &str, vars: &[(&str, &str)]) -> String {
    let mut q = query.to_owned();
    // Longest names first: `$environments` before `$environment`.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in vars {
        q = q.replace(&format!("${k}"), v);
    }
    q
}

#[test]
fn dashboards_are_well_formed_and_name_provisioned_datasources() {
    let text = std::fs::read_to_string(
        workspace_root().join("deploy/grafana/provisioning/datasources/sextant.yaml"),
    )
    .unwrap();
    let provisioned: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let uids: BTreeSet<String> = provisioned["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_owned())
        .collect();
    let mut seen = BTreeSet::new();
    for (file, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap().to_owned();
        assert!(seen.insert(uid.clone()), "{file}: uid {uid} used twice");
        assert!(
            d["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Sextant / "))
        );
        let ids: Vec<i64> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ids.len(),
            ids.iter().collect::<BTreeSet<_>>().len(),
            "{file}: panel ids repeat"
        );
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(ds) = v["datasource"]["uid"].as_str() {
                assert!(
                    uids.contains(ds),
                    "{file}: variable {} uses {ds}",
                    v["name"]
                );
            }
        }
    }
    for (file, panel, uid, _) in targets() {
        assert!(
            uids.contains(&uid),
            "{file}: panel {panel:?} uses datasource {uid:?}, not provisioned ({uids:?})"
        );
    }
}

#[test]
fn every_metric_on_a_dashboard_is_in_the_contract() {
    let contract = std::fs::read_to_string(workspace_root().join("docs/telemetry.md")).unwrap();
    let mut text = String::new();
    for (_, d) in dashboards() {
        text.push_str(&d.to_string());
    }
    let mut checked = 0;
    let mut rest = text.as_str();
    while let Some(at) = rest.find("sextant_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let metric = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| metric.strip_suffix(s))
            .unwrap_or(metric);
        // `sextant-hub` (a datasource uid) and the like are not metrics.
        if base.len() > "sextant_".len() {
            assert!(
                contract.contains(&format!("`{metric}`"))
                    || contract.contains(&format!("`{base}`")),
                "a dashboard reads {metric}, which docs/telemetry.md does not define"
            );
            checked += 1;
        }
        rest = &tail[end..];
    }
    assert!(checked > 10, "only {checked} metric references found");
}

#[tokio::test]
async fn every_promql_panel_is_accepted_by_a_real_prometheus() {
    let prometheus = Prometheus::start(&[]).await;
    let client = reqwest::Client::new();
    let vars = [
        ("__rate_interval", "5m"),
        ("__interval", "1m"),
        ("__range", "1h"),
        ("env", ".*"),
        ("agent", ".*"),
        ("tenant", ".*"),
        ("application", ".*"),
        ("environment", ".*"),
    ];
    let mut checked = 0;
    for (file, panel, uid, t) in targets() {
        if uid != "prometheus" {
            continue;
        }
        let expr = expand(t["expr"].as_str().unwrap(), &vars);
        assert!(!expr.contains('$'), "{file}: {panel}: unexpanded {expr}");
        let answer: Value = client
            .get(format!("{}/api/v1/query", prometheus.url()))
            .query(&[("query", expr.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["status"], "success",
            "{file}: panel {panel:?}: {expr}\n{answer:#}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} PromQL targets");
    // The check can fail: Prometheus refuses a broken expression.
    let broken: Value = client
        .get(format!("{}/api/v1/query", prometheus.url()))
        .query(&[("query", "sum by (env (rate(x[5m]))")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(broken["status"], "error");
}

fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn event(name: &str, env: &str, at_min_ago: u64, extra: &[(&str, &str)]) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut attrs = vec![
        kv("sextant.application", "shop"),
        kv("sextant.workload", "web"),
        kv("deployment.environment.name", env),
        kv("sextant.target", "eu-1"),
    ];
    attrs.extend(extra.iter().map(|(k, v)| kv(k, v)));
    json!({
        "eventName": name,
        "timeUnixNano": (now - at_min_ago * 60_000_000_000).to_string(),
        "attributes": attrs,
    })
}

#[tokio::test]
async fn the_hub_report_panels_run_on_the_hub_database_and_agree_with_it() {
    let hub = Hub::start(Backend::Postgres, "").await;
    hub.wait_ready().await;
    let rev = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let (r1, r2, r3) = (rev('1'), rev('2'), rev('3'));
    let desired = |env, min, v: &str, r: &str| {
        event(
            "sextant.deployment.desired",
            env,
            min,
            &[("service.version", v), ("sextant.revision", r)],
        )
    };
    let observed = |env, min, host: &str, r: &str, status: &str| {
        event(
            "sextant.deployment.observed",
            env,
            min,
            &[
                ("host.name", host),
                ("sextant.revision", r),
                ("deployment.status", status),
            ],
        )
    };
    let records = vec![
        desired("prod", 60, "1.1.0", &r1),
        observed("prod", 55, "p-1", &r1, "succeeded"),
        observed("prod", 55, "p-2", &r1, "succeeded"),
        desired("prod", 30, "1.2.0", &r2),
        observed("prod", 25, "p-1", &r2, "succeeded"),
        observed("prod", 24, "p-2", &r1, "failed"),
        desired("stage", 20, "1.3.0", &r3),
        observed("stage", 15, "s-1", &r3, "succeeded"),
    ];
    let body = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": records}]}]});
    let res = reqwest::Client::new()
        .post(format!("http://{}/v1/logs", hub.http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert!(answer["partialSuccess"].is_null(), "{answer}");

    let pool = sqlx::PgPool::connect(&hub.db.url).await.unwrap();
    let vars = [
        ("tenant", "default"),
        ("environment", "prod"),
        ("environments", "'prod','stage'"),
        ("host", "p-2"),
    ];
    let panels: Vec<(String, String)> = targets()
        .into_iter()
        .filter(|(_, _, uid, _)| uid == "sextant-hub")
        .map(|(_, panel, _, t)| (panel, t["rawSql"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(panels.len(), 4, "{panels:?}");
    let run = async |title: &str| {
        let (_, sql) = panels
            .iter()
            .find(|(p, _)| p.starts_with(title))
            .unwrap_or_else(|| panic!("no panel {title}"));
        let mut sql = expand(sql, &vars);
        // Grafana's $__timeFilter(expr) over the last 30 days.
        while let Some(at) = sql.find("$__timeFilter(") {
            let open = at + "$__timeFilter(".len();
            let mut depth = 1;
            let mut close = open;
            for (i, c) in sql[open..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    close = open + i;
                    break;
                }
            }
            let inner = sql[open..close].to_owned();
            sql.replace_range(
                at..=close,
                &format!("{inner} BETWEEN now() - interval '30 days' AND now()"),
            );
        }
        assert!(!sql.contains('$'), "unexpanded: {sql}");
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{title}: {e}\n{sql}"))
    };

    // Environment State (prod): 1.2.0 desired; 1.2.0 succeeded on 1 host,
    // 1.1.0 failed on 1 host (drifting).
    let rows = run("Environment State").await;
    let mut state: Vec<(String, String, String, i64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<Option<String>, _>("desired_version")
                    .unwrap_or_default(),
                r.get::<String, _>("deployed_version"),
                r.get::<String, _>("status"),
                r.get::<i64, _>("hosts"),
                r.get::<bool, _>("drift"),
            )
        })
        .collect();
    state.sort();
    assert_eq!(
        state,
        [
            ("1.2.0".into(), "1.1.0".into(), "failed".into(), 1, true),
            ("1.2.0".into(), "1.2.0".into(), "succeeded".into(), 1, false),
        ]
    );
    // The API agrees.
    let api: Value = reqwest::get(format!("http://{}/api/v1/environments/prod/state", hub.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = api.to_string();
    assert!(text.contains("1.2.0") && text.contains("1.1.0"), "{api:#}");

    // Environment Discrepancies (prod vs stage): web differs.
    let rows = run("Environment Discrepancies").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("workload"), "web");
    assert_eq!(
        rows[0].get::<String, _>("desired_by_environment"),
        "prod: 1.2.0; stage: 1.3.0"
    );
    assert!(rows[0].get::<bool, _>("differs"));

    // Host State (p-2): web 1.1.0 failed in prod.
    let rows = run("Host State").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("version"), "1.1.0");
    assert_eq!(rows[0].get::<String, _>("status"), "failed");
    assert_eq!(rows[0].get::<String, _>("environment"), "prod");

    // Environment History (prod): both desired versions and the four
    // observed changes, newest first; nothing from stage.
    let rows = run("Environment History").await;
    let kinds: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("kind"),
                r.get::<Option<String>, _>("version"),
                r.get::<Option<String>, _>("host"),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert_eq!(kinds[0], ("observed".into(), None, Some("p-2".into())));
    assert!(kinds.contains(&("desired".into(), Some("1.1.0".into()), None)));
    assert!(kinds.contains(&("desired".into(), Some("1.2.0".into()), None)));
    assert!(!kinds.iter().any(|k| k.2.as_deref() == Some("s-1")));
}
