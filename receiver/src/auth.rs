//! Static bearer tokens mapping to a tenant and scopes, and client
//! certificates (verified by the listener's mTLS) mapping to them the same
//! way.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sextant_kit::serve::{CertName, Peer};

use sextant_kit::Secret;

/// A static token: who it belongs to and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The bearer token.
    pub token: Secret,
    /// The tenant whose data the token reads and writes.
    pub tenant: String,
    /// Who the token stands for: the actor the orchestrator of `sextant up`
    /// records in approvals and events (the hub itself does not use it).
    /// Without one the orchestrator derives a stable name from the token's
    /// hash, never the token itself.
    #[serde(default)]
    pub subject: Option<String>,
    /// `ingest`, `read`, `metrics` (`/metrics` when it needs a token),
    /// `deploy` (the orchestrator's changes only; nothing on the hub),
    /// `admin`.
    pub scopes: Vec<Scope>,
}

/// A client certificate that stands for a tenant, as a token does: a
/// request over mTLS whose verified certificate carries `subject`, and
/// that sends no bearer token, is this tenant with these scopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// The certificate's name: `CN=edge-gateway-1` (subject common name),
    /// `DNS:gateway.example.com` or `URI:spiffe://…` (subject alternative
    /// names). Matched exactly; the first entry that matches wins.
    pub subject: CertName,
    /// The tenant whose data the certificate writes and reads.
    pub tenant: String,
    /// As a token's: `ingest`, `read`, `metrics`, `deploy`, `admin`.
    pub scopes: Vec<Scope>,
}

/// Tenant used when no tokens are configured (loopback only).
pub const DEFAULT_TENANT: &str = "default";

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send OTLP.
    Ingest,
    /// Read the API.
    Read,
    /// Scrape `/metrics` (when `metrics_require_token` is set).
    Metrics,
    /// Change state on the orchestrator `sextant up` starts beside the hub
    /// (apply, releases, promotions, approvals, rollbacks, agent tokens);
    /// it grants nothing on the hub itself, so a deploy pipeline's token
    /// cannot send or read the hub's data unless it also has `ingest` or
    /// `read`.
    Deploy,
    /// Everything.
    Admin,
}

/// As spelled in the config file and the docs: `ingest`, `read`, `deploy`,
/// `admin`.
impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        })
    }
}

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Arc<str>,
    scopes: Vec<Scope>,
}

impl Principal {
    fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// A sender that proved itself some other way than a token (a Flux
    /// `generic-hmac` signature): it may ingest into `tenant`, nothing else.
    pub fn ingest_only(tenant: &str) -> Self {
        Self {
            tenant: Arc::from(tenant),
            scopes: vec![Scope::Ingest],
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("unknown bearer token")]
    Unknown,
    #[error("token lacks the `{0}` scope")]
    Forbidden(Scope),
}

/// Checks `Authorization: Bearer …` values, and the client certificate a
/// connection presented.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Arc<HashMap<String, Principal>>,
    /// `[[client_certs]]`, in the file's order: the first that names the
    /// certificate wins.
    certs: Arc<[(CertName, Principal)]>,
}

impl Authenticator {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let tokens = tokens
            .iter()
            .map(|t| {
                (
                    t.token.expose().to_owned(),
                    Principal {
                        tenant: Arc::from(t.tenant.as_str()),
                        scopes: t.scopes.clone(),
                    },
                )
            })
            .collect();
        Self {
            tokens: Arc::new(tokens),
            certs: Arc::from(Vec::new()),
        }
    }

    /// Also maps client certificates to tenants and scopes
    /// (`[[client_certs]]`).
    pub fn with_client_certs(mut self, certs: &[ClientCertConfig]) -> Self {
        self.certs = certs
            .iter()
            .map(|c| {
                (
                    c.subject.clone(),
                    Principal {
                        tenant: Arc::from(c.tenant.as_str()),
                        scopes: c.scopes.clone(),
                    },
                )
            })
            .collect();
        self
    }

    /// No tokens and no client certificates configured: every caller is
    /// tenant `default` with every scope.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.certs.is_empty()
    }

    /// Authenticates a request for `scope` by its `Authorization` header
    /// or, when it has none, by the client certificate its connection
    /// presented (`peer`, from the listener). A token, when sent, decides
    /// alone: a gateway with a certificate of its own may forward its
    /// senders' tokens. A certificate no `[[client_certs]]` entry names
    /// authenticates nothing ([`AuthError::Missing`]; see
    /// [`refusal_message`]).
    pub fn check_request(
        &self,
        authorization: Option<&str>,
        peer: Option<&Peer>,
        scope: Scope,
    ) -> Result<Principal, AuthError> {
        let certificate = peer.and_then(|p| p.certificate.as_deref());
        let (None, Some(certificate)) = (authorization, certificate) else {
            return self.check(authorization, scope);
        };
        if self.is_open() {
            return self.check(None, scope);
        }
        let Some((_, principal)) = self.certs.iter().find(|(name, _)| certificate.has(name)) else {
            tracing::debug!(certificate = %certificate, "Client certificate not in [[client_certs]]");
            return Err(AuthError::Missing);
        };
        if principal.allows(scope) {
            Ok(principal.clone())
        } else {
            Err(AuthError::Forbidden(scope))
        }
    }

    /// Authenticates an `Authorization` header value for `scope`.
    pub fn check(&self, authorization: Option<&str>, scope: Scope) -> Result<Principal, AuthError> {
        if self.is_open() {
            return Ok(Principal {
                tenant: Arc::from(DEFAULT_TENANT),
                scopes: vec![Scope::Admin],
            });
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        let principal = self.tokens.get(token).ok_or(AuthError::Unknown)?;
        if principal.allows(scope) {
            Ok(principal.clone())
        } else {
            Err(AuthError::Forbidden(scope))
        }
    }
}

/// What a refused request is told: the error, and for a client
/// certificate that authenticated nothing, which one it was.
pub fn refusal_message(error: &AuthError, peer: Option<&Peer>) -> String {
    match (error, peer.and_then(|p| p.certificate.as_deref())) {
        (AuthError::Missing, Some(certificate)) => format!(
            "missing bearer token, and the client certificate ({certificate}) is not mapped \
             to a tenant in [[client_certs]]"
        ),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_kit::Secret;

    fn auth() -> Authenticator {
        Authenticator::new(&[TokenConfig {
            token: Secret::new("r"),
            tenant: "acme".into(),
            subject: None,
            scopes: vec![Scope::Read],
        }])
    }

    #[test]
    fn tokens_map_to_tenant_and_scopes() {
        let a = auth();
        assert_eq!(
            &*a.check(Some("Bearer r"), Scope::Read).expect("ok").tenant,
            "acme"
        );
        assert_eq!(
            a.check(Some("Bearer r"), Scope::Ingest),
            Err(AuthError::Forbidden(Scope::Ingest))
        );
        assert_eq!(
            a.check(Some("Bearer x"), Scope::Read),
            Err(AuthError::Unknown)
        );
        assert_eq!(a.check(None, Scope::Read), Err(AuthError::Missing));
        assert_eq!(
            a.check(Some("Basic r"), Scope::Read),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn deploy_grants_nothing_on_the_hub() {
        let a = Authenticator::new(&[TokenConfig {
            token: Secret::new("d"),
            tenant: "acme".into(),
            subject: Some("ci".into()),
            scopes: vec![Scope::Deploy],
        }]);
        for scope in [Scope::Read, Scope::Ingest] {
            assert_eq!(
                a.check(Some("Bearer d"), scope),
                Err(AuthError::Forbidden(scope))
            );
        }
    }

    fn gateway(scopes: Vec<Scope>) -> ClientCertConfig {
        ClientCertConfig {
            subject: "CN=edge-gateway-1".parse().expect("name"),
            tenant: "acme".into(),
            scopes,
        }
    }

    fn peer(cn: &str) -> Peer {
        Peer {
            addr: "127.0.0.1:1".parse().expect("addr"),
            certificate: Some(Arc::new(sextant_kit::serve::ClientCertificate {
                common_names: vec![cn.to_owned()],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_mapped_certificate_is_a_principal_and_a_token_decides_when_sent() {
        let a = auth().with_client_certs(&[gateway(vec![Scope::Ingest])]);
        assert!(!a.is_open());
        let gw = peer("edge-gateway-1");
        let p = a
            .check_request(None, Some(&gw), Scope::Ingest)
            .expect("mapped certificate");
        assert_eq!(&*p.tenant, "acme");
        assert_eq!(
            a.check_request(None, Some(&gw), Scope::Read),
            Err(AuthError::Forbidden(Scope::Read))
        );
        // A token, when sent, decides: a read token reads, a wrong one is
        // refused even with a mapped certificate.
        assert!(
            a.check_request(Some("Bearer r"), Some(&gw), Scope::Read)
                .is_ok()
        );
        assert_eq!(
            a.check_request(Some("Bearer x"), Some(&gw), Scope::Ingest),
            Err(AuthError::Unknown)
        );
        // An unmapped certificate authenticates nothing, unless with a token.
        let other = peer("someone-else");
        let refused = a
            .check_request(None, Some(&other), Scope::Ingest)
            .expect_err("unmapped");
        assert_eq!(refused, AuthError::Missing);
        assert!(refusal_message(&refused, Some(&other)).contains("CN=someone-else"));
        assert!(
            a.check_request(Some("Bearer r"), Some(&other), Scope::Read)
                .is_ok()
        );
        // No certificate, no token.
        assert_eq!(
            a.check_request(None, None, Scope::Ingest),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn open_mode_is_the_default_tenant() {
        let a = Authenticator::new(&[]);
        assert_eq!(
            &*a.check(None, Scope::Ingest).expect("ok").tenant,
            DEFAULT_TENANT
        );
    }
}
