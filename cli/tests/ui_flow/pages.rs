//! The flow pages over plain HTTP (no browser): who sees which buttons,
//! the CSRF check, the orchestrator's refusals shown in words, sign-in.

use std::time::Duration;

use sextant_e2e::Backend;

use crate::stack::{ALICE, BOB, DEPLOYER, Flow, VIEWER};

/// GETs a hub page as `token` (in the cookie the sign-in sets).
async fn page(flow: &Flow, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = flow.http.get(format!("{}{path}", flow.hub));
    if let Some(t) = token {
        req = req.header("cookie", format!("sextant_token={t}"));
    }
    let res = req.send().await.expect("the hub answers");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// POSTs a form to the hub as `token`.
async fn post(flow: &Flow, path: &str, token: &str, form: &[(&str, &str)]) -> (u16, String) {
    let res = flow
        .http
        .post(format!("{}{path}", flow.hub))
        .header("cookie", format!("sextant_token={token}"))
        .form(form)
        .send()
        .await
        .expect("the hub answers");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// The `csrf` field of a confirmation page.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the form has a CSRF token");
    let rest = &html[at + 19..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn pages_show_what_each_person_may_do_and_refuse_in_words() {
    let flow = Flow::start(Backend::Sqlite, Duration::from_millis(100)).await;
    // Alice promotes `good` into prod, which needs an approval.
    let (status, p) = flow
        .api(
            "POST",
            "/api/v1/promotions",
            ALICE,
            Some(serde_json::json!({"release": "good", "environment": "prod"})),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    flow.wait_state(&format!("/api/v1/promotions/{id}"), &["awaiting_approval"])
        .await;

    // Nobody signed in: the sign-in form, not a blank page.
    let (status, html) = page(&flow, "/pipeline", None).await;
    assert_eq!(status, 401, "{html}");
    assert!(html.contains("name=\"token\""), "{html}");

    // The viewer reads every page but is offered no action.
    for path in [
        "/pipeline",
        "/releases",
        "/promotions",
        "/inbox",
        "/jobs",
        "/agents",
        &format!("/promotions/{id}"),
    ] {
        let (status, html) = page(&flow, path, Some(VIEWER)).await;
        assert_eq!(status, 200, "{path}: {html}");
        for button in [
            "Approve…",
            "Promote",
            "Revoke…",
            "Cancel…",
            "Create a registration token",
        ] {
            assert!(
                !html.contains(button),
                "{path} offers {button:?} to a read-only token"
            );
        }
    }
    // Bob, who may approve, is offered it; Alice, who asked, is told why not.
    let (_, html) = page(&flow, &format!("/promotions/{id}"), Some(BOB)).await;
    assert!(html.contains("Approve…"), "{html}");
    let (_, html) = page(&flow, &format!("/promotions/{id}"), Some(ALICE)).await;
    assert!(!html.contains("Approve…"), "{html}");
    assert!(html.contains("You requested this promotion"), "{html}");
    let (_, inbox) = page(&flow, "/inbox", Some(BOB)).await;
    let (mine, _) = inbox
        .split_once("Waiting for someone else")
        .unwrap_or((&inbox, ""));
    assert!(
        mine.contains(&id),
        "Bob's inbox lacks the promotion: {inbox}"
    );
    let (_, inbox) = page(&flow, "/inbox", Some(ALICE)).await;
    assert!(inbox.contains("Nothing is waiting for you"), "{inbox}");

    // A form without its CSRF token, or with another session's, is refused
    // before the orchestrator is asked.
    let (_, confirm) = page(
        &flow,
        &format!("/actions/approve?promotion={id}"),
        Some(BOB),
    )
    .await;
    let bobs = csrf(&confirm);
    let (status, html) = post(&flow, "/actions/approve", BOB, &[("promotion", &id)]).await;
    assert_eq!(status, 403, "{html}");
    let (status, html) = post(
        &flow,
        "/actions/approve",
        BOB,
        &[("promotion", &id), ("csrf", "00ff")],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    let (status, html) = post(
        &flow,
        "/actions/approve",
        ALICE,
        &[("promotion", &id), ("csrf", &bobs)],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("CSRF"), "{html}");
    let (_, still) = flow
        .api("GET", &format!("/api/v1/promotions/{id}"), ALICE, None)
        .await;
    assert_eq!(still["state"], "awaiting_approval");
    assert_eq!(still["approvals"], serde_json::json!([]));

    // The orchestrator's own rule, in its words: Alice cannot approve what
    // she requested, even with a valid form.
    let (_, confirm) = page(
        &flow,
        &format!("/actions/approve?promotion={id}"),
        Some(ALICE),
    )
    .await;
    assert!(
        confirm.contains("prod-1"),
        "the confirmation names the targets: {confirm}"
    );
    let (status, html) = post(
        &flow,
        "/actions/approve",
        ALICE,
        &[("promotion", &id), ("csrf", &csrf(&confirm))],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("The orchestrator refused:"), "{html}");
    assert!(
        html.contains("may not approve it"),
        "the API's reason is shown: {html}"
    );
    // The viewer's form is refused by the API's scopes.
    let (_, confirm) = page(
        &flow,
        &format!("/actions/approve?promotion={id}"),
        Some(VIEWER),
    )
    .await;
    let (status, html) = post(
        &flow,
        "/actions/approve",
        VIEWER,
        &[("promotion", &id), ("csrf", &csrf(&confirm))],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("The orchestrator refused:"), "{html}");

    // Bob's approval goes through and lands on the promotion.
    let (status, html) = post(
        &flow,
        "/actions/approve",
        BOB,
        &[
            ("promotion", &id),
            ("csrf", &bobs),
            ("comment", "looks good"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let done = flow
        .wait_state(&format!("/api/v1/promotions/{id}"), &["deployed"])
        .await;
    assert_eq!(done["approvals"][0]["approver"], "bob");
    assert_eq!(done["approvals"][0]["comment"], "looks good");

    // A manual gate, opened from its page: an environment `canary` whose
    // promotions wait for the gate `signoff`, which the pipeline says.
    let canary = serde_json::json!({
        "environments": [{"name": "canary", "order": 4, "gates": [{"type": "manual", "name": "signoff"}]}],
        "targets": [{"name": "canary-1", "environment": "canary", "agent": {"selector": {"pool": "a"}}}],
    });
    let (status, body) = flow.api("POST", "/api/v1/apply", ALICE, Some(canary)).await;
    assert_eq!(status, 200, "{body}");
    let (_, p) = flow
        .api(
            "POST",
            "/api/v1/promotions",
            ALICE,
            Some(serde_json::json!({"release": "good", "environment": "canary"})),
        )
        .await;
    let gated = p["id"].as_str().unwrap().to_owned();
    flow.wait_state(
        &format!("/api/v1/promotions/{gated}"),
        &["awaiting_approval"],
    )
    .await;
    let (_, pipeline) = page(&flow, "/pipeline", Some(BOB)).await;
    assert!(
        pipeline.contains("manual:signoff"),
        "the pipeline says what it waits for: {pipeline}"
    );
    let (_, inbox) = page(&flow, "/inbox", Some(BOB)).await;
    let (mine, _) = inbox
        .split_once("Waiting for someone else")
        .unwrap_or((&inbox, ""));
    assert!(
        !mine.contains(&gated),
        "a gate is not an approval for Bob: {inbox}"
    );
    let (_, html) = page(&flow, &format!("/promotions/{gated}"), Some(BOB)).await;
    assert!(html.contains("Open gate signoff…"), "{html}");
    let (_, confirm) = page(
        &flow,
        &format!("/actions/gate-open?promotion={gated}&gate=signoff"),
        Some(BOB),
    )
    .await;
    assert!(
        confirm.contains("Open the manual gate signoff"),
        "{confirm}"
    );
    let (status, html) = post(
        &flow,
        "/actions/gate-open",
        BOB,
        &[
            ("promotion", &gated),
            ("gate", "signoff"),
            ("csrf", &csrf(&confirm)),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    flow.wait_state(&format!("/api/v1/promotions/{gated}"), &["deployed"])
        .await;

    // Alice cancels a promotion she no longer wants.
    let (_, p) = flow
        .api(
            "POST",
            "/api/v1/promotions",
            ALICE,
            Some(serde_json::json!({"release": "newer", "environment": "prod"})),
        )
        .await;
    let unwanted = p["id"].as_str().unwrap().to_owned();
    flow.wait_state(
        &format!("/api/v1/promotions/{unwanted}"),
        &["awaiting_approval"],
    )
    .await;
    let (_, confirm) = page(
        &flow,
        &format!("/actions/cancel?promotion={unwanted}"),
        Some(ALICE),
    )
    .await;
    let (status, html) = post(
        &flow,
        "/actions/cancel",
        ALICE,
        &[("promotion", &unwanted), ("csrf", &csrf(&confirm))],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let cancelled = flow
        .wait_state(&format!("/api/v1/promotions/{unwanted}"), &["cancelled"])
        .await;
    assert!(
        cancelled["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "alice"),
        "{cancelled}"
    );

    // A registration token, shown once, for a new agent.
    let (_, confirm) = page(&flow, "/actions/agent-token", Some(BOB)).await;
    assert!(confirm.contains("name=\"ttl_hours\""), "{confirm}");
    let (status, html) = post(
        &flow,
        "/actions/agent-token",
        BOB,
        &[("ttl_hours", "2"), ("csrf", &csrf(&confirm))],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let at = html
        .find("id=\"registration-token\">")
        .expect("the token is shown");
    let token = &html[at + 24..];
    let token = &token[..token.find('<').unwrap()];
    assert!(token.len() > 20, "{token}");
    let (status, html) = post(
        &flow,
        "/actions/agent-token",
        BOB,
        &[("ttl_hours", "0"), ("csrf", &csrf(&confirm))],
    )
    .await;
    assert_eq!(status, 400, "{html}");

    // An unknown action or a missing parameter is a page in words.
    let (status, html) = page(&flow, "/actions/explode", Some(BOB)).await;
    assert_eq!(status, 404, "{html}");
    let (status, html) = page(&flow, "/actions/approve", Some(BOB)).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("needs `promotion`"), "{html}");

    // A token only the orchestrator knows signs in; the hub's own pages
    // then ask for a token that can read the hub.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects
        .post(format!("{}/login", flow.hub))
        .form(&[("token", DEPLOYER)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("sextant_token={DEPLOYER};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (status, html) = page(&flow, "/pipeline", Some(DEPLOYER)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("cannot read the hub"), "{html}");
    let res = no_redirects
        .post(format!("{}/login", flow.hub))
        .form(&[("token", "nobody-knows-this-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    flow.stop().await;
}

#[tokio::test]
async fn a_hub_without_an_orchestrator_says_so() {
    let db = sextant_e2e::TestDb::new(Backend::Sqlite).await;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = sextant_receiver::HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(db.url.clone()),
        ..Default::default()
    };
    let app = sextant_receiver::Application::build(&config).await.unwrap();
    let base = format!("http://{}", app.api_addr());
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(cancel.clone()));
    let res = reqwest::get(format!("{base}/pipeline")).await.unwrap();
    assert_eq!(res.status().as_u16(), 503);
    let html = res.text().await.unwrap();
    assert!(html.contains("knows no orchestrator"), "{html}");
    cancel.cancel();
    let _ = task.await;
}
