//! Static bearer tokens mapping to a tenant and scopes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::TokenConfig;

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

/// Checks `Authorization: Bearer …` values.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Arc<HashMap<String, Principal>>,
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
        }
    }

    /// No tokens configured: every caller is tenant `default` with every scope.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

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

    #[test]
    fn open_mode_is_the_default_tenant() {
        let a = Authenticator::new(&[]);
        assert_eq!(
            &*a.check(None, Scope::Ingest).expect("ok").tenant,
            DEFAULT_TENANT
        );
    }
}
