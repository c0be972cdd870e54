//! `sextant up` as a process: where it listens, where its data goes, which
//! settings win, and what it refuses.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sextant");

fn sextant() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "SEXTANT_CONFIG",
        "SEXTANT_OTLP_GRPC_ADDR",
        "SEXTANT_OTLP_HTTP_ADDR",
        "SEXTANT_API_ADDR",
        "SEXTANT_DATABASE_URL",
        "SEXTANT_DATA_DIR",
        "SEXTANT_MAX_REQUEST_BYTES",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts `cmd` and returns it with the banner it printed.
fn start(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sextant");
    let mut banner = String::new();
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("banner line");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            return (child, banner);
        }
    }
    let out = child.wait_with_output().expect("sextant exits");
    panic!(
        "sextant up stopped before it was up ({}):\n{banner}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address printed after `label` in the banner.
fn addr(banner: &str, label: &str) -> std::net::SocketAddr {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {label} address in:\n{banner}"))
}

/// Sends SIGTERM and waits for a clean exit.
fn terminate(child: Child) -> Output {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child.wait_with_output().expect("sextant exits")
}

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn up_prints_where_it_listens_and_keeps_sqlite_in_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut cmd = sextant();
    cmd.args([
        "up",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
    ])
    .args(["--api-addr", "127.0.0.1:0", "--data-dir"])
    .arg(&data);
    let (child, banner) = start(cmd);

    assert!(banner.contains("sqlite database"), "{banner}");
    assert!(
        banner.contains(&format!("sqlite://{}/hub.db", data.display())),
        "{banner}"
    );
    assert!(
        data.join("hub.db").exists(),
        "no database file in the data dir"
    );
    let (grpc, http, api) = (
        addr(&banner, "OTLP/gRPC"),
        addr(&banner, "OTLP/HTTP"),
        addr(&banner, "API"),
    );
    assert!(
        grpc.port() != 0 && http.port() != 0 && api.port() != 0,
        "{banner}"
    );
    let ready = get(api, "/health/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // The banner names the UI, served at the API address.
    assert_eq!(addr(&banner, "UI"), api, "{banner}");
    assert!(
        banner
            .lines()
            .any(|l| l.trim() == format!("UI           http://{api}/")),
        "{banner}"
    );
    let home = get(api, "/");
    assert!(
        home.starts_with("HTTP/1.1 200")
            && home
                .to_ascii_lowercase()
                .contains("content-type: text/html")
            && home.contains("What runs where"),
        "{home}"
    );
    let state = get(api, "/api/v1/state");
    assert!(
        state.starts_with("HTTP/1.1 200") && state.ends_with("[]"),
        "{state}"
    );

    let out = terminate(child);
    assert!(out.status.success(), "exit on SIGTERM: {}", out.status);
}

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(
        &config,
        format!(
            "api_addr = \"127.0.0.1:1\"\notlp_grpc_addr = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            dir.path().join("from-file").display()
        ),
    )
    .expect("write config");
    let mut cmd = sextant();
    cmd.arg("up")
        .arg("--config")
        .arg(&config)
        .args(["--otlp-http-addr", "127.0.0.1:0"])
        .env("SEXTANT_API_ADDR", "127.0.0.1:0")
        .env("SEXTANT_OTLP_HTTP_ADDR", "127.0.0.1:2")
        .env("SEXTANT_DATA_DIR", dir.path().join("from-env"));
    let (child, banner) = start(cmd);
    // File < environment: the API and data dir come from the environment.
    assert_ne!(addr(&banner, "API").port(), 1, "{banner}");
    assert!(dir.path().join("from-env/hub.db").exists(), "{banner}");
    assert!(!dir.path().join("from-file").exists(), "{banner}");
    // Environment < flag.
    assert_ne!(addr(&banner, "OTLP/HTTP").port(), 2, "{banner}");
    let out = terminate(child);
    assert!(out.status.success());
}

#[test]
fn a_non_loopback_address_without_tokens_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = sextant()
        .args([
            "up",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args(["--api-addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run sextant");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on non-loopback address 0.0.0.0:0 with no tokens"),
        "{stderr}"
    );
}

#[test]
fn a_broken_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(&config, "api_addr = \"not an address\"\n").expect("write config");
    let out = sextant()
        .arg("up")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run sextant");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid configuration") && stderr.contains("api_addr"),
        "{stderr}"
    );
}

/// The hub's `[rate_limits.api]` also limits the API of the orchestrator
/// `sextant up` starts beside it: per tenant, 429 with Retry-After once the
/// burst is spent; health stays unlimited.
#[test]
fn up_limits_its_orchestrator_api_at_the_hub_api_rate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(&config, "[rate_limits.api]\nper_second = 0.1\nburst = 2\n")
        .expect("write config");
    let mut cmd = sextant();
    cmd.arg("up")
        .arg("--config")
        .arg(&config)
        .args([
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--api-addr",
            "127.0.0.1:0",
            "--orchestrator-addr",
            "127.0.0.1:0",
        ])
        .args(["--agent-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"));
    let (child, banner) = start(cmd);
    let orchestrator = addr(&banner, "orchestrator");
    let statuses: Vec<String> = (0..3)
        .map(|_| get(orchestrator, "/api/v1/environments"))
        .collect();
    assert!(statuses[0].starts_with("HTTP/1.1 200"), "{}", statuses[0]);
    assert!(statuses[1].starts_with("HTTP/1.1 200"), "{}", statuses[1]);
    let limited = &statuses[2];
    assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
    assert!(
        limited.to_ascii_lowercase().contains("retry-after: "),
        "{limited}"
    );
    let health = get(orchestrator, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    terminate(child);
}
