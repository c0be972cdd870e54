//! Paginated lists: `GET /api/v1/hosts`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::helpers::{Backend, logs, observed, on_both_backends, spawn_app};

const REV: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("fits")
}

fn names(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| h["host"].as_str().expect("host"))
        .collect()
}

async fn hosts_are_listed_by_page_with_status_counts(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = now();
    let checkout = ("shop", "checkout", "stage", "eu");
    let mut records = vec![
        observed("h1", checkout, REV, "succeeded", t),
        observed("h1", ("shop", "cart", "prod", "eu"), REV, "failed", t),
        observed("h2", checkout, REV, "in_progress", t),
        observed("h3", checkout, REV, "succeeded", t),
        observed("h4", checkout, REV, "succeeded", t),
    ];
    // h5 last reported an hour ago: stale.
    records.push(observed(
        "h5",
        checkout,
        REV,
        "succeeded",
        t - 3_600_000_000_000,
    ));
    app.send_logs(&logs(records)).await;

    let mut seen = Vec::new();
    let mut path = "/api/v1/hosts?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get(&path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(names(&page).into_iter().map(str::to_owned));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/hosts?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ["h1", "h2", "h3", "h4", "h5"]);
    assert_eq!(pages, 3);

    let (_, all) = app.get("/api/v1/hosts", None).await;
    let items = all["items"].as_array().expect("items");
    let h1 = &items[0];
    assert_eq!(h1["host"], "h1");
    assert_eq!(h1["workloads"], 2);
    assert_eq!(
        (&h1["succeeded"], &h1["failed"], &h1["in_progress"]),
        (&1.into(), &1.into(), &0.into())
    );
    assert_eq!(h1["stale"], false);
    assert_eq!(items[1]["in_progress"], 1);
    assert_eq!(items[4]["host"], "h5");
    assert_eq!(items[4]["stale"], true, "{all}");
    assert!(all["next_cursor"].is_null());

    // Filters narrow both the hosts and what is counted.
    let (_, prod) = app.get("/api/v1/hosts?environment=prod", None).await;
    assert_eq!(names(&prod), ["h1"]);
    assert_eq!(prod["items"][0]["workloads"], 1);
    assert_eq!(prod["items"][0]["failed"], 1);
    assert_eq!(prod["items"][0]["succeeded"], 0);
    let (_, one) = app.get("/api/v1/hosts?host=h3", None).await;
    assert_eq!(names(&one), ["h3"]);

    // Bad paging is a clear 400.
    for bad in ["limit=0", "limit=1001", "cursor=zz", "colour=red"] {
        let (status, body) = app.get(&format!("/api/v1/hosts?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}: {body}");
    }
    app.stop().await;
}

on_both_backends!(hosts_are_listed_by_page_with_status_counts);
