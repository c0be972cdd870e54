//! The sender over TLS: a CA made here (rcgen) signs a certificate for
//! 127.0.0.1 and localhost; the scripted peers of `scripted.rs` serve it,
//! OTLP/HTTP behind tokio-rustls and OTLP/gRPC with tonic's
//! `ServerTlsConfig`, optionally asking for a client certificate (mTLS).

use sextant_kit::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sextant_exporters::sender::{
    self, ExportOutcome, FailureReason, GrpcConfig, GrpcTransport, HttpConfig, HttpTransport,
    LogsRequest, TlsConfig, Transport,
};
use sextant_exporters::{DropReason, Outbox, OutboxError, RecordKind};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_util::sync::CancellationToken;

use crate::common::{eventually, init_tracing, observed_bytes, small_config};
use crate::scripted::{GrpcPeer, Script, drain_through, fast, http_app};

/// A test CA, a server certificate it signed for 127.0.0.1 and localhost,
/// and a client certificate it signed; the files the client reads.
struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: String,
    ca_cert: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_cert_pem: String,
    server_key: KeyPair,
    /// The CA certificate, PEM.
    ca_file: PathBuf,
    client_cert_file: PathBuf,
    client_key_file: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Sextant test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &ca).unwrap();

        let mut client = CertificateParams::new(vec!["agent-1".to_owned()]).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "agent-1");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client.signed_by(&client_key, &ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Self {
            ca_pem: ca.pem(),
            ca_cert: ca.der().clone(),
            ca_file: write("ca.pem", &ca.pem()),
            client_cert_file: write("client.pem", &client_cert.pem()),
            client_key_file: write("client-key.pem", &client_key.serialize_pem()),
            server_cert: server_cert.der().clone(),
            server_cert_pem: server_cert.pem(),
            server_key,
            _dir: dir,
        }
    }

    /// Trust the test CA.
    fn trust(&self) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.ca_file.clone()),
            ..TlsConfig::default()
        }
    }

    /// Trust the test CA and present the client certificate.
    fn mtls(&self) -> TlsConfig {
        TlsConfig {
            client_cert: Some(self.client_cert_file.clone()),
            client_key: Some(self.client_key_file.clone()),
            ..self.trust()
        }
    }
}

/// A TLS listener for `axum::serve`; failed handshakes are skipped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The scripted OTLP/HTTP peer over TLS; with `client_auth`, only clients
/// with a certificate from the test CA get through the handshake.
async fn https_peer(script: Arc<Script>, pki: &Pki, client_auth: bool) -> SocketAddr {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_auth {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_cert.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.serialize_der()));
    let config = builder
        .with_single_cert(vec![pki.server_cert.clone()], key)
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, http_app(script)).await });
    addr
}

/// The scripted OTLP/gRPC peer over TLS (tonic `ServerTlsConfig`).
async fn grpcs_peer(script: Arc<Script>, pki: &Pki, client_auth: bool) -> SocketAddr {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        &pki.server_cert_pem,
        pki.server_key.serialize_pem(),
    ));
    if client_auth {
        tls = tls.client_ca_root(Certificate::from_pem(&pki.ca_pem));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = LogsServiceServer::new(GrpcPeer(script))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// Every request carried `auth` and came gzipped.
fn all_carried(script: &Script, auth: &str) {
    let requests = script.requests.lock().unwrap();
    assert!(!requests.is_empty());
    for r in requests.iter() {
        assert_eq!(r.2.as_deref(), Some(auth));
        assert_eq!(r.3.as_deref(), Some("gzip"));
    }
}

/// Exports one request directly and expects a retryable connection
/// failure whose detail names the certificate problem.
async fn expect_certificate_failure(transport: &impl Transport, words: &[&str]) {
    let outcome = transport
        .export(LogsRequest {
            body: bytes::Bytes::new(),
            records: 0,
        })
        .await;
    match outcome {
        ExportOutcome::Retry {
            reason: FailureReason::Connection,
            detail,
            ..
        } => assert!(
            words.iter().any(|w| detail.contains(w)),
            "detail names the certificate problem: {detail}"
        ),
        other => panic!("expected a retryable connection failure, got {other:?}"),
    }
}

/// Runs a sender against a peer it cannot verify until it has failed a
/// few times; then nothing may have arrived, been dropped or acknowledged.
/// Returns the outbox for a second sender.
async fn fails_without_dropping<T: Transport>(
    transport: T,
    script: &Script,
) -> (Outbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    for i in 0..4 {
        outbox
            .append(RecordKind::StateChange, &observed_bytes("h1", i))
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender::run(
        outbox.clone(),
        "default",
        transport,
        fast(2),
        cancel.clone(),
    ));
    let m = outbox.metrics().clone();
    eventually(
        "three failed connections",
        Duration::from_secs(20),
        || async { m.failures("default", "connection") >= 3 },
    )
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert!(script.batches().is_empty(), "nothing reached the peer");
    assert_eq!(outbox.stats().consumers[0].pending, 4, "nothing acked");
    for reason in ["bad_request", "too_large", "refused", "unauthorized"] {
        assert_eq!(m.failures("default", reason), 0, "{reason}");
    }
    for reason in [
        DropReason::Rejected,
        DropReason::BadRequest,
        DropReason::TooLarge,
        DropReason::Refused,
    ] {
        assert_eq!(m.dropped(reason), 0, "{reason:?}");
    }
    assert_eq!(m.delivered("default"), 0);
    (outbox, dir)
}

/// A second sender, trusting the CA, delivers all of `outbox` in order.
async fn then_delivers<T: Transport>(outbox: &Outbox, transport: T, script: &Script) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender::run(
        outbox.clone(),
        "default",
        transport,
        fast(2),
        cancel.clone(),
    ));
    let o = outbox.clone();
    eventually("the outbox to drain", Duration::from_secs(20), || async {
        o.stats().consumers[0].pending == 0
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(script.batches(), [vec![0, 1], vec![2, 3]]);
    assert_eq!(outbox.metrics().delivered("default"), 4);
}

#[tokio::test]
async fn https_with_the_ca_file_delivers_with_token_and_gzip() {
    init_tracing();
    let pki = Pki::new();
    let script = Script::new(vec![]);
    let addr = https_peer(script.clone(), &pki, false).await;
    let transport = HttpTransport::new(HttpConfig {
        gzip: true,
        token: Some(Secret::new("s3cret")),
        tls: pki.trust(),
        ..HttpConfig::new(format!("https://{addr}"))
    })
    .unwrap();
    let (outbox, _dir) = drain_through(transport, fast(2), 0..5).await;
    assert_eq!(script.batches(), [vec![0, 1], vec![2, 3], vec![4]]);
    all_carried(&script, "Bearer s3cret");
    assert_eq!(outbox.metrics().delivered("default"), 5);
}

#[tokio::test]
async fn grpc_tls_with_the_ca_file_delivers_with_token_and_gzip() {
    init_tracing();
    let pki = Pki::new();
    let script = Script::new(vec![]);
    let addr = grpcs_peer(script.clone(), &pki, false).await;
    let transport = GrpcTransport::new(GrpcConfig {
        gzip: true,
        token: Some(Secret::new("g")),
        tls: pki.trust(),
        ..GrpcConfig::new(format!("https://{addr}"))
    })
    .unwrap();
    let (outbox, _dir) = drain_through(transport, fast(2), 0..5).await;
    assert_eq!(script.batches(), [vec![0, 1], vec![2, 3], vec![4]]);
    all_carried(&script, "Bearer g");
    assert_eq!(outbox.metrics().delivered("default"), 5);
}

#[tokio::test]
async fn https_with_an_unknown_issuer_is_retried_as_connection_and_nothing_is_dropped() {
    init_tracing();
    let pki = Pki::new();
    let script = Script::new(vec![]);
    let addr = https_peer(script.clone(), &pki, false).await;
    let untrusting = HttpTransport::new(HttpConfig::new(format!("https://{addr}"))).unwrap();
    expect_certificate_failure(&untrusting, &["UnknownIssuer"]).await;
    let (outbox, _dir) = fails_without_dropping(untrusting, &script).await;
    let trusting = HttpTransport::new(HttpConfig {
        tls: pki.trust(),
        ..HttpConfig::new(format!("https://localhost:{}", addr.port()))
    })
    .unwrap();
    then_delivers(&outbox, trusting, &script).await;
}

#[tokio::test]
async fn grpc_tls_with_an_unknown_issuer_is_retried_as_connection_and_nothing_is_dropped() {
    init_tracing();
    let pki = Pki::new();
    let script = Script::new(vec![]);
    let addr = grpcs_peer(script.clone(), &pki, false).await;
    let untrusting = GrpcTransport::new(GrpcConfig::new(format!("https://{addr}"))).unwrap();
    expect_certificate_failure(&untrusting, &["UnknownIssuer"]).await;
    let (outbox, _dir) = fails_without_dropping(untrusting, &script).await;
    let trusting = GrpcTransport::new(GrpcConfig {
        tls: pki.trust(),
        ..GrpcConfig::new(format!("https://{addr}"))
    })
    .unwrap();
    then_delivers(&outbox, trusting, &script).await;
}

#[tokio::test]
async fn mtls_peers_take_the_client_certificate_and_refuse_a_client_without_one() {
    init_tracing();
    let pki = Pki::new();

    let script = Script::new(vec![]);
    let addr = https_peer(script.clone(), &pki, true).await;
    let endpoint = format!("https://{addr}");
    let anonymous = HttpTransport::new(HttpConfig {
        tls: pki.trust(),
        ..HttpConfig::new(endpoint.clone())
    })
    .unwrap();
    // The server asks for a certificate and ends the handshake without one
    // (TLS 1.3 reports that with the first read).
    expect_certificate_failure(&anonymous, &["CertificateRequired", "certificate"]).await;
    let with_cert = HttpTransport::new(HttpConfig {
        tls: pki.mtls(),
        ..HttpConfig::new(endpoint)
    })
    .unwrap();
    drain_through(with_cert, fast(2), 0..3).await;
    assert_eq!(script.batches(), [vec![0, 1], vec![2]]);

    let script = Script::new(vec![]);
    let addr = grpcs_peer(script.clone(), &pki, true).await;
    let endpoint = format!("https://{addr}");
    let anonymous = GrpcTransport::new(GrpcConfig {
        tls: pki.trust(),
        ..GrpcConfig::new(endpoint.clone())
    })
    .unwrap();
    expect_certificate_failure(&anonymous, &["CertificateRequired", "certificate"]).await;
    let with_cert = GrpcTransport::new(GrpcConfig {
        tls: pki.mtls(),
        ..GrpcConfig::new(endpoint)
    })
    .unwrap();
    drain_through(with_cert, fast(2), 0..3).await;
    assert_eq!(script.batches(), [vec![0, 1], vec![2]]);
}

#[tokio::test]
async fn unusable_tls_files_are_refused_when_the_transport_is_built() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    // A PEM block whose content is not a certificate.
    let not_cert = dir.path().join("not-cert.pem");
    std::fs::write(
        &not_cert,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let ca = |path: &PathBuf| TlsConfig {
        ca_file: Some(path.clone()),
        ..TlsConfig::default()
    };
    let cases = [
        (ca(&missing), missing.clone(), "cannot read"),
        (
            ca(&not_pem),
            not_pem.clone(),
            "no `-----BEGIN CERTIFICATE-----`",
        ),
        (ca(&not_cert), not_cert.clone(), "not a usable CA"),
        (
            TlsConfig {
                client_cert: Some(pki.client_cert_file.clone()),
                ..pki.trust()
            },
            pki.client_cert_file.clone(),
            "needs a client key too",
        ),
        (
            TlsConfig {
                client_cert: Some(pki.client_cert_file.clone()),
                // A certificate where the key should be.
                client_key: Some(pki.ca_file.clone()),
                ..TlsConfig::default()
            },
            pki.ca_file.clone(),
            "private key",
        ),
    ];
    for (tls, path, reason) in cases {
        let http = HttpTransport::new(HttpConfig {
            tls: tls.clone(),
            ..HttpConfig::new("https://hub.example:4318")
        })
        .unwrap_err();
        let grpc = GrpcTransport::new(GrpcConfig {
            tls,
            ..GrpcConfig::new("https://hub.example:4317")
        })
        .unwrap_err();
        for e in [http, grpc] {
            assert!(matches!(e, OutboxError::TlsFile { .. }), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains(&path.display().to_string()) && text.contains(reason),
                "{text} names {} and {reason:?}",
                path.display()
            );
        }
    }
    // The good files are taken.
    HttpTransport::new(HttpConfig {
        tls: pki.mtls(),
        ..HttpConfig::new("https://hub.example:4318")
    })
    .unwrap();
    GrpcTransport::new(GrpcConfig {
        tls: pki.mtls(),
        ..GrpcConfig::new("https://hub.example:4317")
    })
    .unwrap();
}
