//! Deployment state in, state and rollout out; idempotency and ordering.

use serde_json::json;

use crate::helpers::{Backend, desired, kv, logs, observed, on_both_backends, spawn_app};

const CHECKOUT_STAGE_EU: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");
const R1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const R2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

async fn desired_and_observed_state_is_read_back(b: Backend) {
    let app = spawn_app(b).await;
    app.send_logs(&logs(vec![
        desired(CHECKOUT_STAGE_EU, "1.4.2", R2, 100),
        observed("h1", CHECKOUT_STAGE_EU, R2, "succeeded", 200),
        observed("h2", CHECKOUT_STAGE_EU, R1, "failed", 210),
        desired(("shop", "checkout", "prod", "eu"), "1.4.1", R1, 100),
    ]))
    .await;

    let (status, state) = app.get("/api/v1/state?environment=stage", None).await;
    assert_eq!(status, 200, "{state}");
    let items = state.as_array().expect("array");
    assert_eq!(items.len(), 1, "only stage: {state}");
    let item = &items[0];
    assert_eq!(
        (
            &item["application"],
            &item["workload"],
            &item["environment"],
            &item["target"]
        ),
        (
            &json!("shop"),
            &json!("checkout"),
            &json!("stage"),
            &json!("eu")
        )
    );
    assert_eq!(item["desired"]["version"], "1.4.2");
    assert_eq!(item["desired"]["revision"], R2);
    assert_eq!(item["desired"]["at"], "1970-01-01T00:00:00.0000001Z");
    let hosts = item["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["host"], "h1");
    assert_eq!(
        hosts[0]["version"], "1.4.2",
        "a desired event named this revision"
    );
    assert_eq!(hosts[0]["in_sync"], true);
    assert_eq!(hosts[1]["host"], "h2");
    assert_eq!(
        hosts[1]["version"], "1.4.1",
        "prod's desired event named R1 for this workload"
    );
    assert_eq!(hosts[1]["status"], "failed");
    assert_eq!(hosts[1]["in_sync"], false);

    let (_, all) = app.get("/api/v1/state", None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let (_, filtered) = app
        .get("/api/v1/state?environment=stage&target=nope", None)
        .await;
    assert_eq!(filtered, json!([]));
    let (_, filtered) = app
        .get(
            "/api/v1/state?application=shop&workload=checkout&target=eu",
            None,
        )
        .await;
    assert_eq!(filtered.as_array().map(Vec::len), Some(2));
    app.stop().await;
}

async fn rollout_counts_add_up(b: Backend) {
    let app = spawn_app(b).await;
    let west = ("shop", "checkout", "stage", "west");
    app.send_logs(&logs(vec![
        desired(CHECKOUT_STAGE_EU, "2", R2, 100),
        desired(west, "2", R2, 100),
        observed("h1", CHECKOUT_STAGE_EU, R2, "succeeded", 200),
        observed("h2", CHECKOUT_STAGE_EU, R2, "failed", 200),
        observed("h3", CHECKOUT_STAGE_EU, R2, "in_progress", 200),
        observed("h4", CHECKOUT_STAGE_EU, R1, "succeeded", 200),
        observed("h5", west, R1, "failed", 200),
    ]))
    .await;
    let (status, r) = app
        .get("/api/v1/rollout?workload=checkout&environment=stage", None)
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["desired"]["revision"], R2);
    assert_eq!(
        (
            &r["total_hosts"],
            &r["succeeded"],
            &r["failed"],
            &r["in_progress"],
            &r["pending"]
        ),
        (&json!(5), &json!(1), &json!(1), &json!(1), &json!(2))
    );
    // By default only the hosts that need attention: failed first, then in
    // progress, then on another revision; h1 (done) is not listed.
    let listed = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap_or_default().to_owned(),
                    h["progress"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let pair = |h: &str, p: &str| (h.to_owned(), p.to_owned());
    assert_eq!(
        listed(&r),
        [
            pair("h2", "failed"),
            pair("h3", "in_progress"),
            pair("h4", "pending"),
            pair("h5", "pending")
        ]
    );
    assert_eq!(
        (&r["hosts_listed"], &r["hosts_omitted"]),
        (&json!("attention"), &json!(0))
    );
    let (_, r) = app
        .get(
            "/api/v1/rollout?workload=checkout&environment=stage&limit=2",
            None,
        )
        .await;
    assert_eq!(
        listed(&r),
        [pair("h2", "failed"), pair("h3", "in_progress")]
    );
    assert_eq!(r["hosts_omitted"], 2);
    assert_eq!(r["total_hosts"], 5);
    // Every host on request, with the same counts.
    let (_, all) = app
        .get(
            "/api/v1/rollout?workload=checkout&environment=stage&hosts=all",
            None,
        )
        .await;
    assert_eq!(all["hosts_listed"], "all");
    assert_eq!(all["hosts"].as_array().map(Vec::len), Some(5));
    assert!(listed(&all).contains(&pair("h1", "succeeded")));
    for k in [
        "total_hosts",
        "succeeded",
        "failed",
        "in_progress",
        "pending",
    ] {
        assert_eq!(all[k], r[k], "{k}");
    }
    for bad in ["hosts=some", "limit=0", "limit=1001"] {
        let (status, e) = app
            .get(
                &format!("/api/v1/rollout?workload=checkout&environment=stage&{bad}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_query");
    }
    // The API's HTTP series: by route template and status, never a raw path.
    let (status, _) = app.get("/api/v1/hosts/no-such-host-x7", None).await;
    assert_eq!(status, 404);
    let (_, metrics) = app.get("/metrics", None).await;
    let metrics = metrics.as_str().expect("metrics text").to_owned();
    for series in [
        r#"sextant_http_requests_total{method="GET",path="/api/v1/rollout",status="200"} "#,
        r#"sextant_http_requests_total{method="GET",path="/api/v1/rollout",status="400"} 3"#,
        r#"sextant_http_requests_total{method="GET",path="/api/v1/hosts/{host}",status="404"} 1"#,
        "sextant_http_requests_in_flight ",
        r#"sextant_http_request_duration_seconds_count{method="GET",path="/api/v1/rollout"} "#,
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(series)),
            "{series} missing:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("no-such-host-x7"),
        "a raw path reached a label"
    );
    // Drift and staleness gauges: stage's eu target desires R2, where h4 runs
    // R1 and h2 failed; west desires R2 and h5 runs R1. Every report is
    // from 1970, so all five hosts are stale.
    for series in [
        r#"sextant_hub_drift_hosts{env="stage",reason="wrong_revision",tenant="default"} 2"#,
        r#"sextant_hub_drift_hosts{env="stage",reason="failed",tenant="default"} 1"#,
        r#"sextant_hub_drift_hosts{env="stage",reason="no_desired",tenant="default"} 0"#,
        r#"sextant_hub_stale_hosts{env="stage",tenant="default"} 5"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} missing:\n{metrics}"
        );
    }

    let (_, r) = app
        .get(
            "/api/v1/rollout?workload=checkout&environment=stage&target=west",
            None,
        )
        .await;
    assert_eq!((&r["total_hosts"], &r["pending"]), (&json!(1), &json!(1)));

    let (status, e) = app
        .get("/api/v1/rollout?workload=nope&environment=stage", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "not_found");
    let (status, e) = app.get("/api/v1/rollout?environment=stage", None).await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "invalid_query");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("workload"),
        "{e}"
    );
    app.stop().await;
}

async fn a_replayed_batch_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let batch = logs(vec![
        desired(CHECKOUT_STAGE_EU, "1", R1, 100),
        observed("h1", CHECKOUT_STAGE_EU, R1, "in_progress", 150),
        observed("h1", CHECKOUT_STAGE_EU, R1, "succeeded", 200),
        observed("h2", CHECKOUT_STAGE_EU, R1, "failed", 200),
    ]);
    app.send_logs(&batch).await;
    let (_, before) = app.get("/api/v1/state", None).await;
    let counts = (
        app.db.count("desired_assignments").await,
        app.db.count("observed_history").await,
        app.db.count("observed_deployments").await,
        app.db.count("workload_versions").await,
    );
    assert_eq!(counts, (1, 3, 2, 1));
    for _ in 0..2 {
        app.send_logs(&batch).await;
    }
    let (_, after) = app.get("/api/v1/state", None).await;
    assert_eq!(before, after);
    let again = (
        app.db.count("desired_assignments").await,
        app.db.count("observed_history").await,
        app.db.count("observed_deployments").await,
        app.db.count("workload_versions").await,
    );
    assert_eq!(counts, again, "no duplicate rows after replays");
    app.stop().await;
}

async fn a_late_observation_never_overwrites_newer_state(b: Backend) {
    let app = spawn_app(b).await;
    app.send_logs(&logs(vec![observed(
        "h1",
        CHECKOUT_STAGE_EU,
        R2,
        "failed",
        300,
    )]))
    .await;
    // Arrives later, happened earlier.
    app.send_logs(&logs(vec![observed(
        "h1",
        CHECKOUT_STAGE_EU,
        R1,
        "succeeded",
        100,
    )]))
    .await;
    let (_, state) = app.get("/api/v1/state", None).await;
    let host = &state[0]["hosts"][0];
    assert_eq!(
        (&host["revision"], &host["status"]),
        (&json!(R2), &json!("failed"))
    );
    assert_eq!(host["observed_at"], "1970-01-01T00:00:00.0000003Z");
    assert_eq!(
        app.db.count("observed_history").await,
        2,
        "the late report is history"
    );
    // Replaying the late one adds nothing.
    app.send_logs(&logs(vec![observed(
        "h1",
        CHECKOUT_STAGE_EU,
        R1,
        "succeeded",
        100,
    )]))
    .await;
    assert_eq!(app.db.count("observed_history").await, 2);
    // A late report equal to the history before it is not a change.
    app.send_logs(&logs(vec![observed(
        "h1",
        CHECKOUT_STAGE_EU,
        R1,
        "succeeded",
        150,
    )]))
    .await;
    assert_eq!(app.db.count("observed_history").await, 2);
    app.stop().await;
}

async fn unchanged_heartbeats_move_time_without_history(b: Backend) {
    let app = spawn_app(b).await;
    for t in [100, 200, 300] {
        app.send_logs(&logs(vec![observed(
            "h1",
            CHECKOUT_STAGE_EU,
            R1,
            "succeeded",
            t,
        )]))
        .await;
    }
    let (_, state) = app.get("/api/v1/state", None).await;
    assert_eq!(
        state[0]["hosts"][0]["observed_at"],
        "1970-01-01T00:00:00.0000003Z"
    );
    assert_eq!(app.db.count("observed_history").await, 1);
    app.send_logs(&logs(vec![observed(
        "h1",
        CHECKOUT_STAGE_EU,
        R2,
        "in_progress",
        400,
    )]))
    .await;
    assert_eq!(app.db.count("observed_history").await, 2);
    app.stop().await;
}

async fn the_latest_desired_assignment_wins_and_history_is_kept(b: Backend) {
    let app = spawn_app(b).await;
    app.send_logs(&logs(vec![desired(CHECKOUT_STAGE_EU, "1", R1, 100)]))
        .await;
    app.send_logs(&logs(vec![desired(CHECKOUT_STAGE_EU, "2", R2, 200)]))
        .await;
    app.send_logs(&logs(vec![desired(CHECKOUT_STAGE_EU, "0", R1, 50)]))
        .await;
    let (_, state) = app.get("/api/v1/state", None).await;
    assert_eq!(state[0]["desired"]["version"], "2");
    assert_eq!(app.db.count("desired_assignments").await, 3);
    app.stop().await;
}

async fn resource_attributes_apply_and_the_record_wins(b: Backend) {
    let app = spawn_app(b).await;
    let mut record = observed("h1", CHECKOUT_STAGE_EU, R1, "succeeded", 100);
    // Host and reconciler come from the resource; the record's own host wins.
    let attrs = record["attributes"].as_array_mut().expect("attrs");
    attrs.retain(|kv| kv["key"] != "host.name");
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [
            kv("host.name", "from-resource"),
            kv("sextant.reconciler.name", "flux-system"),
            kv("sextant.reconciler.type", "flux"),
            kv("deployment.environment.name", "ignored-because-record-wins"),
        ]},
        "scopeLogs": [{"logRecords": [record]}]
    }]});
    app.send_logs(&body).await;
    let (_, state) = app.get("/api/v1/state?environment=stage", None).await;
    let host = &state[0]["hosts"][0];
    assert_eq!(
        (&host["host"], &host["reconciler"]),
        (&json!("from-resource"), &json!("flux-system"))
    );
    app.stop().await;
}

async fn the_observed_gauge_is_an_observation(b: Backend) {
    let app = spawn_app(b).await;
    let point = |host: &str, value: serde_json::Value| {
        json!({"asInt": value, "timeUnixNano": "500", "attributes": [
            kv("host.name", host),
            kv("sextant.application", "shop"),
            kv("sextant.workload", "checkout"),
            kv("deployment.environment.name", "stage"),
            kv("sextant.target", "eu"),
            kv("sextant.revision", R1),
            kv("deployment.status", "succeeded"),
        ]})
    };
    let body = json!({"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [
        {"name": "sextant.deployment.observed", "gauge": {"dataPoints": [point("g1", json!("1")), point("g2", json!("7"))]}},
        {"name": "system.cpu.time", "sum": {"dataPoints": [{"asDouble": 3.0}]}}
    ]}]}]});
    let res = app.post_json("metrics", &body, None).await;
    assert_eq!(res.status(), 200);
    let answer: serde_json::Value = res.json().await.expect("json");
    assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], 1);
    let (_, state) = app.get("/api/v1/state", None).await;
    let hosts = state[0]["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["host"], "g1");
    app.stop().await;
}

on_both_backends!(
    desired_and_observed_state_is_read_back,
    rollout_counts_add_up,
    a_replayed_batch_changes_nothing,
    a_late_observation_never_overwrites_newer_state,
    unchanged_heartbeats_move_time_without_history,
    the_latest_desired_assignment_wins_and_history_is_kept,
    resource_attributes_apply_and_the_record_wins,
    the_observed_gauge_is_an_observation,
);
