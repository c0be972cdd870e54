//! The web UI in headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven through WebDriver with fantoccini, over the
//! estate of `reports.rs`, which arrived over OTLP. Screenshots are saved
//! under `target/ui-screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use sextant_e2e::browser::{self, Driver, classes, click, count, text, texts};

use crate::helpers::{Backend, TestApp, logs, observed, on_both_backends, spawn_app_with};
use crate::reports::estate_with;
use crate::sources::mixed_estate;
use sextant_e2e::wait;

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots")
}

async fn screenshot(browser: &Client, backend: Backend, name: &str) {
    browser::screenshot(browser, &screenshot_dir(), &format!("{backend:?}-{name}")).await;
}

async fn open(browser: &Client, app: &TestApp, path: &str) {
    browser
        .goto(&format!("http://{}{path}", app.api))
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
}

async fn ui_shows_what_runs_where(backend: Backend) {
    let (app, _) = estate_with(backend, |c| {
        c.environments = vec!["stage".into(), "prod".into()];
        c.ui_refresh_seconds = 1;
    })
    .await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.browser(&profile).await;

    // Home: the matrix, environments in the configured order.
    open(&browser, &app, "/").await;
    assert_eq!(text(&browser, "main h1").await, "What runs where");
    let headers = texts(&browser, "table.matrix thead th").await;
    assert_eq!(headers, ["Workload", "stage", "prod"]);
    let stage = r#"td[data-environment="stage"][data-workload="checkout"]"#;
    let cell = text(&browser, stage).await;
    assert!(cell.contains("desired 1.2"), "{cell}");
    assert!(cell.contains("1 failed"), "{cell}");
    assert!(cell.contains("1 drifted"), "the host on 1.1: {cell}");
    assert!(classes(&browser, stage).await.contains("failed"));
    let prod = r#"td[data-environment="prod"][data-workload="checkout"]"#;
    assert!(text(&browser, prod).await.contains("1 stale"));
    assert_eq!(
        text(
            &browser,
            r#"td[data-environment="prod"][data-workload="cart"]"#
        )
        .await,
        "—"
    );
    screenshot(&browser, backend, "matrix").await;

    // Filters live in the URL.
    open(&browser, &app, "/?workload=cart").await;
    assert_eq!(count(&browser, "table.matrix tbody tr").await, 1);
    assert_eq!(
        browser
            .find(Locator::Css("input[name=workload]"))
            .await
            .expect("filter input")
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("cart")
    );

    // Compare.
    open(&browser, &app, "/compare?environments=stage,prod").await;
    let row = r#"tr[data-workload="checkout"]"#;
    assert!(classes(&browser, row).await.contains("differs"));
    let compared = text(&browser, row).await;
    assert!(
        compared.contains("desired 1.2") && compared.contains("desired 1.1"),
        "{compared}"
    );
    screenshot(&browser, backend, "compare").await;

    // Drift names the hosts and why.
    open(&browser, &app, "/drift").await;
    let drifting = texts(&browser, "table.list tbody tr").await;
    assert_eq!(drifting.len(), 4, "{drifting:?}");
    for (host, why) in [
        ("p2", "stale"),
        ("s1", "no desired state"),
        ("s3", "wrong revision"),
        ("s4", "failed"),
    ] {
        assert!(
            drifting
                .iter()
                .any(|r| r.starts_with(host) && r.contains(why)),
            "{host} {why} not in {drifting:?}"
        );
    }
    screenshot(&browser, backend, "drift").await;

    // The page refreshes itself: s3 catches up and leaves the drift list
    // without a reload.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    app.send_logs(&logs(vec![observed(
        "s3",
        ("shop", "checkout", "stage", "eu"),
        "r2",
        "succeeded",
        t,
    )]))
    .await;
    wait::until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            if count(&browser, r#"tr[data-host="s3"]"#).await > 0 {
                Err("the drift page did not refresh")
            } else {
                Ok(())
            }
        },
    )
    .await;

    // Hosts and a host page.
    open(&browser, &app, "/hosts").await;
    assert_eq!(count(&browser, "table.list tbody tr").await, 6);
    assert!(
        classes(&browser, r#"tr[data-host="p2"]"#)
            .await
            .contains("stale")
    );
    click(&browser, Locator::LinkText("s1")).await;
    assert_eq!(text(&browser, "main h1").await, "Host s1");
    assert_eq!(count(&browser, "table.list tbody tr").await, 2);
    assert!(
        text(&browser, r#"tr[data-workload="cart"]"#)
            .await
            .contains("no desired state")
    );
    screenshot(&browser, backend, "host").await;

    // Workload history as a timeline, newest first.
    open(
        &browser,
        &app,
        "/workloads/checkout/history?environment=stage",
    )
    .await;
    let items = texts(&browser, "ol.timeline li").await;
    assert_eq!(items.len(), 7, "six from the estate and s3's catch-up");
    let newest = &items[0];
    assert!(
        newest.contains("s3") && newest.contains("succeeded"),
        "{newest}"
    );
    let promoted = text(&browser, "ol.timeline li.desired").await;
    assert!(
        promoted.contains("Promoted 1.2 to stage / eu"),
        "{promoted}"
    );
    screenshot(&browser, backend, "history").await;

    // Readable in a narrow window: nothing wider than the viewport but the
    // scrollable tables.
    browser.set_window_size(420, 900).await.expect("resize");
    open(&browser, &app, "/").await;
    let overflow = browser
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .expect("measure");
    assert!(
        overflow.as_i64().unwrap_or(i64::MAX) <= 0,
        "page overflows by {overflow}px"
    );
    screenshot(&browser, backend, "matrix-narrow").await;

    browser.close().await.expect("close browser");
    app.stop().await;
}

/// A Flux cluster, an Argo CD cluster and agent hosts in one environment:
/// the matrix shows their targets side by side in one cell, each with its
/// source, the drift list names each row's source, and the source filter
/// narrows both.
async fn ui_shows_every_source_side_by_side(backend: Backend) {
    // Nothing here waits on a refresh, and one between choosing a source
    // and submitting would undo the choice.
    let app = spawn_app_with(backend, |c| c.ui_refresh_seconds = 3600).await;
    mixed_estate(&app).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.browser(&profile).await;

    open(&browser, &app, "/").await;
    let cell = r#"td[data-environment="prod"][data-workload="checkout"]"#;
    let badges = texts(&browser, &format!("{cell} .target .source")).await;
    assert_eq!(
        badges,
        [
            "flux flux-system",
            "argocd argocd-prod",
            "agent sextant-agent",
            "otlp"
        ],
        "one cell, every source"
    );
    // Side by side: the three reporters' targets are stacked in the one
    // cell, each with its badge inside it.
    for (target, source) in [
        ("cluster-a", "flux"),
        ("cluster-b", "argocd"),
        ("docker", "agent"),
    ] {
        assert_eq!(
            count(
                &browser,
                &format!(
                    r#"{cell} .target[data-target="{target}"] .source[data-source="{source}"]"#
                )
            )
            .await,
            1,
            "{target}"
        );
    }
    screenshot(&browser, backend, "matrix-sources").await;

    // The source filter is a select in the filter form; choosing Argo CD
    // leaves its cluster alone.
    click(
        &browser,
        Locator::Css(r#"select[name="source"] option[value="argocd"]"#),
    )
    .await;
    click(&browser, Locator::Css("form.filters button")).await;
    // One deadline for both waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    wait::until(
        deadline.saturating_duration_since(Instant::now()),
        Duration::from_millis(100),
        || async {
            let url = browser.current_url().await.expect("url");
            if url.as_str().contains("source=argocd") {
                Ok(())
            } else {
                Err("the filter did not submit")
            }
        },
    )
    .await;
    let cells = &format!("{cell} .target .source");
    let shown = wait::until(
        deadline.saturating_duration_since(Instant::now()),
        Duration::from_millis(100),
        || async {
            let shown = texts(&browser, cells).await;
            if shown.is_empty() {
                Err("the filtered page did not load")
            } else {
                Ok(shown)
            }
        },
    )
    .await;
    assert_eq!(shown, ["argocd argocd-prod"]);

    // Drift: one list, each row with its source.
    open(&browser, &app, "/drift").await;
    let rows = texts(&browser, "table.list tbody tr").await;
    for (host, source) in [
        ("cluster-b", "argocd"),
        ("docker-1", "agent"),
        ("manual-1", "otlp"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.starts_with(host) && r.contains(source)),
            "{host} {source} not in {rows:?}"
        );
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    screenshot(&browser, backend, "drift-sources").await;

    browser.close().await.expect("close browser");
    app.stop().await;
}

on_both_backends!(ui_shows_what_runs_where, ui_shows_every_source_side_by_side);
