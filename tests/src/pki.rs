//! Certificates for TLS tests, made at test time (rcgen): a CA, a server
//! certificate it signs for `127.0.0.1` and `localhost`, client
//! certificates it signs, and a second CA that signs nothing the servers
//! trust. Everything is written as PEM files into a temporary directory
//! that lives as long as the [`Pki`]; no key is ever committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA with a server certificate, in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate (PEM): what clients trust and what the server
    /// verifies client certificates with.
    pub ca_file: PathBuf,
    /// The server's certificate for `127.0.0.1` and `localhost`.
    pub server: CertFiles,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = ca("Sextant test CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "sextant-hub");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sign(dir.path(), "server", server, &ca);
        Self {
            dir,
            ca,
            ca_file,
            server,
        }
    }

    /// A client certificate with common name `cn`, signed by this CA.
    pub fn client(&self, cn: &str) -> CertFiles {
        self.client_with(cn, &[], &[])
    }

    /// A client certificate with common name `cn` and the given DNS and
    /// URI subject alternative names, signed by this CA.
    pub fn client_with(&self, cn: &str, dns: &[&str], uris: &[&str]) -> CertFiles {
        sign(self.dir.path(), cn, client_params(cn, dns, uris), &self.ca)
    }

    /// A client certificate with common name `cn` from a CA the servers do
    /// not trust.
    pub fn stranger(&self, cn: &str) -> CertFiles {
        let other = ca("Another CA");
        sign(
            self.dir.path(),
            &format!("stranger-{cn}"),
            client_params(cn, &[], &[]),
            &other,
        )
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

fn client_params(cn: &str, dns: &[&str], uris: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, cn);
    for name in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName((*name).try_into().expect("DNS name")));
    }
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().expect("URI")));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn sign(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &CertifiedIssuer<'static, KeyPair>,
) -> CertFiles {
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    files
}
