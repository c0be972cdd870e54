//! TLS settings shared by both transports: an extra CA to trust besides
//! the public (webpki) roots, and an optional client certificate for mTLS.
//! The files are read and checked when a transport is built, so a missing
//! or malformed file stops the caller at start with its path and reason,
//! never at the first export.

use std::path::{Path, PathBuf};

use crate::error::{OutboxError, Result};

/// TLS settings of an endpoint. Used for `https://` endpoints only; the
/// public roots (Mozilla's, compiled in) are always trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of one or more CA certificates to trust besides the public
    /// roots (a private CA, a self-signed hub). `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain for mTLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or
    /// SEC1); needs `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// The checked contents of a [`TlsConfig`].
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct TlsMaterial {
    /// The CA file as read (PEM), with its certificates in DER.
    pub ca: Option<(Vec<u8>, Vec<Vec<u8>>)>,
    /// Client certificate chain PEM and private key PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn tls_error(what: &'static str, path: &Path, reason: impl Into<String>) -> OutboxError {
    OutboxError::TlsFile {
        what,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(what, path, format!("cannot read: {e}")))
}

/// Reads and checks the files of `config`.
#[cfg(feature = "tls")]
pub(crate) fn load(config: &TlsConfig) -> Result<TlsMaterial> {
    use rustls::RootCertStore;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn certs(what: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(what, path, format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(tls_error(
                what,
                path,
                "no `-----BEGIN CERTIFICATE-----` block found",
            ));
        }
        Ok(certs)
    }

    let mut material = TlsMaterial::default();
    if let Some(path) = &config.ca_file {
        let pem = read("CA file", path)?;
        let certs = certs("CA file", path, &pem)?;
        // Parse each one as a trust anchor now: the HTTP client would
        // otherwise fail with a bare "builder error", and tonic not at all
        // until the first connection.
        let mut roots = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            roots.add(cert.clone()).map_err(|e| {
                tls_error(
                    "CA file",
                    path,
                    format!("certificate {} is not a usable CA: {e}", i + 1),
                )
            })?;
        }
        material.ca = Some((pem, certs.into_iter().map(|c| c.to_vec()).collect()));
    }
    match (&config.client_cert, &config.client_key) {
        (None, None) => {}
        (Some(cert_path), Some(key_path)) => {
            let cert = read("client certificate", cert_path)?;
            certs("client certificate", cert_path, &cert)?;
            let key = read("client key", key_path)?;
            PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                tls_error(
                    "client key",
                    key_path,
                    format!("no PKCS#8, PKCS#1 or SEC1 private key found: {e}"),
                )
            })?;
            material.identity = Some((cert, key));
        }
        (Some(path), None) => {
            return Err(tls_error(
                "client certificate",
                path,
                "needs a client key too",
            ));
        }
        (None, Some(path)) => {
            return Err(tls_error(
                "client key",
                path,
                "needs a client certificate too",
            ));
        }
    }
    Ok(material)
}

/// Without the `tls` feature any TLS file is refused: it could not be used.
#[cfg(not(feature = "tls"))]
pub(crate) fn load(config: &TlsConfig) -> Result<TlsMaterial> {
    let path = [&config.ca_file, &config.client_cert, &config.client_key]
        .into_iter()
        .flatten()
        .next();
    match path {
        Some(path) => {
            // Say whether the file is there at all before saying why it
            // cannot be used.
            read("TLS file", path)?;
            Err(tls_error(
                "TLS file",
                path,
                "TLS needs sextant-exporters built with the `tls` feature",
            ))
        }
        None => Ok(TlsMaterial::default()),
    }
}
