//! `sextant up` under a flood of idle connections with the common 1,024
//! open-files limit (docs/security.md, "Listeners"). Before the listener
//! limits, 1,100 idle connections exhausted the file descriptors: accept
//! failed with "Too many open files" on every listener, and ingest and
//! `/health/ready` timed out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sextant_e2e::wait;

const BIN: &str = env!("CARGO_BIN_EXE_sextant");

/// Starts `sextant up` (the hub alone) with its open-files limit at 1,024,
/// soft and hard, so that it cannot raise it; returns the process and the
/// OTLP/gRPC, OTLP/HTTP and API addresses.
fn start_with_1024_files(data: &std::path::Path) -> (Child, [SocketAddr; 3]) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 1024 && exec "$0" "$@""#)
        .arg(BIN)
        .args(["up", "--no-orchestrator"])
        .args([
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args(["--api-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("SEXTANT_CONFIG")
        .env("SEXTANT_LISTENERS__HEADER_TIMEOUT_SECONDS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sextant");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("banner");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let addr = |label: &str| -> SocketAddr {
        banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.trim().strip_prefix("http://"))
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {label} address in:\n{banner}"))
    };
    let addrs = [addr("OTLP/gRPC"), addr("OTLP/HTTP"), addr("API")];
    (child, addrs)
}

/// One HTTP/1.1 request on a new connection; the status line, and how long
/// the answer took. `None` when no answer came within `within`.
fn request(
    addr: SocketAddr,
    head: &str,
    body: &str,
    within: Duration,
) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.lines().next()?.to_owned();
    Some((status, started.elapsed()))
}

#[test]
fn idle_connections_past_the_open_files_limit_leave_health_and_ingest_answering() {
    // This test holds 1,100 sockets itself.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, [grpc, http, api]) = start_with_1024_files(dir.path());

    let mut idle = Vec::new();
    for i in 0..1100 {
        let target = if i % 2 == 0 { http } else { grpc };
        idle.push(TcpStream::connect(target).expect("connect"));
    }
    // Real time: the hub, another process, accepts the connections meanwhile.
    std::thread::sleep(Duration::from_millis(500));

    let ready = request(
        api,
        "GET /health/ready HTTP/1.1",
        "",
        Duration::from_secs(5),
    );
    let ready = ready.expect("/health/ready answers");
    assert!(ready.0.starts_with("HTTP/1.1 200"), "{ready:?}");
    assert!(
        ready.1 < Duration::from_secs(1),
        "/health/ready took {:?} with 1,100 idle connections open",
        ready.1
    );

    // The idle connections hold the OTLP listeners' places until their
    // header timeout (2 s here) closes them; a sender refused meanwhile
    // (closed at once, as at a full listener) retries, and gets through.
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"eventName":"sextant.deployment.observed","attributes":[
        {"key":"host.name","value":{"stringValue":"h1"}},
        {"key":"sextant.application","value":{"stringValue":"shop"}},
        {"key":"sextant.workload","value":{"stringValue":"checkout"}},
        {"key":"deployment.environment.name","value":{"stringValue":"stage"}},
        {"key":"sextant.target","value":{"stringValue":"eu"}},
        {"key":"sextant.revision","value":{"stringValue":"sha256:aa"}},
        {"key":"deployment.status","value":{"stringValue":"succeeded"}}]}]}]}]}"#;
    let ingest = wait::until_blocking(Duration::from_secs(15), Duration::from_millis(250), || {
        request(
            http,
            "POST /v1/logs HTTP/1.1\r\nContent-Type: application/json",
            body,
            Duration::from_secs(5),
        )
        .ok_or("ingest never got through")
    });
    assert!(ingest.0.starts_with("HTTP/1.1 200"), "{ingest:?}");
    let (state, _) = request(
        api,
        "GET /api/v1/hosts HTTP/1.1",
        "",
        Duration::from_secs(5),
    )
    .expect("API answers");
    assert!(state.starts_with("HTTP/1.1 200"), "{state}");
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
}
