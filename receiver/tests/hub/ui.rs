//! The web UI in headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven through WebDriver with fantoccini, over the
//! estate of `reports.rs`, which arrived over OTLP. Screenshots are saved
//! under `target/ui-screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Backend, TestApp, logs, observed, on_both_backends, spawn_app_with};
use crate::reports::estate_with;
use crate::sources::mixed_estate;
use sextant_e2e::wait;

/// A chromedriver process on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver; ./scripts/test.sh installs it)");
        let driver = Self { child, port };
        wait::until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async move {
                reqwest::get(format!("http://127.0.0.1:{port}/status"))
                    .await
                    .map(drop)
                    .map_err(|_| "chromedriver did not start")
            },
        )
        .await;
        driver
    }

    async fn browser(&self, profile: &tempfile::TempDir) -> Client {
        let caps = json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(browser: &Client, backend: Backend, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(format!("{backend:?}-{name}.png").to_lowercase());
    std::fs::write(&path, png).expect("save screenshot");
}

/// The rendered text of every element matching `css`, read in one script
/// so a page refresh between finding and reading cannot leave a stale
/// element (the pages refresh every second in these tests).
async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let v = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim())",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("read {css}: {e}"));
    serde_json::from_value(v).expect("strings")
}

/// Finds and clicks what `locator` names, again if a page refresh made
/// the element stale between the two (the pages refresh every second in
/// these tests, and a loaded machine can take longer than that).
async fn click(browser: &Client, locator: Locator<'_>) {
    let mut tries = 0;
    loop {
        let clicked = match browser.find(locator).await {
            Ok(element) => element.click().await.map(drop),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if tries < 5 && is_stale(&e) => tries += 1,
            Err(e) => panic!("click {locator:?}: {e}"),
        }
    }
}

fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    matches!(e, fantoccini::error::CmdError::Standard(w)
        if w.error == fantoccini::error::ErrorStatus::StaleElementReference)
}

async fn text(browser: &Client, css: &str) -> String {
    texts(browser, css)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {css}"))
}

async fn count(browser: &Client, css: &str) -> usize {
    browser
        .find_all(Locator::Css(css))
        .await
        .expect("find_all")
        .len()
}

async fn classes(browser: &Client, css: &str) -> String {
    let v = browser
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.className : null",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("read {css}: {e}"));
    v.as_str().unwrap_or_else(|| panic!("no {css}")).to_owned()
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
