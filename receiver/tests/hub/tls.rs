//! TLS and mTLS on the hub's three listeners, with certificates made here:
//! each listener serves TLS; with a client CA, a client without a
//! certificate, or with one from another CA, is refused at the handshake;
//! a mapped client certificate authenticates OTLP without a token, into
//! its own tenant; an unmapped one needs a token.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use serde_json::Value;
use sextant_e2e::pki::{CertFiles, Pki};
use sextant_kit::serve::ServerTlsConfig;
use sextant_receiver::auth::ClientCertConfig;
use tokio::io::AsyncReadExt as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::helpers::{Backend, TestApp, logs, observed, on_both_backends, spawn_app_with, token};

const AT: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");

/// A hub on `pki`'s server certificate; with `mutual`, requiring client
/// certificates of its CA, `CN=edge-gateway-1` mapped to tenant `acme`
/// and `DNS:gw.globex.example` to `globex`, both for ingest.
async fn hub(b: Backend, pki: &Pki, mutual: bool) -> TestApp {
    spawn_app_with(b, |c| {
        c.tls = ServerTlsConfig {
            cert_file: Some(pki.server.cert.clone()),
            key_file: Some(pki.server.key.clone()),
            client_ca_file: mutual.then(|| pki.ca_file.clone()),
        };
        c.tokens = vec![
            token("acme-token", "acme", &["ingest", "read"]),
            token("globex-token", "globex", &["ingest", "read"]),
        ];
        if mutual {
            c.client_certs = vec![
                ClientCertConfig {
                    subject: "CN=edge-gateway-1".parse().expect("name"),
                    tenant: "acme".into(),
                    scopes: serde_json::from_value(serde_json::json!(["ingest"])).expect("scopes"),
                },
                ClientCertConfig {
                    subject: "DNS:gw.globex.example".parse().expect("name"),
                    tenant: "globex".into(),
                    scopes: serde_json::from_value(serde_json::json!(["ingest"])).expect("scopes"),
                },
            ];
        }
        c.listeners.header_timeout_seconds = 1.0;
    })
    .await
}

/// An https client trusting the test CA, presenting `identity` if given.
fn https(pki: &Pki, identity: Option<&CertFiles>) -> reqwest::Client {
    let ca = std::fs::read(&pki.ca_file).expect("CA");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"));
    if let Some(files) = identity {
        let mut pem = std::fs::read(&files.cert).expect("cert");
        pem.extend(std::fs::read(&files.key).expect("key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

/// A gRPC channel over TLS to `addr`, presenting `identity` if given.
async fn grpc(
    addr: std::net::SocketAddr,
    pki: &Pki,
    identity: Option<&CertFiles>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(&pki.ca_file).expect("CA"),
        ))
        .domain_name("localhost");
    if let Some(files) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&files.cert).expect("cert"),
            std::fs::read(&files.key).expect("key"),
        ));
    }
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

fn batch(host: &str) -> Value {
    logs(vec![observed(host, AT, "sha256:aa", "succeeded", 1)])
}

async fn post_logs(
    client: &reqwest::Client,
    app: &TestApp,
    body: &Value,
    token: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = client
        .post(format!("https://localhost:{}/v1/logs", app.http.port()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await
}

async fn export_grpc(
    channel: Channel,
    body: &Value,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let message: ExportLogsServiceRequest = serde_json::from_value(body.clone()).expect("request");
    let mut request = tonic::Request::new(message);
    if let Some(t) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    LogsServiceClient::new(channel)
        .export(request)
        .await
        .map(|_| ())
}

/// The hosts of `tenant`'s state, read over https with its token.
async fn hosts(client: &reqwest::Client, app: &TestApp, tenant_token: &str) -> Vec<String> {
    let state: Value = client
        .get(format!("https://localhost:{}/api/v1/state", app.api.port()))
        .bearer_auth(tenant_token)
        .send()
        .await
        .expect("API over TLS")
        .json()
        .await
        .expect("json");
    let mut hosts: Vec<String> = state
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["hosts"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h["host"].as_str().map(str::to_owned))
        .collect();
    hosts.sort();
    hosts
}

async fn every_listener_serves_tls(b: Backend) {
    let pki = Pki::new();
    let app = hub(b, &pki, false).await;
    let client = https(&pki, None);
    let ready = client
        .get(format!("https://localhost:{}/health/ready", app.api.port()))
        .send()
        .await
        .expect("API over TLS");
    assert_eq!(ready.status(), 200);
    let answer = post_logs(&client, &app, &batch("http-host"), Some("acme-token"))
        .await
        .expect("OTLP/HTTP over TLS");
    assert_eq!(answer.status(), 200);
    let channel = grpc(app.grpc, &pki, None)
        .await
        .expect("OTLP/gRPC over TLS");
    export_grpc(channel, &batch("grpc-host"), Some("acme-token"))
        .await
        .expect("export over TLS");
    assert_eq!(
        hosts(&client, &app, "acme-token").await,
        ["grpc-host", "http-host"]
    );
    // Plain text gets no answer from a TLS listener.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/health/ready", app.api))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // And a TLS client that does not trust the hub's CA refuses it.
    let stranger = reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .expect("client");
    let untrusted = stranger
        .get(format!("https://localhost:{}/health/ready", app.api.port()))
        .send()
        .await;
    assert!(untrusted.is_err(), "{untrusted:?}");
    // Under TLS the UI's sign-in cookie is `Secure` as well.
    let no_redirects = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_file).expect("CA")).expect("CA"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = no_redirects
        .post(format!("https://localhost:{}/login", app.api.port()))
        .form(&[("token", "acme-token")])
        .send()
        .await
        .expect("sign in over TLS");
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().expect("ascii");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
    app.stop().await;
}

async fn mtls_refuses_no_certificate_and_another_ca_at_the_handshake(b: Backend) {
    let pki = Pki::new();
    let app = hub(b, &pki, true).await;
    let stranger = pki.stranger("edge-gateway-1");
    for identity in [None, Some(&stranger)] {
        let client = https(&pki, identity);
        for url in [
            format!("https://localhost:{}/health/ready", app.api.port()),
            format!("https://localhost:{}/v1/logs", app.http.port()),
        ] {
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .bearer_auth("acme-token")
                .body(batch("x").to_string())
                .send()
                .await;
            assert!(answer.is_err(), "{url} with {identity:?}: {answer:?}");
        }
        let grpc_result = match grpc(app.grpc, &pki, identity).await {
            Err(_) => None,
            Ok(channel) => Some(export_grpc(channel, &batch("x"), Some("acme-token")).await),
        };
        assert!(
            grpc_result.as_ref().is_none_or(Result::is_err),
            "gRPC with {identity:?}: {grpc_result:?}"
        );
    }
    // A connection that never starts its handshake is closed at the
    // header timeout (1 s here), on every listener.
    for addr in [app.grpc, app.http, app.api] {
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{addr}: a silent connection is closed: {read:?}"
        );
    }
    assert!(app.db.count("observed_deployments").await == 0);
    app.stop().await;
}

async fn a_mapped_certificate_lands_in_its_tenant_and_an_unmapped_one_needs_a_token(b: Backend) {
    let pki = Pki::new();
    let app = hub(b, &pki, true).await;
    // CN=edge-gateway-1 is acme's, over OTLP/HTTP, no token.
    let acme_gateway = pki.client("edge-gateway-1");
    let answer = post_logs(
        &https(&pki, Some(&acme_gateway)),
        &app,
        &batch("acme-host"),
        None,
    )
    .await
    .expect("served");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    // DNS:gw.globex.example is globex's, over OTLP/gRPC, no token.
    let globex_gateway = pki.client_with("globex-gw", &["gw.globex.example"], &[]);
    let channel = grpc(app.grpc, &pki, Some(&globex_gateway))
        .await
        .expect("connect");
    export_grpc(channel, &batch("globex-host"), None)
        .await
        .expect("a mapped certificate needs no token");

    // Unmapped: 401 / UNAUTHENTICATED naming the certificate, unless a
    // token comes with it.
    let unmapped = pki.client("someone-else");
    let client = https(&pki, Some(&unmapped));
    let answer = post_logs(&client, &app, &batch("nobody"), None)
        .await
        .expect("served");
    assert_eq!(answer.status(), 401);
    let channel = grpc(app.grpc, &pki, Some(&unmapped))
        .await
        .expect("connect");
    let status = export_grpc(channel.clone(), &batch("nobody"), None)
        .await
        .expect_err("unmapped");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("CN=someone-else"), "{status:?}");
    export_grpc(channel, &batch("token-host"), Some("globex-token"))
        .await
        .expect("an unmapped certificate with a token");
    // A mapped certificate does not grant what its scopes lack: the
    // gateway's certificate has `ingest`, not `read`.
    let read = https(&pki, Some(&acme_gateway))
        .get(format!("https://localhost:{}/api/v1/state", app.api.port()))
        .send()
        .await
        .expect("served");
    assert_eq!(read.status(), 403);

    // Each tenant sees what its certificate (or token) sent, and only that.
    assert_eq!(hosts(&client, &app, "acme-token").await, ["acme-host"]);
    assert_eq!(
        hosts(&client, &app, "globex-token").await,
        ["globex-host", "token-host"]
    );
    app.stop().await;
}

/// A certificate mapped with `read` reads the API and the UI with no
/// token, its own tenant only; one mapped with `ingest` alone does not.
async fn a_certificate_with_read_reads_the_api_and_the_ui(b: Backend) {
    let pki = Pki::new();
    let app = spawn_app_with(b, |c| {
        c.tls = ServerTlsConfig {
            cert_file: Some(pki.server.cert.clone()),
            key_file: Some(pki.server.key.clone()),
            client_ca_file: Some(pki.ca_file.clone()),
        };
        c.tokens = vec![token("acme-token", "acme", &["ingest", "read"])];
        c.client_certs = vec![
            ClientCertConfig {
                subject: "CN=dashboard".parse().expect("name"),
                tenant: "acme".into(),
                scopes: serde_json::from_value(serde_json::json!(["read"])).expect("scopes"),
            },
            ClientCertConfig {
                subject: "CN=edge-gateway-1".parse().expect("name"),
                tenant: "acme".into(),
                scopes: serde_json::from_value(serde_json::json!(["ingest"])).expect("scopes"),
            },
        ];
    })
    .await;
    let with_token = https(&pki, Some(&pki.client("edge-gateway-1")));
    let answer = post_logs(&with_token, &app, &batch("acme-host"), Some("acme-token"))
        .await
        .expect("served");
    assert_eq!(answer.status(), 200);
    let dashboard = https(&pki, Some(&pki.client("dashboard")));
    let api = format!("https://localhost:{}", app.api.port());
    let hosts: Value = dashboard
        .get(format!("{api}/api/v1/hosts"))
        .send()
        .await
        .expect("served")
        .json()
        .await
        .expect("json");
    assert_eq!(hosts["items"][0]["host"], "acme-host", "{hosts}");
    let page = dashboard
        .get(format!("{api}/hosts/acme-host"))
        .send()
        .await
        .expect("served");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("acme-host"));
    let gateway = https(&pki, Some(&pki.client("edge-gateway-1")));
    let refused = gateway
        .get(format!("{api}/api/v1/hosts"))
        .send()
        .await
        .expect("served");
    assert_eq!(refused.status(), 403, "ingest only");
    app.stop().await;
}

on_both_backends!(
    a_certificate_with_read_reads_the_api_and_the_ui,
    every_listener_serves_tls,
    mtls_refuses_no_certificate_and_another_ca_at_the_handshake,
    a_mapped_certificate_lands_in_its_tenant_and_an_unmapped_one_needs_a_token,
);
