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
        "SEXTANT_TOKEN",
        "SEXTANT_ACTOR",
        "SEXTANT_ORCHESTRATOR_ADDR",
        "SEXTANT_ORCHESTRATOR_URL",
        "SEXTANT_AGENT_LISTEN_ADDR",
        "SEXTANT_INSECURE_REGISTRIES",
        "SEXTANT_ORCHESTRATOR_CONFIG",
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
    let (child, banner) = start(up_command(&config, &dir.path().join("data")));
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

/// A `sextant up` that is killed when dropped, so a failed assertion
/// leaves no process behind.
struct Up(Option<Child>);

impl Up {
    /// Stops it as [`terminate`] does.
    fn terminate(mut self) -> Output {
        terminate(self.0.take().expect("still running"))
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `sextant up --config CONFIG` with every listener on port 0, its data
/// in `data`, and only errors logged (so the piped stderr never fills).
fn up_command(config: &std::path::Path, data: &std::path::Path) -> Command {
    let mut cmd = sextant();
    cmd.arg("up")
        .arg("--config")
        .arg(config)
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
        .arg(data);
    if std::env::var_os("TEST_LOG").is_none() {
        cmd.env("RUST_LOG", "error");
    }
    cmd
}

/// [`up_command`] with its data under `dir`, started.
fn up_with(config: &std::path::Path, dir: &std::path::Path) -> (Up, String) {
    let (child, banner) = start(up_command(config, &dir.join("data")));
    (Up(Some(child)), banner)
}

/// A client command against the orchestrator at `base`, with `token` in
/// `SEXTANT_TOKEN` when given and `stdin` as its input.
fn client(base: &str, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = sextant();
    cmd.args(args)
        .args(["--orchestrator", base])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.env("SEXTANT_TOKEN", token);
    }
    let mut child = cmd.spawn().expect("spawn sextant");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        use std::io::Write as _;
        input.write_all(text.as_bytes()).expect("stdin");
    }
    drop(input);
    child.wait_with_output().expect("sextant exits")
}

/// One request to `base`: status and JSON body (`Null` if not JSON).
async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    actor: Option<&str>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .unwrap_or_else(|e| panic!("method {method}: {e}"));
    let mut req = http.request(method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(a) = actor {
        req = req.header("x-sextant-actor", a);
    }
    if method != reqwest::Method::GET {
        req = req.json(&serde_json::json!({}));
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// Every route of the orchestrator: each operation of its OpenAPI
/// document (so a route added later is checked too) with its path
/// parameters filled in, and the HTML job page, which the document leaves
/// out.
async fn orchestrator_routes(http: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let (status, doc) = call(http, "GET", &format!("{base}/api/openapi.json"), None, None).await;
    assert_eq!(status, 200, "the OpenAPI document stays open: {doc}");
    let paths = doc["paths"]
        .as_object()
        .expect("paths in the OpenAPI document");
    let mut routes = vec![("get".to_owned(), "/jobs/no-such-job".to_owned())];
    for (path, ops) in paths {
        let filled: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "no-such-id"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().expect("operations").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.clone(), filled.clone()));
            }
        }
    }
    // The document lists 23 operations today; fewer means it was misread.
    assert!(routes.len() > 20, "{routes:?}");
    routes
}

/// The hub's tokens without subjects (admin, read and ingest).
const HUB_TOKENS: &str = r#"
[[tokens]]
token = "admin-token-0123456789"
tenant = "acme"
scopes = ["admin"]

[[tokens]]
token = "read-token-0123456789"
tenant = "acme"
scopes = ["read"]

[[tokens]]
token = "ingest-token-0123456789"
tenant = "acme"
scopes = ["ingest"]
"#;

/// With `[[tokens]]` in the hub's config, the orchestrator `sextant up`
/// starts takes the same tokens: every route of its API (read from its
/// OpenAPI document, so a route added later is checked too) and the job
/// page answer 401 without a token and 403 to an `ingest`-only token; every
/// route that changes state answers 403 (`forbidden`, naming the `deploy`
/// scope) to a `read` token, which reads. The actor is the token's
/// subject, derived from the token when the config names none, never the
/// `X-Sextant-Actor` header. Health and metrics stay open.
#[tokio::test]
async fn up_orchestrator_refuses_callers_without_the_hub_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(&config, HUB_TOKENS).expect("write config");
    let (up, banner) = up_with(&config, dir.path());
    let base = format!("http://{}", addr(&banner, "orchestrator"));
    let http = reqwest::Client::new();

    let mut wrong = Vec::new();
    for (method, path) in orchestrator_routes(&http, &base).await {
        let url = format!("{base}{path}");
        let changes = method != "get";
        let (status, body) = call(&http, &method, &url, None, Some("mallory")).await;
        if status != 401 || body["error"]["code"] != "unauthenticated" {
            wrong.push(format!("{method} {path} without a token: {status} {body}"));
        }
        let ingest = Some("ingest-token-0123456789");
        let (status, body) = call(&http, &method, &url, ingest, None).await;
        if status != 403 || body["error"]["code"] != "forbidden" {
            wrong.push(format!(
                "{method} {path} with an ingest token: {status} {body}"
            ));
        }
        let read = Some("read-token-0123456789");
        let (status, body) = call(&http, &method, &url, read, None).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        if changes && (status != 403 || !message.contains("`deploy`")) {
            wrong.push(format!(
                "{method} {path} with a read token: {status} {body}"
            ));
        }
        if !changes && matches!(status, 401 | 403) {
            wrong.push(format!(
                "{method} {path} refused a read token: {status} {body}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The actor comes from the token, never from the header.
    let (status, me) = call(
        &http,
        "GET",
        &format!("{base}/api/v1/whoami"),
        Some("admin-token-0123456789"),
        Some("mallory"),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["tenant"], "acme", "{me}");
    let actor = me["actor"].as_str().unwrap_or_default();
    assert!(
        actor.starts_with("token-") && actor.len() == "token-".len() + 8,
        "a subject derived from the token: {me}"
    );
    assert!(!actor.contains("admin-token"), "the token leaked: {me}");

    for path in ["/health", "/health/live", "/health/ready", "/metrics"] {
        let res = http.get(format!("{base}{path}")).send().await.expect(path);
        assert_eq!(res.status(), 200, "{path}");
    }
    up.terminate();
}

/// A hub token's `subject` is the actor the orchestrator records, and
/// the `deploy` scope changes state there while it grants nothing on the
/// hub; the CLI's client commands work with `SEXTANT_TOKEN` against the
/// orchestrator of `sextant up`, and a read token gets exit code 3
/// naming the missing scope.
#[tokio::test]
async fn up_orchestrator_records_the_subject_and_needs_deploy_to_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(
        &config,
        r#"
[[tokens]]
token = "deploy-token-0123456789"
tenant = "acme"
subject = "carol"
scopes = ["deploy"]

[[tokens]]
token = "read-token-0123456789"
tenant = "acme"
subject = "rita"
scopes = ["read"]
"#,
    )
    .expect("write config");
    let (up, banner) = up_with(&config, dir.path());
    let base = format!("http://{}", addr(&banner, "orchestrator"));
    let hub = format!("http://{}", addr(&banner, "API"));
    let http = reqwest::Client::new();
    let deploy = Some("deploy-token-0123456789");

    let (status, me) = call(
        &http,
        "GET",
        &format!("{base}/api/v1/whoami"),
        deploy,
        Some("mallory"),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["actor"], "carol", "{me}");
    assert_eq!(me["tenant"], "acme", "{me}");

    // `deploy` grants nothing on the hub.
    let (status, body) = call(&http, "GET", &format!("{hub}/api/v1/state"), deploy, None).await;
    assert_eq!(status, 403, "{body}");

    // The client commands, with the token from the environment.
    let cli =
        |token: &str, args: &[&str], stdin: Option<&str>| client(&base, Some(token), args, stdin);
    let doc = "environments:\n  - name: dev\n";
    let out = cli("deploy-token-0123456789", &["apply", "-f", "-"], Some(doc));
    assert!(
        out.status.success(),
        "apply with a deploy token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli("deploy-token-0123456789", &["agents", "token"], None);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sxr_"),
        "agents token with a deploy token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli("read-token-0123456789", &["agents", "token"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("forbidden") && stderr.contains("`deploy`"),
        "{stderr}"
    );
    let out = cli("read-token-0123456789", &["promotions", "list"], None);
    assert!(
        out.status.success(),
        "promotions with a read token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli("not-a-token-0123456789", &["promotions", "list"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    up.terminate();
}

/// A fresh `sextant up` (no job has run yet) serves `/metrics` on the hub
/// and on its orchestrator at once: 200 in the text format Prometheus
/// scrapes.
#[tokio::test]
async fn up_serves_metrics_before_any_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(&config, "").expect("write config");
    let (up, banner) = up_with(&config, dir.path());
    let http = reqwest::Client::new();
    for label in ["API", "orchestrator"] {
        let url = format!("http://{}/metrics", addr(&banner, label));
        let res = http.get(&url).send().await.expect("metrics");
        let status = res.status();
        let ctype = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = res.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(ctype, "text/plain; version=0.0.4", "{url}");
    }
    up.terminate();
}

/// With `metrics_require_token`, the hub's and the orchestrator's
/// `/metrics` answer only a token with the `metrics` (or `admin`) scope.
#[tokio::test]
async fn up_metrics_can_require_a_metrics_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sextant.toml");
    std::fs::write(
        &config,
        r#"metrics_require_token = true
[[tokens]]
token = "scraper-token-0001"
tenant = "acme"
scopes = ["metrics"]
[[tokens]]
token = "reader-token-00001"
tenant = "acme"
scopes = ["read"]
"#,
    )
    .expect("write config");
    let (up, banner) = up_with(&config, dir.path());
    let http = reqwest::Client::new();
    for label in ["API", "orchestrator"] {
        let url = format!("http://{}/metrics", addr(&banner, label));
        for (token, expected) in [
            (None, 401),
            (Some("reader-token-00001"), 403),
            (Some("scraper-token-0001"), 200),
        ] {
            let mut req = http.get(&url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.expect("metrics");
            assert_eq!(res.status(), expected, "{url} with {token:?}");
        }
    }
    up.terminate();
}

/// `--tls-cert`/`--tls-key`/`--tls-client-ca` on the command line: the
/// banner says https, the API answers over mTLS to a client certificate
/// of the CA and refuses one without; the orchestrator, which cannot yet
/// reach a TLS hub, must be turned off.
#[tokio::test]
async fn up_serves_mtls_from_its_flags() {
    let pki = sextant_e2e::pki::Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_flags = |cmd: &mut Command| {
        cmd.args(["up", "--data-dir"])
            .arg(dir.path())
            .args(["--otlp-grpc-addr", "127.0.0.1:0"])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .args(["--api-addr", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&pki.server.cert)
            .arg("--tls-key")
            .arg(&pki.server.key)
            .arg("--tls-client-ca")
            .arg(&pki.ca_file);
    };
    let mut with_orchestrator = sextant();
    tls_flags(&mut with_orchestrator);
    let out = with_orchestrator.output().expect("run sextant up");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--no-orchestrator"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cmd = sextant();
    tls_flags(&mut cmd);
    cmd.arg("--no-orchestrator");
    let (child, banner) = start(cmd);
    let api = banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("health"))
        .and_then(|rest| rest.trim().strip_prefix("https://"))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("an https health address in:\n{banner}"));
    assert!(banner.contains("OTLP/gRPC    https://"), "{banner}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_file).expect("CA")).expect("CA");
    let client = |identity: Option<&sextant_e2e::pki::CertFiles>| {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone());
        if let Some(files) = identity {
            let mut pem = std::fs::read(&files.cert).expect("cert");
            pem.extend(std::fs::read(&files.key).expect("key"));
            b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        b.build().expect("client")
    };
    let url = format!("https://localhost:{}/health/ready", api.port());
    let reader = pki.client("reader");
    let answer = client(Some(&reader)).get(&url).send().await.expect("mTLS");
    assert_eq!(answer.status(), 200);
    assert!(
        client(None).get(&url).send().await.is_err(),
        "no certificate"
    );
    terminate(child);
}

/// Issue 20: `sextant up` takes the orchestrator's own settings as
/// `sextant orchestrator` does, by environment, flag and file. The case
/// that failed: a plain-HTTP registry named in
/// `SEXTANT_INSECURE_REGISTRIES` was still asked over HTTPS. Here the
/// registry (a closed port) is only ever asked, never answers: the error
/// names the URL the orchestrator tried.
#[test]
fn up_takes_the_orchestrators_settings_by_environment_flag_and_file() {
    let registry = "127.0.0.1:9";
    let dir = tempfile::tempdir().expect("temp dir");
    let orchestrator_toml = dir.path().join("orchestrator.toml");
    std::fs::write(
        &orchestrator_toml,
        format!("insecure_registries = [\"{registry}\"]\nlease = \"20s\"\n"),
    )
    .expect("write orchestrator config");
    // How the setting is given: its name, the flags, the variables.
    type Way<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>);
    let ways: [Way<'_>; 4] = [
        (
            "environment",
            vec![],
            vec![("SEXTANT_INSECURE_REGISTRIES", registry)],
        ),
        (
            "flag",
            vec!["--insecure-registry".into(), registry.into()],
            vec![],
        ),
        (
            "file",
            vec![
                "--orchestrator-config".into(),
                orchestrator_toml.display().to_string(),
            ],
            vec![],
        ),
        ("none", vec![], vec![]),
    ];
    for (i, (how, flags, env)) in ways.into_iter().enumerate() {
        let config = dir.path().join(format!("sextant-{i}.toml"));
        std::fs::write(&config, "").expect("write config");
        let data = dir.path().join(format!("up-{i}"));
        std::fs::create_dir_all(&data).expect("data dir");
        let mut cmd = up_command(&config, &data);
        cmd.args(&flags).envs(env.iter().copied());
        let (child, banner) = start(cmd);
        let up = Up(Some(child));
        let base = format!("http://{}", addr(&banner, "orchestrator"));
        let cli = |args: &[&str], stdin: Option<&str>| client(&base, None, args, stdin);
        let doc = format!(
            "environments:\n  - name: dev\ncomponents:\n  - name: web\n    image: {registry}/web\n"
        );
        let out = cli(&["apply", "-f", "-"], Some(&doc));
        assert!(
            out.status.success(),
            "{how}: apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cli(&["release", "create", "r1", "--component", "web=:v1"], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{how}: the registry never answers");
        if how == "none" {
            assert!(
                stderr.contains(&format!("https://{registry}/v2/")),
                "{how}: {stderr}"
            );
            assert!(stderr.contains("--insecure-registry"), "{how}: {stderr}");
        } else {
            assert!(
                stderr.contains(&format!("http://{registry}/v2/")),
                "{how}: {stderr}"
            );
        }
        up.terminate();
    }
}
