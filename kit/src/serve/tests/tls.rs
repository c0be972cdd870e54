//! The listener kit over TLS and mTLS, with certificates made here.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use sextant_e2e::pki::{CertFiles, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

use super::super::*;
use super::{limits, until_closed};

fn server_tls(pki: &Pki, mutual: bool) -> ServerTls {
    ServerTlsConfig {
        cert_file: Some(pki.server.cert.clone()),
        key_file: Some(pki.server.key.clone()),
        client_ca_file: mutual.then(|| pki.ca_file.clone()),
    }
    .load()
    .expect("TLS settings load")
    .expect("TLS is on")
}

/// A TLS client trusting the test CA, presenting `identity` if given.
fn connector(pki: &Pki, identity: Option<&CertFiles>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca_file).expect("CA") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_file(&files.key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn start_tls(
    tls: ServerTls,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Answers with the names of the client's certificate.
    let router = Router::new().route(
        "/peer",
        get(|Extension(peer): Extension<Peer>| async move {
            match peer.certificate {
                Some(cert) => cert.to_string(),
                None => "anonymous".to_owned(),
            }
        }),
    );
    let shutdown = CancellationToken::new();
    let refused = refused_counter().with_label_values(&["test"]);
    let task = tokio::spawn(serve_http_tls(
        listener,
        router,
        limits(16),
        refused,
        Some(tls),
        shutdown.clone(),
    ));
    (addr, shutdown, task)
}

/// `GET /peer` over TLS; the answer's body, or the error that stopped it.
async fn get_peer(addr: SocketAddr, connector: &TlsConnector) -> Result<String, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(answer
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn tls_serves_and_plain_text_gets_nothing() {
    let pki = Pki::new();
    let (addr, shutdown, task) = start_tls(server_tls(&pki, false)).await;
    let body = get_peer(addr, &connector(&pki, None))
        .await
        .expect("served over TLS");
    assert_eq!(body, "anonymous");
    // Plain HTTP on a TLS port is not an HTTP request.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = until_closed(&mut plain, Duration::from_secs(3)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| !a.contains("HTTP/1.1 200")),
        "{answer:?}"
    );
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn mtls_hands_the_certificate_names_to_requests_and_refuses_others() {
    let pki = Pki::new();
    let (addr, shutdown, task) = start_tls(server_tls(&pki, true)).await;
    let gateway = pki.client_with(
        "edge-gateway-1",
        &["gw.example.com"],
        &["spiffe://example.com/gateway"],
    );
    let body = get_peer(addr, &connector(&pki, Some(&gateway)))
        .await
        .expect("a client with a certificate of the CA is served");
    assert_eq!(
        body,
        "CN=edge-gateway-1, DNS:gw.example.com, URI:spiffe://example.com/gateway"
    );
    // No certificate, or one from another CA: refused in the handshake
    // (TLS 1.3 reports it to the client on its first read).
    let none = get_peer(addr, &connector(&pki, None)).await;
    assert!(none.is_err(), "no certificate: {none:?}");
    let stranger = pki.stranger("edge-gateway-1");
    let other = get_peer(addr, &connector(&pki, Some(&stranger))).await;
    assert!(other.is_err(), "another CA: {other:?}");
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_at_the_header_timeout() {
    let pki = Pki::new();
    let (addr, shutdown, task) = start_tls(server_tls(&pki, true)).await;
    // Silent after connecting.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Half a ClientHello: a record header announcing 512 bytes, then 3.
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .expect("write");
    // A finished handshake, then no request.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let client = pki.client("idle");
    let mut idle = connector(&pki, Some(&client))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let started = tokio::time::Instant::now();
    // The header timeout is 0.5 s, the idle timeout 1.5 s: a handshake
    // that trickles in is cut at the first, not the second.
    let within = Duration::from_millis(1200);
    assert!(until_closed(&mut silent, within).await.is_some(), "silent");
    assert!(until_closed(&mut half, within).await.is_some(), "half");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(within, idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a connection with no request is closed: {read:?}"
    );
    assert!(started.elapsed() < within);
    shutdown.cancel();
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn grpc_connections_come_out_after_their_handshake_with_the_peer() {
    use futures::StreamExt as _;
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let refused = refused_counter().with_label_values(&["test"]);
    let mut incoming = Box::pin(incoming_tls(
        listener,
        limits(16),
        refused,
        Some(server_tls(&pki, true)),
    ));
    // A client stalled in its handshake holds up nobody.
    let _stalled = TcpStream::connect(addr).await.expect("connect");
    let client = pki.client_with("agent-7", &["agent-7.example.com"], &[]);
    let connector = connector(&pki, Some(&client));
    let handshake = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake")
    });
    let connection = tokio::time::timeout(Duration::from_secs(2), incoming.next())
        .await
        .expect("the finished handshake comes first")
        .expect("stream open")
        .expect("connection");
    use tonic::transport::server::Connected as _;
    let peer = connection.connect_info();
    let cert = peer.certificate.expect("client certificate");
    assert!(cert.has(&"CN=agent-7".parse().expect("name")));
    assert!(cert.has(&"DNS:agent-7.example.com".parse().expect("name")));
    assert!(!cert.has(&"CN=agent-8".parse().expect("name")));
    handshake.await.expect("client");
}

#[test]
fn tls_settings_are_checked_at_load() {
    let pki = Pki::new();
    assert!(ServerTlsConfig::default().load().expect("off").is_none());
    let key_only = ServerTlsConfig {
        key_file: Some(pki.server.key.clone()),
        ..ServerTlsConfig::default()
    };
    assert!(matches!(key_only.load(), Err(TlsError::Config(_))));
    let swapped = ServerTlsConfig {
        cert_file: Some(pki.server.key.clone()),
        key_file: Some(pki.server.cert.clone()),
        client_ca_file: None,
    };
    let err = swapped.load().expect_err("a key is no certificate");
    assert!(err.to_string().contains("certificate"), "{err}");
    let other = pki.client("someone");
    let mismatched = ServerTlsConfig {
        cert_file: Some(pki.server.cert.clone()),
        key_file: Some(other.key.clone()),
        client_ca_file: None,
    };
    assert!(mismatched.load().is_err(), "a key of another certificate");
    for bad in ["edge", "CN=", "SAN:x"] {
        assert!(bad.parse::<CertName>().is_err(), "{bad}");
    }
    assert_eq!(
        "URI:spiffe://x/y".parse::<CertName>(),
        Ok(CertName::Uri("spiffe://x/y".into()))
    );
}
