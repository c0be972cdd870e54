//! The hub's ordered stop (`Application::run_until_stopped`): the
//! listeners stop accepting and finish the requests in hand, then the
//! stale sweep stops, then the store closes.

use std::net::SocketAddr;
use std::time::Duration;

use sextant_e2e::wait;
use sextant_receiver::Application;
use sextant_receiver::store::{ListQuery, StateQuery};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestDb, hub_config, logs, observed, on_both_backends};

/// The hub's `sextant_receiver_inflight_request_bytes` now.
async fn inflight_bytes(api: SocketAddr) -> Result<u64, String> {
    let text = reqwest::get(format!("http://{api}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("sextant_receiver_inflight_request_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no gauge in {text}"))
}

async fn a_request_in_hand_is_answered_and_kept_before_the_store_closes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = Application::build(&hub_config(&db, |_| {}))
        .await
        .expect("hub builds");
    let (http, api, store) = (app.otlp_http_addr(), app.api_addr(), app.store());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // A request whose body is half sent: the handler holds its announced
    // length of the memory budget while it waits for the rest.
    let at = ("shop", "checkout", "prod", "prod-eu");
    let body = logs(vec![observed(
        "in-hand-1",
        at,
        "sha256:a",
        "succeeded",
        100,
    )])
    .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut conn = TcpStream::connect(http).await.expect("connect");
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(first).await.expect("first half");
    let len = body.len() as u64;
    wait::until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            match inflight_bytes(api).await? {
                n if n >= len => Ok(()),
                n => Err(format!("{n} bytes in flight")),
            }
        },
    )
    .await;

    shutdown.cancel();
    // New connections are refused once the listeners stop accepting.
    wait::until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            match TcpStream::connect(api).await {
                Err(_) => Ok(()),
                Ok(_) => Err("the API still accepts connections".to_owned()),
            }
        },
    )
    .await;
    assert!(!run.is_finished(), "the stop waits for the request in hand");
    // The request in hand finishes and is answered.
    conn.write_all(rest).await.expect("second half");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("answered before the deadline")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    run.await.expect("hub task").expect("hub stops cleanly");
    assert!(store.ping().await.is_err(), "the store is closed last");

    // What was acknowledged is there at the next start.
    let app = Application::build(&hub_config(&db, |_| {}))
        .await
        .expect("hub builds again");
    let hosts = app
        .store()
        .hosts(
            "default",
            &ListQuery {
                filter: StateQuery::default(),
                host: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("hosts");
    assert!(
        hosts.iter().any(|h| h.host == "in-hand-1"),
        "the acknowledged record was kept: {hosts:?}"
    );
}

on_both_backends!(a_request_in_hand_is_answered_and_kept_before_the_store_closes);
