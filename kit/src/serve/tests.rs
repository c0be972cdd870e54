//! The listener kit on real sockets, with short timeouts.

use std::time::Duration;

use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

mod tls;

fn limits(max_connections: usize) -> ListenerLimits {
    ListenerLimits {
        header_timeout_seconds: 0.5,
        request_timeout_seconds: 1.0,
        idle_timeout_seconds: 1.5,
        max_connections,
    }
}

async fn start(
    limits: ListenerLimits,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let shutdown = CancellationToken::new();
    let refused = refused_counter().with_label_values(&["test"]);
    let task = tokio::spawn(serve_http(
        listener,
        router,
        limits,
        refused,
        shutdown.clone(),
    ));
    (addr, shutdown, task)
}

/// Reads until the server closes; what it sent.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn silent_and_half_sent_requests_are_closed() {
    let (addr, shutdown, task) = start(limits(16)).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut half_headers = TcpStream::connect(addr).await.expect("connect");
    half_headers
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let mut half_body = TcpStream::connect(addr).await.expect("connect");
    half_body
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .expect("write");
    let within = Duration::from_secs(4);
    assert_eq!(until_closed(&mut silent, within).await.as_deref(), Some(""));
    assert!(until_closed(&mut half_headers, within).await.is_some());
    let answer = until_closed(&mut half_body, within).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_then_closes_when_idle() {
    let (addr, shutdown, task) = start(limits(16)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("ok"),
            "{text}"
        );
    }
    assert!(until_closed(&mut s, Duration::from_secs(4)).await.is_some());
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn a_slow_handler_gets_408_at_the_request_deadline() {
    let (addr, shutdown, task) = start(limits(16)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("answered at the deadline")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn past_the_cap_a_connection_is_closed_at_once_and_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let refused = refused_counter().with_label_values(&["test"]);
    let shutdown = CancellationToken::new();
    let router = Router::new().route("/", get(|| async { "ok" }));
    let task = tokio::spawn(serve_http(
        listener,
        router,
        limits(2),
        refused.clone(),
        shutdown.clone(),
    ));
    let _a = TcpStream::connect(addr).await.expect("connect");
    let _b = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let closed = until_closed(&mut c, Duration::from_millis(300)).await;
    assert_eq!(
        closed.as_deref(),
        Some(""),
        "closed before the header timeout"
    );
    assert_eq!(refused.get(), 1);
    // Once the idle two are closed by their header timeout, places are free.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut d = TcpStream::connect(addr).await.expect("connect");
    d.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = d.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[test]
fn limits_are_validated_and_fitted_to_the_open_files_limit() {
    assert!(ListenerLimits::default().validate().is_ok());
    let bad = ListenerLimits {
        header_timeout_seconds: 0.0,
        ..ListenerLimits::default()
    };
    assert_eq!(
        bad.validate(),
        Err(LimitsError::Timeout("header_timeout_seconds"))
    );
    let none = ListenerLimits {
        max_connections: 0,
        ..ListenerLimits::default()
    };
    assert_eq!(none.validate(), Err(LimitsError::Connections));
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("limit");
    let fitted = fit_connections(usize::MAX, 3);
    assert_eq!(fitted as u64, (soft - RESERVED_FILES) / 3);
    assert_eq!(fit_connections(5, 3), 5);
}
