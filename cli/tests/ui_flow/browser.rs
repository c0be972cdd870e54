//! Two people take a release from dev to prod, watch it deploy, roll a
//! failing one back and revoke an agent, in headless Chromium only; each
//! step is checked against the orchestrator's API.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;
use sextant_e2e::browser::{Driver, click, foreign_requests, screenshot, text, texts};
use sextant_e2e::{Backend, wait};

use crate::stack::{ALICE, BAD, BOB, Flow, GOOD, NEWER};

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots")
}

/// A page of the hub, checked: nothing loaded from elsewhere, no control
/// without a label, nothing wider than the window; then screenshotted.
async fn check(browser: &Client, flow: &Flow, backend: Backend, name: &str) {
    let foreign = foreign_requests(browser, &flow.hub).await;
    assert!(foreign.is_empty(), "{name} requested {foreign:?}");
    let unlabeled = browser
        .execute(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]),select,textarea'))\
             .filter(e => !e.closest('label') && !e.getAttribute('aria-label')).map(e => e.outerHTML)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabeled, json!([]), "{name} has controls without a label");
    screenshot(
        browser,
        &screenshot_dir(),
        &format!("flow-{backend:?}-{name}"),
    )
    .await;
}

async fn open(browser: &Client, flow: &Flow, path: &str) {
    browser
        .goto(&format!("{}{path}", flow.hub))
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
}

async fn sign_in(browser: &Client, flow: &Flow, token: &str) {
    open(browser, flow, "/login").await;
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(browser, Locator::Css("form.login button")).await;
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            match path(browser).await.as_str() {
                "/login" => Err("still signing in"),
                _ => Ok(()),
            }
        },
    )
    .await;
}

/// The path of the current page.
async fn path(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_owned()
}

/// Confirms the action on the confirmation page in view, after checking
/// that it names `expect`, and waits for the page it leads to.
async fn confirm(browser: &Client, expect: &[&str]) {
    // The click that led here may still be loading the page.
    let said = wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            texts(browser, "form.confirm")
                .await
                .pop()
                .ok_or(format!("no confirmation on {}", path(browser).await))
        },
    )
    .await;
    for e in expect {
        assert!(
            said.contains(e),
            "the confirmation does not name {e:?}: {said}"
        );
    }
    click(browser, Locator::Css("form.confirm button[type=submit]")).await;
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            if path(browser).await.starts_with("/actions/") {
                Err(format!(
                    "still on the action: {}",
                    text(browser, "main").await
                ))
            } else {
                Ok(())
            }
        },
    )
    .await;
}

/// Waits until the text of `css` on the page in view (refreshing itself,
/// never reloaded here) contains `want`; returns each text it saw.
async fn watch(browser: &Client, css: &str, want: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let now = texts(browser, css).await.join(" ");
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now.contains(want) {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never said {want:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn flow_in_the_browser(backend: Backend) {
    let flow = Flow::start(backend, Duration::from_secs(3)).await;
    let driver = Driver::start().await;
    let (alice_profile, bob_profile) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = driver.browser(&alice_profile).await;
    let bob = driver.browser(&bob_profile).await;
    sign_in(&alice, &flow, ALICE).await;

    // Alice promotes `good` into dev from the release's page.
    open(&alice, &flow, "/releases").await;
    check(&alice, &flow, backend, "releases").await;
    click(&alice, Locator::LinkText("good")).await;
    assert!(
        text(&alice, "table.components")
            .await
            .contains("111111111111")
    );
    check(&alice, &flow, backend, "release").await;
    click(&alice, Locator::Css("form.inline button")).await;
    check(&alice, &flow, backend, "confirm-promote").await;
    confirm(&alice, &["good", "dev", "dev-1"]).await;
    assert!(path(&alice).await.starts_with("/promotions/"));
    let dev = flow.promotion_of("good", "dev").await;
    flow.wait_state(
        &format!("/api/v1/promotions/{}", dev["id"].as_str().unwrap()),
        &["deployed"],
    )
    .await;

    // On to stage from the pipeline, where dev now shows it deployed.
    open(&alice, &flow, "/pipeline").await;
    watch(&alice, "td[data-environment=dev]", "deployed").await;
    check(&alice, &flow, backend, "pipeline").await;
    click(&alice, Locator::LinkText("Promote to stage →")).await;
    confirm(&alice, &["good", "stage", "stage-1"]).await;
    let stage = flow.promotion_of("good", "stage").await;
    flow.wait_state(
        &format!("/api/v1/promotions/{}", stage["id"].as_str().unwrap()),
        &["deployed"],
    )
    .await;

    // And asks for prod, which needs someone else's approval.
    open(&alice, &flow, "/pipeline").await;
    watch(&alice, "td[data-environment=stage]", "deployed").await;
    click(&alice, Locator::LinkText("Promote to prod →")).await;
    confirm(&alice, &["good", "prod", "prod-1"]).await;
    let prod = flow.promotion_of("good", "prod").await;
    let prod_id = prod["id"].as_str().unwrap().to_owned();
    flow.wait_state(
        &format!("/api/v1/promotions/{prod_id}"),
        &["awaiting_approval"],
    )
    .await;
    watch(&alice, "#promotion-state", "awaiting approval").await;
    assert!(
        text(&alice, "main")
            .await
            .contains("You requested this promotion")
    );
    check(&alice, &flow, backend, "promotion-awaiting").await;

    // Bob approves it from his inbox.
    sign_in(&bob, &flow, BOB).await;
    open(&bob, &flow, "/inbox").await;
    check(&bob, &flow, backend, "inbox").await;
    click(
        &bob,
        Locator::Css(&format!("tr[data-promotion='{prod_id}'] a")),
    )
    .await;
    click(&bob, Locator::LinkText("Approve…")).await;
    check(&bob, &flow, backend, "confirm-approve").await;
    confirm(&bob, &["good", "prod", "prod-1", "alice"]).await;
    assert_eq!(path(&bob).await, format!("/promotions/{prod_id}"));
    let approved = flow
        .api("GET", &format!("/api/v1/promotions/{prod_id}"), BOB, None)
        .await
        .1;
    assert_eq!(approved["approvals"][0]["approver"], "bob");

    // The job page follows the deployment to its end without a reload.
    let job_id = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let (_, p) = flow
                .api("GET", &format!("/api/v1/promotions/{prod_id}"), BOB, None)
                .await;
            p["job_id"].as_str().map(str::to_owned).ok_or("no job yet")
        },
    )
    .await;
    open(&bob, &flow, &format!("/jobs/{job_id}")).await;
    check(&bob, &flow, backend, "job-running").await;
    let states = watch(&bob, "#job-state", "completed").await;
    assert!(
        states.len() > 1
            || flow
                .api("GET", &format!("/api/v1/jobs/{job_id}"), BOB, None)
                .await
                .1["state"]
                == "completed",
        "the page moved on by itself: {states:?}"
    );
    assert!(text(&bob, "#progress").await.contains("1 of 1 tasks done"));
    assert!(text(&bob, "table.tasks").await.contains("prod-1"));
    check(&bob, &flow, backend, "job-done").await;
    flow.wait_state(&format!("/api/v1/promotions/{prod_id}"), &["deployed"])
        .await;

    // Beside each environment, what runs there: prod's hosts report, one
    // on the promoted digest, one still on another.
    flow.report("prod-a", "prod", "prod-1", GOOD, "succeeded")
        .await;
    flow.report("prod-b", "prod", "prod-1", NEWER, "succeeded")
        .await;
    open(&bob, &flow, "/pipeline").await;
    let cell = watch(
        &bob,
        "td[data-environment=prod]",
        "1 of 2 hosts run it, 1 drifting",
    )
    .await;
    assert!(cell.last().unwrap().contains("deployed"), "{cell:?}");
    screenshot(
        &bob,
        &screenshot_dir(),
        &format!("flow-{backend:?}-pipeline-observed"),
    )
    .await;

    // The drift page says which job set prod's desired version, and its
    // link stays in this UI: the job's page here.
    open(&bob, &flow, "/drift?environment=prod").await;
    click(&bob, Locator::Css("a.job")).await;
    let want = format!("/jobs/{job_id}");
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let at = path(&bob).await;
            if at == want {
                Ok(())
            } else {
                Err(format!("at {at}, not {want}"))
            }
        },
    )
    .await;

    // A failing release into stage (rolled back by hand there): Alice rolls
    // it back from its job page.
    open(&alice, &flow, "/releases").await;
    click(&alice, Locator::LinkText("bad")).await;
    alice
        .find(Locator::Css("select[name=environment]"))
        .await
        .unwrap()
        .select_by_value("stage")
        .await
        .unwrap();
    click(&alice, Locator::Css("form.inline button")).await;
    confirm(&alice, &["bad", "stage"]).await;
    let bad = flow.promotion_of("bad", "stage").await;
    let bad_id = bad["id"].as_str().unwrap().to_owned();
    let failed = flow
        .wait_state(&format!("/api/v1/promotions/{bad_id}"), &["failed"])
        .await;
    let bad_job = failed["job_id"].as_str().unwrap().to_owned();
    open(&alice, &flow, &format!("/promotions/{bad_id}")).await;
    click(&alice, Locator::Css("a.job")).await;
    watch(&alice, "#job-state", "failed").await;
    let tasks = text(&alice, "table.tasks").await;
    assert!(
        tasks.contains("never became healthy"),
        "the health result is shown: {tasks}"
    );
    check(&alice, &flow, backend, "job-failed").await;
    click(&alice, Locator::LinkText("Roll back…")).await;
    check(&alice, &flow, backend, "confirm-rollback").await;
    confirm(&alice, &["stage-1", &GOOD[7..19]]).await;
    assert!(path(&alice).await.starts_with("/jobs/"));
    flow.wait_state(&format!("/api/v1/jobs/{bad_job}"), &["rolled_back"])
        .await;
    let (_, job) = flow
        .api("GET", &format!("/api/v1/jobs/{bad_job}"), ALICE, None)
        .await;
    let rollback = job["rollback_job_id"]
        .as_str()
        .expect("a rollback job")
        .to_owned();
    flow.wait_state(&format!("/api/v1/jobs/{rollback}"), &["completed"])
        .await;
    open(&alice, &flow, &format!("/jobs/{bad_job}")).await;
    assert!(text(&alice, "a.rollback").await.contains(&rollback[..12]));
    assert!(BAD.contains("bad"));

    // Alice revokes the spare agent.
    open(&alice, &flow, "/agents").await;
    check(&alice, &flow, backend, "agents").await;
    click(&alice, Locator::Css("a[aria-label='Revoke agent-b']")).await;
    confirm(&alice, &["agent-b"]).await;
    assert_eq!(path(&alice).await, "/agents");
    watch(&alice, "tr[data-agent=agent-b]", "revoked").await;
    let (_, agents) = flow.api("GET", "/api/v1/agents", ALICE, None).await;
    let b = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "agent-b")
        .unwrap();
    assert_eq!(b["status"], "revoked");

    // The remaining pages, checked and kept as screenshots.
    for (page, name) in [("/promotions", "promotions"), ("/jobs", "jobs")] {
        open(&alice, &flow, page).await;
        check(&alice, &flow, backend, name).await;
    }
    // At 420 px the pages fit the window; wide tables scroll in their box.
    let narrow_profile = tempfile::tempdir().unwrap();
    let narrow = driver.browser_sized(&narrow_profile, 420, 900).await;
    sign_in(&narrow, &flow, ALICE).await;
    for page in ["/pipeline", "/inbox", &format!("/jobs/{job_id}"), "/agents"] {
        open(&narrow, &flow, page).await;
        let overflow = narrow
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{page} is wider than 420 px by {overflow}"
        );
    }
    screenshot(
        &narrow,
        &screenshot_dir(),
        &format!("flow-{backend:?}-pipeline-420px"),
    )
    .await;
    for b in [alice, bob, narrow] {
        let _ = b.close().await;
    }
    flow.stop().await;
}

#[tokio::test]
async fn the_whole_flow_in_a_browser_on_sqlite() {
    flow_in_the_browser(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_whole_flow_in_a_browser_on_postgres() {
    flow_in_the_browser(Backend::Postgres).await;
}
