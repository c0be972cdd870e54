//! DORA's metrics (`GET /api/v1/insights/dora`, the `sextant_dora_*`
//! gauges) on hand-built histories whose figures are worked out here, on
//! both backends (docs/insights.md has the definitions).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sextant_model::UnixNanos;

use crate::helpers::{At, Backend, TestApp, kv, logs, on_both_backends, spawn_app, spawn_app_with};

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

const CHECKOUT: At<'static> = ("shop", "checkout", "prod", "eu");
const CART: At<'static> = ("shop", "cart", "prod", "eu");

/// A Monday's UTC midnight two to three weeks back: the window's start,
/// so that its days and its week are whole buckets.
fn monday() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let now = u64::try_from(now).expect("fits") - 14 * DAY;
    // 1970-01-05 was a Monday.
    now - (now - 4 * DAY) % (7 * DAY)
}

fn rfc3339(t: u64) -> String {
    UnixNanos(i64::try_from(t).expect("fits")).to_rfc3339()
}

fn placement((app, workload, env, target): At<'_>) -> Vec<Value> {
    vec![
        kv("sextant.application", app),
        kv("sextant.workload", workload),
        kv("deployment.environment.name", env),
        kv("sextant.target", target),
    ]
}

/// An observed report, with a commit time when given.
fn report(host: &str, at: At<'_>, revision: &str, status: &str, time: u64) -> Value {
    report_with(host, at, revision, status, time, None)
}

fn report_with(
    host: &str,
    at: At<'_>,
    revision: &str,
    status: &str,
    time: u64,
    commit: Option<u64>,
) -> Value {
    let mut attrs = placement(at);
    attrs.push(kv("host.name", host));
    attrs.push(kv("sextant.revision", revision));
    attrs.push(kv("deployment.status", status));
    if let Some(c) = commit {
        attrs.push(kv("sextant.commit.time", &rfc3339(c)));
    }
    json!({"eventName": "sextant.deployment.observed", "timeUnixNano": time.to_string(), "attributes": attrs})
}

/// A desired assignment carrying a commit time.
fn assigned(at: At<'_>, revision: &str, time: u64, commit: u64) -> Value {
    let mut attrs = placement(at);
    attrs.push(kv("service.version", revision));
    attrs.push(kv("sextant.revision", revision));
    attrs.push(kv("sextant.commit.time", &rfc3339(commit)));
    json!({"eventName": "sextant.deployment.desired", "timeUnixNano": time.to_string(), "attributes": attrs})
}

/// checkout/prod/eu on hosts h1 and h2, from day `d` (a Monday):
/// - r1 is the baseline (first revision seen): no deployment;
/// - r2 at d+1d, committed at d+1d-1h (given on its desired event): both
///   hosts succeed, h1 first at +10 min: lead time 1 h 10 min = 4200 s;
/// - r3 at d+2d, no commit time (lead time from its first sighting, the
///   in_progress report at d+2d): h1 fails at +5 min, h2 succeeds at
///   +6 min: lead time 360 s, failed at +5 min;
/// - h1 goes back to r2 at d+2d+30min: a rollback, a deployment that is
///   rework and recovers r3 after 25 min = 1500 s (and no lead time: it
///   delivers no new change);
/// - r4 at d+4d, committed at d+3d (given on the observed report), fails
///   at +2 min and is never recovered nor succeeds.
fn checkout_history(d: u64) -> Vec<Value> {
    vec![
        report("h1", CHECKOUT, "r1", "succeeded", d),
        report("h2", CHECKOUT, "r1", "succeeded", d + S),
        assigned(CHECKOUT, "r2", d + DAY - 30 * MIN, d + DAY - HOUR),
        report("h1", CHECKOUT, "r2", "in_progress", d + DAY),
        report("h2", CHECKOUT, "r2", "in_progress", d + DAY + MIN),
        report("h1", CHECKOUT, "r2", "succeeded", d + DAY + 10 * MIN),
        report("h2", CHECKOUT, "r2", "succeeded", d + DAY + 20 * MIN),
        report("h1", CHECKOUT, "r3", "in_progress", d + 2 * DAY),
        report("h1", CHECKOUT, "r3", "failed", d + 2 * DAY + 5 * MIN),
        report("h2", CHECKOUT, "r3", "succeeded", d + 2 * DAY + 6 * MIN),
        report("h1", CHECKOUT, "r2", "succeeded", d + 2 * DAY + 30 * MIN),
        report("h2", CHECKOUT, "r2", "succeeded", d + 2 * DAY + 31 * MIN),
        report_with(
            "h1",
            CHECKOUT,
            "r4",
            "in_progress",
            d + 4 * DAY,
            Some(d + 3 * DAY),
        ),
        report("h1", CHECKOUT, "r4", "failed", d + 4 * DAY + 2 * MIN),
    ]
}

/// The figures of [`checkout_history`] over its week, worked out by hand:
/// four deployments (r2, r3, the rollback to r2, r4).
fn assert_checkout_week(m: &Value) {
    assert_eq!(m["deployments"], 4, "{m}");
    assert_eq!(m["deployments_per_day"], 4.0 / 7.0, "{m}");
    // 4/7 a day: at least weekly, under daily.
    assert_eq!(m["deployment_frequency_band"], "high", "{m}");
    // r2's 4200 s and r3's 360 s; the rollback and r4 (never succeeded)
    // are not measured.
    assert_eq!(m["lead_time_seconds"], 2280.0, "{m}");
    assert_eq!(m["lead_time_deployments"], 2, "{m}");
    assert_eq!(m["lead_time_band"], "elite", "{m}");
    // r3 (a failed report, and undone by the rollback) and r4.
    assert_eq!(m["failed_deployments"], 2, "{m}");
    assert_eq!(m["change_fail_rate"], 0.5, "{m}");
    assert_eq!(m["change_fail_rate_band"], "low", "{m}");
    // r3: failed at +5 min, recovered by the rollback's success at +30 min.
    assert_eq!(m["recovery_time_seconds"], 1500.0, "{m}");
    assert_eq!(m["recovered_failures"], 1, "{m}");
    assert_eq!(m["unrecovered_failures"], 1, "{m}");
    assert_eq!(m["recovery_time_band"], "elite", "{m}");
    // The rollback follows the failed r3.
    assert_eq!(m["rework_deployments"], 1, "{m}");
    assert_eq!(m["rework_rate"], 0.25, "{m}");
}

async fn dora(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/insights/dora?{query}"), None)
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn week(d: u64) -> String {
    format!("since={}&until={}", rfc3339(d), rfc3339(d + 7 * DAY))
}

on_both_backends!(
    each_metric_on_a_history_worked_out_by_hand,
    out_of_order_reports_give_the_in_order_answer,
    no_deployments_give_empty_figures_and_every_bucket,
    groups_break_the_totals_down,
    bad_parameters_are_400,
    gauges_show_the_trailing_30_days,
    gauges_bound_the_environments,
    a_warm_index_follows_every_change,
    an_upgraded_hub_rebuilds_in_the_background,
    a_bad_commit_time_is_refused_per_record,
    the_insights_page_shows_the_five_metrics,
);

/// `/insights` shows the figures the API gives, with their bands, a chart
/// per metric whose bars are the buckets, and the groups; a bad parameter
/// is a 400 page.
async fn the_insights_page_shows_the_five_metrics(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    app.send_logs(&logs(checkout_history(d))).await;
    let (status, page) = app.get(&format!("/insights?{}", week(d)), None).await;
    assert_eq!(status, 200, "{page}");
    let page = page.as_str().expect("html");
    for needle in [
        "Deployment frequency",
        "0.57 / day",
        "4 deployments",
        // Lead time: the median of 4200 s and 360 s.
        "38m 0s",
        "median of 2 deployments",
        "50.0%",
        "2 failed",
        "25m 0s",
        "1 recovered, 1 not",
        "25.0%",
        "1 rework deployments",
        r#"<span class="band high">high</span>"#,
        r#"<span class="band low">low</span>"#,
        r#"<span class="band elite">elite</span>"#,
        // The deployments chart: one bar per day with a figure, titled.
        r#"<figure class="chart" data-metric="deployments">"#,
        "<svg",
        &format!("<title>{}: 2</title>", &rfc3339(d + 2 * DAY)[..10]),
        // The groups table.
        "<td>checkout</td>",
    ] {
        assert!(page.contains(needle), "no {needle:?} in {page}");
    }
    // Seven day bars in the deployments chart (zero-height ones included).
    let deployments = page
        .split(r#"data-metric="deployments">"#)
        .nth(1)
        .expect("the deployments chart");
    let chart = &deployments[..deployments.find("</figure>").expect("end")];
    assert_eq!(chart.matches("<rect").count(), 7, "{chart}");
    let (status, page) = app.get("/insights?bucket=month", None).await;
    assert_eq!(status, 400);
    assert!(
        page.as_str()
            .expect("html")
            .contains("bucket takes day or week"),
        "{page}"
    );
}

async fn each_metric_on_a_history_worked_out_by_hand(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    app.send_logs(&logs(checkout_history(d))).await;
    let r = dora(&app, &week(d)).await;
    assert_checkout_week(&r["totals"]);
    assert_eq!(r["bucket"], "day");
    assert_eq!(r["since"], rfc3339(d));
    // Every day of the week, empty ones included: r2 on day 1, r3 and the
    // rollback on day 2, r4 on day 4.
    let series = r["series"].as_array().expect("series");
    let per_day: Vec<(String, u64)> = series
        .iter()
        .map(|p| {
            (
                p["start"].as_str().expect("start").to_owned(),
                p["deployments"].as_u64().expect("count"),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [0, 1, 2, 0, 1, 0, 0]
        .iter()
        .enumerate()
        .map(|(i, n)| (rfc3339(d + i as u64 * DAY), *n))
        .collect();
    assert_eq!(per_day, expected);
    // Day 2: r3 failed, recovered in 1500 s; the rollback is its rework.
    let day2 = &series[2];
    assert_eq!(day2["failed_deployments"], 1, "{day2}");
    assert_eq!(day2["recovery_time_seconds"], 1500.0, "{day2}");
    assert_eq!(day2["rework_deployments"], 1, "{day2}");
    assert_eq!(day2["deployments_per_day"], 2.0, "{day2}");
    assert_eq!(day2["deployment_frequency_band"], "elite", "{day2}");
    // Day 4: r4 failed, never recovered.
    assert_eq!(series[4]["unrecovered_failures"], 1);
    assert!(series[4]["recovery_time_seconds"].is_null());
    assert!(series[3]["change_fail_rate"].is_null());
    // Weekly: the Monday's one bucket holds the same figures.
    let w = dora(&app, &format!("{}&bucket=week", week(d))).await;
    let weeks = w["series"].as_array().expect("series");
    assert_eq!(weeks.len(), 1, "{w}");
    assert_eq!(weeks[0]["start"], rfc3339(d));
    assert_checkout_week(&weeks[0]);
    // As known on day 3 (until = d+3d): r4 is not yet deployed, and r3 is
    // already recovered.
    let early = dora(
        &app,
        &format!("since={}&until={}", rfc3339(d), rfc3339(d + 3 * DAY)),
    )
    .await;
    let t = &early["totals"];
    assert_eq!(
        (
            &t["deployments"],
            &t["failed_deployments"],
            &t["unrecovered_failures"]
        ),
        (&json!(3), &json!(1), &json!(0)),
        "{t}"
    );
    assert_eq!(t["change_fail_rate"], 1.0 / 3.0, "{t}");
}

async fn out_of_order_reports_give_the_in_order_answer(b: Backend) {
    let in_order = spawn_app(b).await;
    let d = monday();
    in_order.send_logs(&logs(checkout_history(d))).await;
    let expected = dora(&in_order, &week(d)).await;
    assert_checkout_week(&expected["totals"]);
    // The same reports, one request each, newest first, then the first
    // half again (a collector's retry): every one arrives late.
    let shuffled = spawn_app(b).await;
    let mut history = checkout_history(d);
    history.reverse();
    for record in &history {
        shuffled.send_logs(&logs(vec![record.clone()])).await;
    }
    for record in history.iter().take(7) {
        shuffled.send_logs(&logs(vec![record.clone()])).await;
    }
    assert_eq!(dora(&shuffled, &week(d)).await, expected);
    // Interleaved: odd reports first, then the even ones.
    let interleaved = spawn_app(b).await;
    let history = checkout_history(d);
    let (odd, even): (Vec<_>, Vec<_>) = history
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 1);
    interleaved
        .send_logs(&logs(odd.into_iter().map(|(_, r)| r).collect()))
        .await;
    interleaved
        .send_logs(&logs(even.into_iter().map(|(_, r)| r).collect()))
        .await;
    assert_eq!(dora(&interleaved, &week(d)).await, expected);
}

async fn no_deployments_give_empty_figures_and_every_bucket(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    let r = dora(&app, &week(d)).await;
    let t = &r["totals"];
    assert_eq!(t["deployments"], 0, "{t}");
    assert_eq!(t["deployments_per_day"], 0.0, "{t}");
    for figure in [
        "deployment_frequency_band",
        "lead_time_seconds",
        "change_fail_rate",
        "recovery_time_seconds",
        "rework_rate",
    ] {
        assert!(t[figure].is_null(), "{figure}: {t}");
    }
    assert_eq!(r["series"].as_array().map(Vec::len), Some(7), "{r}");
    assert_eq!(r["groups"], json!([]));
    // A target's first revision, however many hosts report it, is its
    // baseline: still no deployment.
    app.send_logs(&logs(vec![
        report("h1", CHECKOUT, "r1", "in_progress", d + HOUR),
        report("h2", CHECKOUT, "r1", "succeeded", d + 2 * HOUR),
        report("h1", CHECKOUT, "r1", "failed", d + 3 * HOUR),
    ]))
    .await;
    let r = dora(&app, &week(d)).await;
    assert_eq!(r["totals"]["deployments"], 0, "{r}");
    assert_eq!(r["groups"], json!([]));
}

async fn groups_break_the_totals_down(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    let mut records = checkout_history(d);
    // cart: baseline c1, then c2 on day 3, which succeeds 2 min later
    // (lead time from its first sighting: 120 s).
    records.extend([
        report("h1", CART, "c1", "succeeded", d),
        report("h1", CART, "c2", "in_progress", d + 3 * DAY),
        report("h1", CART, "c2", "succeeded", d + 3 * DAY + 2 * MIN),
    ]);
    app.send_logs(&logs(records)).await;
    let r = dora(&app, &week(d)).await;
    assert_eq!(r["totals"]["deployments"], 5);
    // r2 4200 s, r3 360 s, c2 120 s: median 360 s.
    assert_eq!(r["totals"]["lead_time_seconds"], 360.0);
    let groups = r["groups"].as_array().expect("groups");
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["workload"].as_str().expect("workload"))
        .collect();
    assert_eq!(names, ["cart", "checkout"]);
    let cart = &groups[0];
    assert_eq!(
        (
            &cart["workspace"],
            &cart["application"],
            &cart["environment"]
        ),
        (&json!("default"), &json!("shop"), &json!("prod"))
    );
    assert_eq!(cart["deployments"], 1);
    assert_eq!(cart["lead_time_seconds"], 120.0);
    assert_eq!(cart["change_fail_rate"], 0.0);
    assert_eq!(cart["change_fail_rate_band"], "elite");
    assert_checkout_week(&groups[1]);
    // A filter keeps its own deployments only.
    let only = dora(&app, &format!("{}&workload=checkout", week(d))).await;
    assert_checkout_week(&only["totals"]);
    assert_eq!(only["groups"].as_array().map(Vec::len), Some(1));
    // These reports name no reconciler: their source is otlp.
    let none = dora(&app, &format!("{}&source=flux", week(d))).await;
    assert_eq!(none["totals"]["deployments"], 0);
    let otlp = dora(&app, &format!("{}&source=otlp", week(d))).await;
    assert_eq!(otlp["totals"]["deployments"], 5);
}

async fn bad_parameters_are_400(b: Backend) {
    let app = spawn_app(b).await;
    for query in [
        "bucket=month",
        "since=yesterday",
        "until=soon",
        "since=1d&until=2d",
        "since=3000d",
        "source=helm",
        "nonsense=1",
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/insights/dora?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{query}: {body}"
        );
    }
    let (_, body) = app.get("/api/v1/insights/dora?bucket=month", None).await;
    assert_eq!(
        body["error"]["message"],
        "unknown bucket \"month\": bucket takes day or week"
    );
    // The defaults: the last 30 days by day.
    let r = dora(&app, "").await;
    assert_eq!(r["bucket"], "day");
    let series = r["series"].as_array().map(Vec::len).expect("series");
    assert!((30..=31).contains(&series), "{series}");
}

/// The value of a series of `/metrics` with these labels (the exposition
/// sorts them by name).
fn sample(metrics: &str, name: &str, workload: &str) -> Option<f64> {
    sample_in(metrics, name, workload, "prod")
}

fn sample_in(metrics: &str, name: &str, workload: &str, environment: &str) -> Option<f64> {
    let labels = format!(
        "{{application=\"shop\",environment=\"{environment}\",tenant=\"default\",workload=\"{workload}\",workspace=\"default\"}}"
    );
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(labels.as_str())?;
        rest.trim().parse().ok()
    })
}

async fn gauges_show_the_trailing_30_days(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    app.send_logs(&logs(checkout_history(d))).await;
    let (status, metrics) = app.get("/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text");
    let value = |name| sample(metrics, name, "checkout");
    assert_eq!(value("sextant_dora_deployments"), Some(4.0), "{metrics}");
    assert_eq!(value("sextant_dora_lead_time_seconds"), Some(2280.0));
    assert_eq!(value("sextant_dora_change_fail_rate"), Some(0.5));
    assert_eq!(value("sextant_dora_recovery_time_seconds"), Some(1500.0));
    assert_eq!(value("sextant_dora_rework_rate"), Some(0.25));
    assert_eq!(sample(metrics, "sextant_dora_deployments", "cart"), None);
}

/// Reports come from an in-memory index refreshed from the change feed
/// (store/dora_index.rs). A report between two sends loads it; the next
/// ones see the rest of the target's history, then a revision's earlier
/// first sighting in another environment, which moves the lead time of a
/// target that itself received nothing.
async fn a_warm_index_follows_every_change(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    let history = checkout_history(d);
    // Up to both hosts on r2.
    let (first, rest) = history.split_at(7);
    app.send_logs(&logs(first.to_vec())).await;
    let prod = format!("{}&environment=prod", week(d));
    let r = dora(&app, &prod).await;
    assert_eq!(r["totals"]["deployments"], 1, "{r}");
    assert_eq!(r["totals"]["lead_time_seconds"], 4200.0, "{r}");
    app.send_logs(&logs(rest.to_vec())).await;
    let r = dora(&app, &prod).await;
    assert_checkout_week(&r["totals"]);
    // stage runs r3 an hour before prod started it: r3 has no commit time,
    // so its lead time now starts there, 3600 s + 360 s. Stage's first
    // report is its baseline, not a deployment.
    let stage: At<'static> = ("shop", "checkout", "stage", "eu");
    app.send_logs(&logs(vec![report(
        "s1",
        stage,
        "r3",
        "succeeded",
        d + 2 * DAY - HOUR,
    )]))
    .await;
    let r = dora(&app, &prod).await;
    assert_eq!(r["totals"]["deployments"], 4, "{r}");
    // The median of r2's 4200 s and r3's 3960 s.
    assert_eq!(r["totals"]["lead_time_seconds"], 4080.0, "{r}");
    let all = dora(&app, &week(d)).await;
    assert_eq!(all["totals"]["deployments"], 4, "{all}");
}

/// A hub upgraded with history already stored rebuilds its deployments in
/// the background, after it starts serving: here a second hub on a
/// database whose deployments are gone and whose targets are all listed to
/// rebuild (as the migration leaves an upgraded one). Its report converges
/// on the figures worked out by hand, `rebuilding_targets` falls to 0, and
/// the pending gauge with it.
async fn an_upgraded_hub_rebuilds_in_the_background(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    app.send_logs(&logs(checkout_history(d))).await;
    // The first hub derives what ingest listed (a report does), then
    // forgets it all.
    assert_checkout_week(&dora(&app, &week(d)).await["totals"]);
    let forget = "DELETE FROM deployments; DELETE FROM deployments_backfill; \
         INSERT INTO deployments_backfill (target_id) SELECT id FROM deployment_targets";
    if app.db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db.url).await.expect("db");
        sqlx::raw_sql(forget).execute(&pool).await.expect("forget");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&app.db.url).await.expect("db");
        sqlx::raw_sql(forget).execute(&pool).await.expect("forget");
        pool.close().await;
    }
    let upgraded =
        sextant_receiver::app::Application::build(&crate::helpers::hub_config(&app.db, |_| {}))
            .await
            .expect("the upgraded hub builds");
    let api = upgraded.api_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(upgraded.run_until_stopped(stop.clone()));
    let client = reqwest::Client::new();
    let url = format!("http://{api}/api/v1/insights/dora?{}", week(d));
    let mut last = Value::Null;
    for _ in 0..100 {
        last = client
            .get(&url)
            .send()
            .await
            .expect("report")
            .json()
            .await
            .expect("json");
        if last["rebuilding_targets"] == 0 && last["totals"]["deployments"] == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last["rebuilding_targets"], 0, "{last}");
    assert_checkout_week(&last["totals"]);
    // The deriver sets the gauge when its next step finds nothing left
    // (the first hub's deriver may have done the last targets).
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = client
            .get(format!("http://{api}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("sextant_hub_deployments_rebuild_pending 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("sextant_hub_deployments_rebuild_pending 0"),
        "{metrics}"
    );
    stop.cancel();
    task.await.expect("hub task").expect("hub stops");
}

/// With `metrics_max_environments` at 1, prod keeps its name and the same
/// history in qa and stage is counted as one environment, `_other`: its
/// figures are worked out over both (8 deployments, the same medians and
/// rates as each alone), not added up.
async fn gauges_bound_the_environments(b: Backend) {
    let app = spawn_app_with(b, |c| c.metrics_max_environments = 1).await;
    let d = monday();
    let mut history = checkout_history(d);
    for environment in ["qa", "stage"] {
        let at: At<'static> = ("shop", "checkout", environment, "eu");
        history.extend(checkout_history(d).into_iter().map(|mut record| {
            for attr in record["attributes"].as_array_mut().expect("attributes") {
                if attr["key"] == "deployment.environment.name" {
                    *attr = kv("deployment.environment.name", at.2);
                }
            }
            record
        }));
    }
    app.send_logs(&logs(history)).await;
    let (status, metrics) = app.get("/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text");
    let value = |name, env| sample_in(metrics, name, "checkout", env);
    assert_eq!(
        value("sextant_dora_deployments", "prod"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        value("sextant_dora_deployments", "_other"),
        Some(8.0),
        "{metrics}"
    );
    assert_eq!(
        value("sextant_dora_lead_time_seconds", "_other"),
        Some(2280.0)
    );
    assert_eq!(value("sextant_dora_change_fail_rate", "_other"), Some(0.5));
    assert_eq!(
        value("sextant_dora_recovery_time_seconds", "_other"),
        Some(1500.0)
    );
    assert_eq!(value("sextant_dora_rework_rate", "_other"), Some(0.25));
    for env in ["qa", "stage"] {
        assert_eq!(value("sextant_dora_deployments", env), None, "{metrics}");
    }
}

async fn a_bad_commit_time_is_refused_per_record(b: Backend) {
    let app = spawn_app(b).await;
    let d = monday();
    let mut bad = report("h1", CHECKOUT, "r1", "succeeded", d);
    bad["attributes"]
        .as_array_mut()
        .expect("attributes")
        .push(kv("sextant.commit.time", "last tuesday"));
    let body = logs(vec![bad, report("h2", CHECKOUT, "r1", "succeeded", d)]);
    let res = app.post_json("logs", &body, None).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 1,
        "{answer}"
    );
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("`sextant.commit.time` has invalid value \"last tuesday\""),
        "{message}"
    );
}
