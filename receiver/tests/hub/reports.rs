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

/// Compare answers a page of workloads at a time (issue 18: three
/// environments of 30,000 targets made a 24–28 MB answer); the pages
/// together are the whole comparison.
async fn compare_answers_in_pages(backend: Backend) {
    let (app, _) = estate(backend).await;
    let whole = get_ok(&app, "/api/v1/compare?environments=stage,prod").await;
    assert_eq!(whole["next_cursor"], Value::Null, "{whole}");
    let first = get_ok(&app, "/api/v1/compare?environments=stage,prod&limit=1").await;
    let rows = first["workloads"].as_array().expect("workloads");
    assert_eq!(rows.len(), 1, "{first}");
    assert_eq!(rows[0]["workload"], "cart");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get_ok(
        &app,
        &format!("/api/v1/compare?environments=stage,prod&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    let mut paged = first["workloads"].as_array().cloned().unwrap_or_default();
    paged.extend(second["workloads"].as_array().cloned().unwrap_or_default());
    assert_eq!(Value::Array(paged), whole["workloads"]);
    for query in ["limit=0", "limit=1001", "cursor=zz"] {
        let (got, body) = app
            .get(
                &format!("/api/v1/compare?environments=stage,prod&{query}"),
                None,
            )
            .await;
        assert_eq!(got, 400, "{query}: {body}");
    }
    app.stop().await;
}

/// Environment state answers a page of whole workloads when asked
/// (`limit`, `cursor`), the next page's address in a `Link` header (issue
/// 18: 10,000 targets read after every change); unasked, the whole
/// environment as before. Workloads with no target in the environment take
/// no room in a page.
async fn environment_state_answers_in_pages(backend: Backend) {
    let (app, _) = estate(backend).await;
    let get = |path: String| {
        let (client, api) = (app.client.clone(), app.api);
        async move {
            let res = client
                .get(format!("http://{api}{path}"))
                .send()
                .await
                .expect("API request");
            let status = res.status().as_u16();
            let link = res
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = res.json().await.expect("json");
            (status, link, body)
        }
    };
    let (status, link, whole) = get("/api/v1/environments/stage/state".into()).await;
    assert_eq!((status, &link), (200, &None), "{whole}");
    assert_eq!(whole.as_array().map(Vec::len), Some(2), "{whole}");
    let (status, link, first) =
        get("/api/v1/environments/stage/state?limit=1&source=otlp".into()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first[0]["workload"], "cart");
    let link = link.expect("a Link header to the next page");
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("not a next link: {link}"));
    assert!(
        next.starts_with("/api/v1/environments/stage/state?source=otlp&limit=1&cursor="),
        "{next}"
    );
    let (status, link, second) = get(next.to_owned()).await;
    assert_eq!((status, &link), (200, &None), "{second}");
    let mut paged = first.as_array().cloned().unwrap_or_default();
    paged.extend(second.as_array().cloned().unwrap_or_default());
    let (_, _, whole_agent) = get("/api/v1/environments/stage/state?source=otlp".into()).await;
    assert_eq!(Value::Array(paged), whole_agent);
    // prod has checkout only: cart takes no room in its page.
    let (status, link, prod) = get("/api/v1/environments/prod/state?limit=1".into()).await;
    assert_eq!((status, &link), (200, &None), "{prod}");
    assert_eq!(prod.as_array().map(Vec::len), Some(1), "{prod}");
    assert_eq!(prod[0]["workload"], "checkout");
    let (status, link, none) = get("/api/v1/environments/qa/state?limit=5".into()).await;
    assert_eq!((status, link, none), (200, None, json!([])));
    for query in ["limit=0", "limit=1001", "cursor=zz"] {
        let (status, _, body) = get(format!("/api/v1/environments/stage/state?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{body}");
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

/// Three environments: `api` runs 2.0 everywhere (prod in two targets),
/// `web` is ahead in dev, `db` is promoted everywhere but prod's host
/// still runs the old revision, `cart` never reached prod.
async fn compare_three_environments_cell_by_cell(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let t = now();
    let at = |w, e, tg| ("shop", w, e, tg);
    let mut records = Vec::new();
    for (env, target, host) in [
        ("dev", "eu", "d1"),
        ("stage", "eu", "s1"),
        ("prod", "eu", "p1"),
        ("prod", "us", "p2"),
    ] {
        records.push(desired(at("api", env, target), "2.0", "api2", t - 100 * S));
        records.push(observed(
            host,
            at("api", env, target),
            "api2",
            "succeeded",
            t - 10 * S,
        ));
    }
    for (env, host, version, revision) in [
        ("dev", "d1", "3.1", "web31"),
        ("stage", "s1", "3.0", "web30"),
        ("prod", "p1", "3.0", "web30"),
    ] {
        records.push(desired(
            at("web", env, "eu"),
            version,
            revision,
            t - 100 * S,
        ));
        records.push(observed(
            host,
            at("web", env, "eu"),
            revision,
            "succeeded",
            t - 10 * S,
        ));
    }
    records.push(desired(at("db", "prod", "eu"), "0.9", "db09", t - 200 * S));
    records.push(observed(
        "p1",
        at("db", "prod", "eu"),
        "db09",
        "succeeded",
        t - 150 * S,
    ));
    for (env, host) in [("dev", "d1"), ("stage", "s1"), ("prod", "p1")] {
        records.push(desired(at("db", env, "eu"), "1.0", "db10", t - 100 * S));
        if env != "prod" {
            records.push(observed(
                host,
                at("db", env, "eu"),
                "db10",
                "succeeded",
                t - 10 * S,
            ));
        }
    }
    for env in ["dev", "stage"] {
        records.push(desired(at("cart", env, "eu"), "5.0", "cart5", t - 100 * S));
    }
    app.send_logs(&logs(records)).await;

    let c = get_ok(&app, "/api/v1/compare?environments=dev,stage,prod").await;
    assert_eq!(c["environments"], json!(["dev", "stage", "prod"]));
    let rows = c["workloads"].as_array().expect("workloads");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["workload"].as_str()).collect();
    assert_eq!(names, ["api", "cart", "db", "web"], "{c}");
    let row = |w: &str| rows.iter().find(|r| r["workload"] == w).expect("row");
    let cell = |w: &str, e: &str| {
        let c = &row(w)["environments"][e];
        (
            c["desired_versions"].clone(),
            c["deployed_versions"].clone(),
        )
    };
    let v = |x: &[&str]| json!(x);

    // The same everywhere, across two targets in prod.
    assert_eq!(row("api")["differs"], false, "{c}");
    for env in ["dev", "stage", "prod"] {
        assert_eq!(cell("api", env), (v(&["2.0"]), v(&["2.0"])), "{env}");
    }
    let prod_targets: Vec<(Value, Value, Value)> = row("api")["environments"]["prod"]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["target"].clone(),
                t["desired"]["version"].clone(),
                t["total_hosts"].clone(),
            )
        })
        .collect();
    assert_eq!(
        prod_targets,
        [
            (json!("eu"), json!("2.0"), json!(1)),
            (json!("us"), json!("2.0"), json!(1))
        ]
    );

    // Only the first environment differs.
    assert_eq!(row("web")["differs"], true);
    assert_eq!(cell("web", "dev"), (v(&["3.1"]), v(&["3.1"])));
    assert_eq!(cell("web", "stage"), (v(&["3.0"]), v(&["3.0"])));
    assert_eq!(cell("web", "prod"), (v(&["3.0"]), v(&["3.0"])));

    // Only the third environment differs, and only in what runs there.
    assert_eq!(row("db")["differs"], true);
    assert_eq!(cell("db", "dev"), (v(&["1.0"]), v(&["1.0"])));
    assert_eq!(cell("db", "stage"), (v(&["1.0"]), v(&["1.0"])));
    assert_eq!(cell("db", "prod"), (v(&["1.0"]), v(&["0.9"])));

    // Missing from the third environment.
    assert_eq!(row("cart")["differs"], true);
    assert_eq!(cell("cart", "dev"), (v(&["5.0"]), v(&[])));
    assert!(row("cart")["environments"]["prod"].is_null(), "{c}");

    // Two of the three agree on everything but web.
    let c = get_ok(&app, "/api/v1/compare?environments=stage,prod&workload=web").await;
    assert_eq!(c["workloads"][0]["differs"], false, "{c}");
    app.stop().await;
}

/// `record` in `workspace`.
fn in_workspace(mut record: Value, workspace: &str) -> Value {
    record["attributes"]
        .as_array_mut()
        .expect("attributes")
        .push(crate::helpers::kv("sextant.workspace", workspace));
    record
}

/// checkout in prod, four ways, each with one drifting host: shop/eu
/// (h-eu failed), shop/us (h-us on an old revision), the blog application's
/// checkout (h-blog) and the team2 workspace's shop (h-t2).
async fn filtered_estate(backend: Backend) -> (TestApp, u64) {
    let app = spawn_app_with(backend, |_| {}).await;
    let t = now();
    let (eu, us) = (
        ("shop", "checkout", "prod", "eu"),
        ("shop", "checkout", "prod", "us"),
    );
    let blog = ("blog", "checkout", "prod", "eu");
    app.send_logs(&logs(vec![
        desired(eu, "1.0", "r1", t - 300 * S),
        desired(us, "1.0", "r1", t - 300 * S),
        desired(blog, "2.0", "b2", t - 250 * S),
        in_workspace(desired(eu, "9.0", "x9", t - 220 * S), "team2"),
        observed("h-eu", eu, "r1", "failed", t - 200 * S),
        observed("h-blog", blog, "b1", "succeeded", t - 150 * S),
        in_workspace(
            observed("h-t2", eu, "x8", "succeeded", t - 120 * S),
            "team2",
        ),
        observed("h-us", us, "r0", "succeeded", t - 10 * S),
    ]))
    .await;
    (app, t)
}

fn field<'a>(items: &'a [Value], name: &str) -> Vec<&'a str> {
    items
        .iter()
        .map(|i| i[name].as_str().unwrap_or("?"))
        .collect()
}

/// History's `until` closes the time range; `target` (and the other
/// filters) narrow it.
async fn history_until_and_target_narrow_the_timeline(backend: Backend) {
    let (app, t) = filtered_estate(backend).await;
    let at = |back: u64| UnixNanos(i64::try_from(t - back * S).expect("fits")).to_rfc3339();
    let page = |q: String| {
        let app = &app;
        async move {
            let body = get_ok(app, &format!("/api/v1/history?workload=checkout{q}")).await;
            body["items"].as_array().expect("items").clone()
        }
    };
    let all = page(String::new()).await;
    assert_eq!(all.len(), 8, "{all:?}");

    // until alone: everything up to that time, newest first.
    let early = page(format!("&until={}", at(230))).await;
    let early: Vec<(&str, &str, &str)> = early
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("?"),
                e["application"].as_str().unwrap_or("?"),
                e["target"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    let mut sorted = early.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("desired", "blog", "eu"),
            ("desired", "shop", "eu"),
            ("desired", "shop", "us")
        ]
    );
    assert_eq!(early[0].1, "blog", "newest first: {early:?}");
    // since and until together: a window.
    let window = page(format!("&since={}&until={}", at(260), at(180))).await;
    let versions: Vec<(&str, &str)> = window
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("?"),
                e["version"].as_str().or(e["host"].as_str()).unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [("observed", "1.0"), ("desired", "9.0"), ("desired", "2.0")],
        "{window:?}"
    );
    assert_eq!(window[0]["host"], "h-eu");
    // until as a duration back from now: everything here is newer.
    assert!(page("&until=1h".into()).await.is_empty());
    let (status, body) = app.get("/api/v1/history?until=tomorrow", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_query"))
    );

    // target.
    let us = page("&target=us".into()).await;
    assert_eq!(field(&us, "kind"), ["observed", "desired"], "{us:?}");
    assert_eq!(field(&us, "target"), ["us", "us"]);
    assert_eq!(us[0]["host"], "h-us");
    let eu = page("&target=eu".into()).await;
    assert_eq!(eu.len(), 6, "{eu:?}");
    assert!(eu.iter().all(|e| e["target"] == "eu"), "{eu:?}");
    // workspace and application.
    let team2 = page("&workspace=team2".into()).await;
    assert_eq!(field(&team2, "workspace"), ["team2", "team2"]);
    assert_eq!(team2[0]["host"], "h-t2");
    let blog = page("&application=blog".into()).await;
    assert_eq!(field(&blog, "application"), ["blog", "blog"]);
    assert_eq!(blog[0]["host"], "h-blog");
    let default = page("&workspace=default".into()).await;
    assert_eq!(default.len(), 6);
    app.stop().await;
}

/// `workspace`, `application` and `target` each exclude rows from the
/// lists, the host list, state and drift.
async fn list_filters_exclude_rows(backend: Backend) {
    let (app, _) = filtered_estate(backend).await;
    let items = |path: &'static str| {
        let app = &app;
        async move { all_pages(app, path).await }
    };

    // Drift: four drifting hosts, one per filter.
    assert_eq!(
        field(&items("/api/v1/drift").await, "host"),
        ["h-blog", "h-eu", "h-t2", "h-us"]
    );
    assert_eq!(
        field(&items("/api/v1/drift?workspace=team2").await, "host"),
        ["h-t2"]
    );
    assert_eq!(
        field(&items("/api/v1/drift?workspace=default").await, "host"),
        ["h-blog", "h-eu", "h-us"]
    );
    assert_eq!(
        field(&items("/api/v1/drift?application=blog").await, "host"),
        ["h-blog"]
    );
    assert_eq!(
        field(&items("/api/v1/drift?target=us").await, "host"),
        ["h-us"]
    );
    assert_eq!(
        field(
            &items("/api/v1/drift?application=shop&target=eu").await,
            "host"
        ),
        ["h-eu", "h-t2"]
    );

    // Hosts.
    assert_eq!(
        field(&items("/api/v1/hosts").await, "host"),
        ["h-blog", "h-eu", "h-t2", "h-us"]
    );
    assert_eq!(
        field(&items("/api/v1/hosts?workspace=team2").await, "host"),
        ["h-t2"]
    );
    assert_eq!(
        field(&items("/api/v1/hosts?application=blog").await, "host"),
        ["h-blog"]
    );
    assert_eq!(
        field(&items("/api/v1/hosts?target=us").await, "host"),
        ["h-us"]
    );

    // Catalog lists.
    let apps = items("/api/v1/applications").await;
    assert_eq!(field(&apps, "application"), ["blog", "shop", "shop"]);
    let team2 = items("/api/v1/applications?workspace=team2").await;
    assert_eq!(
        team2,
        [json!({"workspace": "team2", "application": "shop", "workloads": 1})]
    );
    let blog = items("/api/v1/workloads?application=blog").await;
    assert_eq!(field(&blog, "application"), ["blog"]);
    assert_eq!(items("/api/v1/workloads").await.len(), 3);
    let us = items("/api/v1/targets?target=us").await;
    assert_eq!(field(&us, "target"), ["us"]);
    assert_eq!(us[0]["hosts"], 1);
    assert_eq!(items("/api/v1/targets").await.len(), 4);
    assert_eq!(
        items("/api/v1/environments?workspace=team2").await,
        [json!({"name": "prod", "targets": 1, "hosts": 1})]
    );
    assert_eq!(
        items("/api/v1/environments?target=eu").await,
        [json!({"name": "prod", "targets": 3, "hosts": 3})]
    );

    // State.
    let state = get_ok(&app, "/api/v1/state").await;
    assert_eq!(state.as_array().map(Vec::len), Some(4), "{state}");
    for (query, expect) in [
        ("workspace=team2", ("team2", "shop", "eu")),
        ("application=blog", ("default", "blog", "eu")),
        ("target=us", ("default", "shop", "us")),
    ] {
        let rows = get_ok(&app, &format!("/api/v1/state?{query}")).await;
        let rows = rows.as_array().expect("rows");
        assert_eq!(rows.len(), 1, "{query}: {rows:?}");
        let r = &rows[0];
        assert_eq!(
            (
                r["workspace"].as_str(),
                r["application"].as_str(),
                r["target"].as_str()
            ),
            (Some(expect.0), Some(expect.1), Some(expect.2)),
            "{query}"
        );
    }
    app.stop().await;
}

/// A host that reported 60 s ago is fresh by the default threshold (90 s)
/// and stale with `stale_after_seconds = 30`.
async fn a_shorter_stale_threshold_makes_hosts_stale_sooner(backend: Backend) {
    async fn seeded(app: &TestApp) {
        let t = now();
        let at = ("shop", "checkout", "prod", "eu");
        app.send_logs(&logs(vec![
            desired(at, "1.0", "r1", t - 300 * S),
            observed("fresh", at, "r1", "succeeded", t),
            observed("quiet", at, "r1", "succeeded", t - 60 * S),
        ]))
        .await;
    }
    let default = spawn_app_with(backend, |_| {}).await;
    seeded(&default).await;
    assert_eq!(get_ok(&default, "/api/v1/drift").await["items"], json!([]));
    let hosts = get_ok(&default, "/api/v1/hosts").await;
    assert_eq!(hosts["items"][1]["stale"], false, "{hosts}");
    default.stop().await;

    let app = spawn_app_with(backend, |c| c.stale_after_seconds = 30).await;
    seeded(&app).await;
    let drift = get_ok(&app, "/api/v1/drift").await;
    let found: Vec<(Value, Value)> = drift["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| (d["host"].clone(), d["drift"].clone()))
        .collect();
    assert_eq!(found, [(json!("quiet"), json!(["stale"]))], "{drift}");
    let hosts = get_ok(&app, "/api/v1/hosts").await;
    let stale: Vec<(Value, Value)> = hosts["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| (h["host"].clone(), h["stale"].clone()))
        .collect();
    assert_eq!(
        stale,
        [
            (json!("fresh"), json!(false)),
            (json!("quiet"), json!(true))
        ]
    );
    assert_eq!(get_ok(&app, "/api/v1/hosts/quiet").await["stale"], true);
    let (_, page) = app.get("/drift", None).await;
    let page = page.as_str().expect("html");
    assert!(
        page.contains("quiet") && !page.contains(">fresh<"),
        "{page}"
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
    assert!(page.contains(r#"href="/jobs/job-a""#), "{page}");

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

/// A desired event's origin (promotion, job, approver, and the trace
/// context in the record's own fields) reaches every row that shows the
/// desired state: drift, host, history, state; with links to the
/// orchestrator. A trace id of the wrong length rejects its record alone.
async fn rows_say_what_set_their_desired_state(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.orchestrator_url = Some("http://orchestrator.example:8081".into());
        c.trace_url_template = "http://tempo.example/trace/{trace_id}".into();
        c.logs_url_template =
            "http://loki.example/?q={service}%7C{trace_id}&from={from}&to={to}".into();
    })
    .await;
    let t = now();
    let at = ("shop", "web", "prod", "eu");
    let mut set = desired(at, "v2", "r2", t - 20 * S);
    let attrs = set["attributes"].as_array_mut().expect("attributes");
    attrs.push(crate::helpers::kv("sextant.promotion.id", "prom-1"));
    attrs.push(crate::helpers::kv("sextant.job.id", "job-1"));
    attrs.push(crate::helpers::kv("sextant.approver", "alice, bob"));
    set["traceId"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
    set["spanId"] = json!("00f067aa0ba902b7");
    let mut request = logs(vec![set, observed("h1", at, "r1", "succeeded", t - 10 * S)]);
    request["resourceLogs"][0]["resource"]["attributes"] =
        json!([crate::helpers::kv("service.name", "sextant-orchestrator")]);
    app.send_logs(&request).await;
    // The links' window: five minutes either side of the assignment.
    let ms = (t - 20 * S) as i64 / 1_000_000;
    let (from, to) = (ms - 300_000, ms + 300_000);
    let want = json!({
        "promotion": "prom-1",
        "job": "job-1",
        "approved_by": "alice, bob",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "job_url": "http://orchestrator.example:8081/jobs/job-1",
        "promotion_url": "http://orchestrator.example:8081/api/v1/promotions/prom-1",
        "service": "sextant-orchestrator",
        "trace_url": "http://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736",
        "logs_url": format!(
            "http://loki.example/?q=sextant-orchestrator%7C4bf92f3577b34da6a3ce929d0e0e4736&from={from}&to={to}"
        ),
    });
    let drift = get_ok(&app, "/api/v1/drift").await;
    assert_eq!(drift["items"][0]["desired"]["origin"], want, "{drift}");
    let host = get_ok(&app, "/api/v1/hosts/h1").await;
    assert_eq!(host["deployments"][0]["desired"]["origin"], want, "{host}");
    let state = get_ok(&app, "/api/v1/state").await;
    assert_eq!(state[0]["desired"]["origin"], want, "{state}");
    let history = get_ok(&app, "/api/v1/history").await;
    let set = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["kind"] == "desired")
        .expect("the desired entry");
    assert_eq!(set["origin"], want, "{history}");

    for path in ["/drift", "/hosts/h1", "/workloads/web/history"] {
        let (status, page) = app.get(path, None).await;
        assert_eq!(status, 200, "{path}");
        let page = page.as_str().expect("html");
        for needle in [
            // The job and the promotion open their pages in the hub's own
            // UI (the API's `job_url`/`promotion_url` above are for API
            // readers).
            r#"href="/jobs/job-1""#,
            r#"href="/promotions/prom-1""#,
            "approved by ",
            "alice, bob",
            r#"href="http://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736""#,
            "http://loki.example/?q=sextant-orchestrator%7C4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert!(page.contains(needle), "{path} lacks {needle}: {page}");
        }
    }

    // An assignment that says nothing of its origin has none.
    app.send_logs(&logs(vec![desired(at, "v3", "r3", t - 5 * S)]))
        .await;
    let drift = get_ok(&app, "/api/v1/drift").await;
    assert_eq!(drift["items"][0]["desired"]["version"], "v3");
    assert_eq!(drift["items"][0]["desired"].get("origin"), None, "{drift}");

    // A trace id of 8 bytes is refused with its field named; the record
    // beside it is kept.
    let mut bad = desired(at, "v4", "r4", t - 4 * S);
    bad["traceId"] = json!("00f067aa0ba902b7");
    let res = app
        .post_json(
            "logs",
            &logs(vec![bad, observed("h2", at, "r3", "succeeded", t - 3 * S)]),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 1,
        "{answer}"
    );
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("record field `trace_id` is 8 bytes; it must be 16"),
        "{message}"
    );
    assert_eq!(
        get_ok(&app, "/api/v1/hosts/h2").await["deployments"][0]["revision"],
        "r3"
    );
    app.stop().await;
}

on_both_backends!(
    rows_say_what_set_their_desired_state,
    history_until_and_target_narrow_the_timeline,
    list_filters_exclude_rows,
    a_shorter_stale_threshold_makes_hosts_stale_sooner,
    compare_three_environments_cell_by_cell,
    host_view_links_the_job_that_last_changed_the_host,
    catalog_lists_page_and_filter,
    environment_state_groups_versions_with_host_counts,
    compare_shows_where_environments_differ,
    compare_answers_in_pages,
    environment_state_answers_in_pages,
    drift_names_each_host_and_why,
    host_view_lists_everything_a_host_runs,
    history_is_newest_first_with_desired_host_counts,
);

/// A link template with a placeholder the hub does not know stops it at
/// start, naming the setting; an empty one turns its links off.
#[tokio::test]
async fn a_bad_link_template_is_refused_at_start() {
    let db = crate::helpers::TestDb::new(Backend::Sqlite).await;
    let config = crate::helpers::hub_config(&db, |c| {
        c.logs_url_template = "http://loki.example/?q={trace}".into();
    });
    let error = match sextant_receiver::app::Application::build(&config).await {
        Ok(_) => panic!("a hub with an unknown placeholder started"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.starts_with("logs_url_template:") && error.contains("{trace}"),
        "{error}"
    );
    let config = crate::helpers::hub_config(&db, |c| {
        c.trace_url_template = String::new();
        c.logs_url_template = " ".into();
    });
    assert!(
        sextant_receiver::app::Application::build(&config)
            .await
            .is_ok()
    );
}
