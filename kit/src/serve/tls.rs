//! TLS on a listener (docs/security.md, "TLS and client certificates"):
//! a certificate and key in PEM make a listener speak TLS; a client CA
//! makes it require a client certificate signed by that CA (mTLS) and
//! refuse any other at the handshake. The verified certificate's names
//! travel with every request of the connection as [`super::Peer`], so a
//! service can map them to a tenant as it maps a token.
//!
//! The handshake is done per connection, off the accept loop, within the
//! listener's header timeout.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The TLS settings of a listener: PEM files. Nothing set: plain TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server's certificate chain, leaf first (PEM).
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to. When
    /// set, every client must present such a certificate (mTLS); one
    /// without, or with one from another CA, fails the handshake.
    pub client_ca_file: Option<PathBuf>,
}

/// Why a [`ServerTlsConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("TLS {what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

impl ServerTlsConfig {
    /// Whether the listener speaks TLS.
    pub fn is_enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some() || self.client_ca_file.is_some()
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.client_ca_file.is_some()
    }

    /// Reads and checks the files: `None` when TLS is off. A missing,
    /// malformed or mismatched file is an error naming it, at start.
    pub fn load(&self) -> Result<Option<ServerTls>, TlsError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err(TlsError::Config(
                "TLS needs both cert_file and key_file (client_ca_file adds client \
                 certificates)"
                    .to_owned(),
            ));
        };
        load(cert, key, self.client_ca_file.as_deref()).map(Some)
    }
}

/// A name of a client certificate that a service maps to a tenant, as
/// written in configuration: `CN=edge-gateway-1` (the subject's common
/// name), `DNS:gateway.example.com` or `URI:spiffe://example.com/gateway`
/// (a subject alternative name). Matched exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertName {
    CommonName(String),
    Dns(String),
    Uri(String),
}

impl FromStr for CertName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, value): (fn(String) -> CertName, &str) = if let Some(v) = s.strip_prefix("CN=") {
            (CertName::CommonName, v)
        } else if let Some(v) = s.strip_prefix("DNS:") {
            (CertName::Dns, v)
        } else if let Some(v) = s.strip_prefix("URI:") {
            (CertName::Uri, v)
        } else {
            return Err(format!(
                "{s:?} is not a certificate name: write CN=<common name>, DNS:<name> or URI:<uri>"
            ));
        };
        if value.trim().is_empty() {
            return Err(format!("{s:?} names nothing"));
        }
        Ok(kind(value.trim().to_owned()))
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::CommonName(v) => write!(f, "CN={v}"),
            CertName::Dns(v) => write!(f, "DNS:{v}"),
            CertName::Uri(v) => write!(f, "URI:{v}"),
        }
    }
}

impl Serialize for CertName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CertName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The names of a client certificate the listener verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's common names (usually one).
    pub common_names: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// URI subject alternative names (SPIFFE ids and the like).
    pub uris: Vec<String>,
}

impl ClientCertificate {
    /// Whether the certificate carries `name`.
    pub fn has(&self, name: &CertName) -> bool {
        match name {
            CertName::CommonName(v) => self.common_names.iter().any(|n| n == v),
            CertName::Dns(v) => self.dns_names.iter().any(|n| n.eq_ignore_ascii_case(v)),
            CertName::Uri(v) => self.uris.iter().any(|n| n == v),
        }
    }
}

/// As a log line or an error names it: `CN=a, DNS:b, URI:c`.
impl fmt::Display for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .common_names
            .iter()
            .map(|v| CertName::CommonName(v.clone()))
            .chain(self.dns_names.iter().map(|v| CertName::Dns(v.clone())))
            .chain(self.uris.iter().map(|v| CertName::Uri(v.clone())))
            .map(|n| n.to_string())
            .collect();
        if names.is_empty() {
            f.write_str("a certificate without names")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

#[cfg(feature = "tls")]
pub use enabled::*;

#[cfg(feature = "tls")]
mod enabled {
    use std::path::Path;
    use std::sync::Arc;

    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};

    use super::{ClientCertificate, TlsError};

    /// A listener's TLS, loaded: what accepts its handshakes.
    #[derive(Clone)]
    pub struct ServerTls {
        pub(in crate::serve) acceptor: tokio_rustls::TlsAcceptor,
    }

    impl std::fmt::Debug for ServerTls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ServerTls")
        }
    }

    fn error(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
        TlsError::File {
            what,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem =
            std::fs::read(path).map_err(|e| error(what, path, format!("cannot read: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(what, path, format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(error(
                what,
                path,
                "no `-----BEGIN CERTIFICATE-----` block found",
            ));
        }
        Ok(certs)
    }

    pub(super) fn load(
        cert_file: &Path,
        key_file: &Path,
        client_ca_file: Option<&Path>,
    ) -> Result<ServerTls, TlsError> {
        let chain = certs("certificate", cert_file)?;
        let key_pem = std::fs::read(key_file)
            .map_err(|e| error("key", key_file, format!("cannot read: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            error(
                "key",
                key_file,
                format!("no PKCS#8, PKCS#1 or SEC1 private key found: {e}"),
            )
        })?;
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for (i, cert) in certs("client CA file", path)?.into_iter().enumerate() {
                    roots.add(cert).map_err(|e| {
                        error(
                            "client CA file",
                            path,
                            format!("certificate {} is not a usable CA: {e}", i + 1),
                        )
                    })?;
                }
                // Mandatory: a client without a certificate fails the
                // handshake.
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| error("client CA file", path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            error(
                "certificate",
                cert_file,
                format!("cannot be used with key {}: {e}", key_file.display()),
            )
        })?;
        // gRPC clients insist on h2; HTTP clients may take either.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    impl ClientCertificate {
        /// The names of a certificate in DER; `None` if it cannot be
        /// parsed (the handshake verified it, so it can).
        pub fn from_der(der: &CertificateDer<'_>) -> Option<Self> {
            let cert = webpki::EndEntityCert::try_from(der).ok()?;
            Some(Self {
                common_names: common_names(cert.subject()),
                dns_names: cert.valid_dns_names().map(str::to_owned).collect(),
                uris: cert.valid_uri_names().map(str::to_owned).collect(),
            })
        }
    }

    /// One DER element: its tag, its contents, and what follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The common names (OID 2.5.4.3) of a subject: the contents of its
    /// `Name`, a sequence of sets of (OID, value).
    fn common_names(mut name: &[u8]) -> Vec<String> {
        const SET: u8 = 0x31;
        const SEQUENCE: u8 = 0x30;
        const OID: u8 = 0x06;
        const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
        let mut names = Vec::new();
        while let Some((SET, mut set, rest)) = element(name) {
            name = rest;
            while let Some((SEQUENCE, pair, more)) = element(set) {
                set = more;
                let Some((OID, oid, value)) = element(pair) else {
                    continue;
                };
                if oid != COMMON_NAME {
                    continue;
                }
                // UTF8String, PrintableString, IA5String.
                if let Some((0x0c | 0x13 | 0x16, text, _)) = element(value)
                    && let Ok(text) = std::str::from_utf8(text)
                {
                    names.push(text.to_owned());
                }
            }
        }
        names
    }
}

#[cfg(feature = "tls")]
use enabled::load;

/// Without the `tls` feature no listener can speak TLS.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub enum ServerTls {}

#[cfg(not(feature = "tls"))]
fn load(
    _cert: &std::path::Path,
    _key: &std::path::Path,
    _client_ca: Option<&std::path::Path>,
) -> Result<ServerTls, TlsError> {
    Err(TlsError::Config(
        "TLS needs sextant-exporters built with the `tls` feature".to_owned(),
    ))
}
