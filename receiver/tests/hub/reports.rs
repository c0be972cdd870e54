//! Reports: environment state, compare, drift, the host view and history,
//! over one small estate that arrived over OTLP.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sextant_model::UnixNanos;

use crate::helpers::{Backend, TestApp, desired, logs, observed, on_both_backends, spawn_app_with};

const S: u64 = 1_000_000_000;

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("fits")
}

/// stage/eu runs checkout mid-rollout from 1.1 (r1) to 1.2 (r2): s1 done,
/// s2 in progress, s3 still on r1, s4 failed; s1 also runs cart, which was
/// never promoted. prod/eu runs checkout 1.1 on p1 and on p2, which went
/// quiet an hour ago.
async fn estate(backend: Backend) -> (TestApp, u64) {
    estate_with(backend, |_| {}).await
}

pub(crate) async fn estate_with(
    backend: Backend,
    configure: impl FnOnce(&mut sextant_receiver::HubConfig),
) -> (TestApp, u64) {
    let app = spawn_app_with(backend, configure).await;
    let t = now();
    let stage = ("shop", "checkout", "stage", "eu");
    let prod = ("shop", "checkout", "prod", "eu");
    app.send_logs(&logs(vec![
        desired(stage, "1.1", "r1", t - 1000 * S),
        desired(stage, "1.2", "r2", t - 100 * S),
        desired(prod, "1.1", "r1", t - 2000 * S),
        observed("s1", stage, "r2", "succeeded", t - 50 * S),
        observed("s2", stage, "r2", "in_progress", t - 40 * S),
        observed("s3", stage, "r1", "succeeded", t - 30 * S),
        observed("s4", stage, "r2", "failed", t - 20 * S),
        observed(
            "s1",
            ("shop", "cart", "stage", "eu"),
            "c1",
            "succeeded",
            t - 10 * S,
        ),
        observed("p1", prod, "r1", "succeeded", t - 10 * S),
        observed("p2", prod, "r1", "succeeded", t - 3600 * S),
    ]))
    .await;
    (app, t)
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Follows `next_cursor` from `path` and returns every item.
async fn all_pages(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = path.to_owned();
    for _ in 0..20 {
        let page = get_ok(app, &next).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                next = format!("{path}{sep}cursor={c}");
            }
            None => return items,
        }
    }
    panic!("pagination of {path} does not end");
}

async fn environment_state_groups_versions_with_host_counts(backend: Backend) {
    let (app, _) = estate(backend).await;
    let state = get_ok(&app, "/api/v1/environments/stage/state").await;
    let rows = state.as_array().expect("array");
    assert_eq!(rows.len(), 2, "{state}");
    let cart = &rows[0];
    assert_eq!(
        (&cart["workload"], &cart["desired"]),
        (&json!("cart"), &Value::Null)
    );
    assert_eq!(
        cart["deployed"],
        json!([{"version": null, "revision": "c1", "status": "succeeded", "hosts": 1, "desired": false}])
    );
    let checkout = &rows[1];
    assert_eq!(checkout["desired"]["version"], "1.2");
    assert_eq!(
        (&checkout["total_hosts"], &checkout["in_sync_hosts"]),
        (&json!(4), &json!(1))
    );
    let mut groups: Vec<(String, String, bool)> = checkout["deployed"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            assert_eq!(g["hosts"], 1, "{g}");
            (
                g["version"].as_str().unwrap_or("?").to_owned(),
                g["status"].as_str().unwrap_or("?").to_owned(),
                g["desired"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("1.1".into(), "succeeded".into(), false),
            ("1.2".into(), "failed".into(), true),
            ("1.2".into(), "in_progress".into(), true),
            ("1.2".into(), "succeeded".into(), true),
        ]
    );
    let only = get_ok(&app, "/api/v1/environments/stage/state?workload=cart").await;
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    let none = get_ok(&app, "/api/v1/environments/qa/state").await;
    assert_eq!(none, json!([]));
    app.stop().await;
}

async fn compare_shows_where_environments_differ(backend: Backend) {
    let (app, _) = estate(backend).await;
    let c = get_ok(&app, "/api/v1/compare?environments=stage,prod").await;
    assert_eq!(c["environments"], json!(["stage", "prod"]));
    let rows = c["workloads"].as_array().expect("workloads");
    assert_eq!(rows.len(), 2, "{c}");
    let (cart, checkout) = (&rows[0], &rows[1]);
    assert_eq!(cart["workload"], "cart");
    assert_eq!(cart["differs"], true, "cart is missing from prod");
    assert!(cart["environments"]["prod"].is_null());
    assert_eq!(checkout["differs"], true);
    assert_eq!(
        checkout["environments"]["stage"]["desired_versions"],
        json!(["1.2"])
    );
    assert_eq!(
        checkout["environments"]["prod"]["desired_versions"],
        json!(["1.1"])
    );
    assert_eq!(
        checkout["environments"]["prod"]["deployed_versions"],
        json!(["1.1"])
    );
    assert_eq!(
        checkout["environments"]["stage"]["deployed_versions"],
        json!(["1.1", "1.2"])
    );
    assert_eq!(
        checkout["environments"]["prod"]["targets"][0]["total_hosts"],
        2
    );

    for (query, status) in [
        ("environments=stage", 400),
        ("environments=stage,stage", 400),
        ("environments=stage,nowhere", 404),
        ("", 400),
    ] {
        let (got, body) = app.get(&format!("/api/v1/compare?{query}"), None).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    app.stop().await;
}

async fn drift_names_each_host_and_why(backend: Backend) {
    let (app, _) = estate(backend).await;
    let items = all_pages(&app, "/api/v1/drift?limit=2").await;
    let found: Vec<(String, String, Value)> = items
        .iter()
        .map(|d| {
            (
                d["host"].as_str().unwrap_or("?").to_owned(),
                d["workload"].as_str().unwrap_or("?").to_owned(),
                d["drift"].clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("p2".into(), "checkout".into(), json!(["stale"])),
            ("s1".into(), "cart".into(), json!(["no_desired_state"])),
            ("s3".into(), "checkout".into(), json!(["wrong_revision"])),
            ("s4".into(), "checkout".into(), json!(["failed"])),
        ]
    );
    assert_eq!(items[2]["desired"]["version"], "1.2");
    assert_eq!(items[2]["version"], "1.1");
    let prod = get_ok(&app, "/api/v1/drift?environment=prod").await;
    assert_eq!(prod["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(prod["items"][0]["host"], "p2");
    let (status, body) = app.get("/api/v1/drift?cursor=00", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_query"))
    );
    app.stop().await;
}

async fn host_view_lists_everything_a_host_runs(backend: Backend) {
    let (app, t) = estate(backend).await;
    let s1 = get_ok(&app, "/api/v1/hosts/s1").await;
    assert_eq!(s1["host"], "s1");
    assert_eq!(s1["stale"], false);
    assert_eq!(
        s1["last_seen_at"],
        json!(UnixNanos(i64::try_from(t - 10 * S).expect("fits")).to_rfc3339())
    );
    let deployments = s1["deployments"].as_array().expect("deployments");
    assert_eq!(deployments.len(), 2, "{s1}");
    let by_workload = |w: &str| {
        deployments
            .iter()
            .find(|d| d["workload"] == w)
            .unwrap_or_else(|| panic!("no {w} in {s1}"))
    };
    let checkout = by_workload("checkout");
    assert_eq!(
        (
            &checkout["version"],
            &checkout["in_sync"],
            &checkout["drift"]
        ),
        (&json!("1.2"), &json!(true), &json!([]))
    );
    assert_eq!(checkout["environment"], "stage");
    assert_eq!(by_workload("cart")["drift"], json!(["no_desired_state"]));
    let p2 = get_ok(&app, "/api/v1/hosts/p2").await;
    assert_eq!(p2["stale"], true);
    let (status, body) = app.get("/api/v1/hosts/nobody", None).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    app.stop().await;
}

async fn history_is_newest_first_with_desired_host_counts(backend: Backend) {
    let (app, t) = estate(backend).await;
    let path = "/api/v1/history?workload=checkout&environment=stage";
    let entries = get_ok(&app, path).await["items"]
        .as_array()
        .expect("items")
        .clone();
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["kind"].as_str().unwrap_or("?"),
                e["host"].as_str().or(e["version"].as_str()).unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "observed:s4",
            "observed:s3",
            "observed:s2",
            "observed:s1",
            "desired:1.2",
            "desired:1.1"
        ]
    );
    assert_eq!(
        entries[4]["hosts"],
        json!({"succeeded": 1, "failed": 1, "in_progress": 1})
    );
    assert_eq!(
        entries[5]["hosts"],
        json!({"succeeded": 1, "failed": 0, "in_progress": 0})
    );
    assert_eq!(
        entries[1]["version"], "1.1",
        "an observed revision shows its version"
    );

    // Paging returns the same entries in the same order.
    let paged = all_pages(&app, &format!("{path}&limit=4")).await;
    assert_eq!(paged, entries);

    let s3 = get_ok(&app, "/api/v1/history?host=s3").await;
    assert_eq!(s3["items"].as_array().map(Vec::len), Some(1));
    let since = UnixNanos(i64::try_from(t - 500 * S).expect("fits")).to_rfc3339();
    let recent = get_ok(&app, &format!("{path}&since={since}")).await;
    assert_eq!(
        recent["items"].as_array().map(Vec::len),
        Some(5),
        "{recent}"
    );
    let week = get_ok(&app, &format!("{path}&since=7d")).await;
    assert_eq!(week["items"].as_array().map(Vec::len), Some(6));
    let (status, body) = app.get(&format!("{path}&since=yesterday"), None).await;
    assert_eq!(status, 400, "{body}");
    app.stop().await;
}

async fn catalog_lists_page_and_filter(backend: Backend) {
    let (app, _) = estate_with(backend, |c| {
        c.environments = vec!["stage".into(), "prod".into()];
    })
    .await;
    let envs = all_pages(&app, "/api/v1/environments?limit=1").await;
    assert_eq!(
        envs,
        [
            json!({"name": "stage", "targets": 2, "hosts": 4}),
            json!({"name": "prod", "targets": 1, "hosts": 2}),
        ],
        "configured order, not the alphabet"
    );
    let apps = get_ok(&app, "/api/v1/applications").await;
    assert_eq!(
        apps["items"],
        json!([{"workspace": "default", "application": "shop", "workloads": 2}])
    );
    let workloads = all_pages(&app, "/api/v1/workloads?limit=1").await;
    let w: Vec<(Value, Value, Value)> = workloads
        .iter()
        .map(|w| {
            (
                w["workload"].clone(),
                w["environments"].clone(),
                w["targets"].clone(),
            )
        })
        .collect();
    assert_eq!(
        w,
        [
            (json!("cart"), json!(1), json!(1)),
            (json!("checkout"), json!(2), json!(2)),
        ]
    );
    let targets = all_pages(&app, "/api/v1/targets?limit=2").await;
    let t: Vec<(Value, Value, Value)> = targets
        .iter()
        .map(|t| {
            (
                t["workload"].clone(),
                t["environment"].clone(),
                t["hosts"].clone(),
            )
        })
        .collect();
    assert_eq!(
        t,
        [
            (json!("cart"), json!("stage"), json!(1)),
            (json!("checkout"), json!("prod"), json!(2)),
            (json!("checkout"), json!("stage"), json!(4)),
        ]
    );
    let on_p1 = get_ok(&app, "/api/v1/targets?host=p1").await;
    assert_eq!(on_p1["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(on_p1["items"][0]["environment"], "prod");
    let stage = get_ok(
        &app,
        "/api/v1/workloads?environment=stage&workload=checkout",
    )
    .await;
    assert_eq!(stage["items"][0]["targets"], 1);
    // A cursor from another list is refused.
    let page = get_ok(&app, "/api/v1/targets?limit=1").await;
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (status, body) = app
        .get(&format!("/api/v1/workloads?cursor={cursor}"), None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_query"))
    );
    app.stop().await;
}

/// `observed` with `sextant.job.id`.
fn observed_by(host: &str, revision: &str, status: &str, time: u64, job: Option<&str>) -> Value {
    let mut record = observed(host, ("shop", "web", "prod", "eu"), revision, status, time);
    if let Some(job) = job {
        record["attributes"]
            .as_array_mut()
            .expect("attributes")
            .push(crate::helpers::kv("sextant.job.id", job));
    }
    record
}

/// The host view names the orchestrator job behind the last change, and
/// the host page links it to the configured orchestrator: a heartbeat
/// without the job keeps it, a change made without a job clears it.
async fn host_view_links_the_job_that_last_changed_the_host(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.orchestrator_url = Some("http://orchestrator.example:8081/api/v1".into());
    })
    .await;
    let t = now();
    let job_of = |body: &Value| body["deployments"][0]["job"].clone();
    app.send_logs(&logs(vec![
        observed_by("h1", "r1", "in_progress", t - 30 * S, Some("job-a")),
        observed_by("h1", "r1", "succeeded", t - 29 * S, Some("job-a")),
    ]))
    .await;
    assert_eq!(
        job_of(&get_ok(&app, "/api/v1/hosts/h1").await),
        json!("job-a")
    );
    let (status, page) = app.get("/hosts/h1", None).await;
    assert_eq!(status, 200);
    let page = page.as_str().expect("html").to_owned();
    assert!(page.contains("Changed by"), "{page}");
    assert!(
        page.contains(r#"href="http://orchestrator.example:8081/jobs/job-a""#),
        "{page}"
    );

    // A heartbeat that does not carry the job keeps it; so does a late
    // report.
    app.send_logs(&logs(vec![
        observed_by("h1", "r1", "succeeded", t - 20 * S, None),
        observed_by("h1", "r0", "succeeded", t - 40 * S, Some("job-old")),
    ]))
    .await;
    assert_eq!(
        job_of(&get_ok(&app, "/api/v1/hosts/h1").await),
        json!("job-a")
    );

    // A new job's change replaces it; a change with no job clears it.
    app.send_logs(&logs(vec![observed_by(
        "h1",
        "r2",
        "succeeded",
        t - 10 * S,
        Some("job-b"),
    )]))
    .await;
    assert_eq!(
        job_of(&get_ok(&app, "/api/v1/hosts/h1").await),
        json!("job-b")
    );
    app.send_logs(&logs(vec![observed_by(
        "h1",
        "r3",
        "succeeded",
        t - 5 * S,
        None,
    )]))
    .await;
    let h1 = get_ok(&app, "/api/v1/hosts/h1").await;
    assert_eq!(h1["deployments"][0].get("job"), None, "{h1}");
    let (_, page) = app.get("/hosts/h1", None).await;
    assert!(!page.as_str().expect("html").contains("/jobs/"), "{page}");
    app.stop().await;
}

on_both_backends!(
    host_view_links_the_job_that_last_changed_the_host,
    catalog_lists_page_and_filter,
    environment_state_groups_versions_with_host_counts,
    compare_shows_where_environments_differ,
    drift_names_each_host_and_why,
    host_view_lists_everything_a_host_runs,
    history_is_newest_first_with_desired_host_counts,
);
