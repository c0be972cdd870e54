//! Who is calling the orchestrator's API, and what they may do.
//!
//! **Tokens.** Each `Authorization: Bearer …` token names a tenant, a
//! subject (the actor recorded in approvals and events) and scopes. The
//! scopes are the hub's (`sextant_receiver::auth::Scope`), spelled the same
//! so that `sextant up` hands the hub's `[[tokens]]` over unchanged:
//!
//! | scope    | on the orchestrator |
//! |----------|---------------------|
//! | `read`   | read                |
//! | `deploy` | read and change     |
//! | `admin`  | read and change     |
//! | `ingest` | nothing (it sends OTLP to the hub) |
//! | `metrics`| `/metrics`, when it needs a token (`metrics_require_token`) |
//!
//! **What a request needs** follows from its method, so that a route added
//! later is covered without anyone remembering to mark it: `GET` and
//! `HEAD` read; every other method changes state (apply, releases,
//! promotions, approvals, gates, cancel, finalize, rollback, agent tokens,
//! revoking agents).
//!
//! **Open mode.** With no tokens at all (the loopback default) every caller
//! is tenant `default` and may do everything; the actor is the
//! `X-Sextant-Actor` header, `local` without one. With tokens that header
//! is ignored: the actor is always the token's subject.

use std::collections::HashMap;
use std::fmt;

use http::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The tenant of every caller when no tokens are configured.
pub const DEFAULT_TENANT: &str = "default";

/// The actor in open mode when the caller sends no `X-Sextant-Actor`.
pub const DEFAULT_ACTOR: &str = "local";

/// What a token may do; the hub's scopes, with their meaning here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send OTLP to the hub; nothing on the orchestrator.
    Ingest,
    /// Read the API.
    Read,
    /// Scrape `/metrics` when it needs a token; nothing else.
    Metrics,
    /// Read and change state: apply, releases, promotions, approvals,
    /// gates, rollbacks, agents.
    Deploy,
    /// Everything.
    Admin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        })
    }
}

/// What a request needs: to read, or to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Change,
    /// Scrape `/metrics` (when it needs a token).
    Metrics,
}

impl Access {
    /// `GET` and `HEAD` read; every other method changes state.
    pub fn of(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Access::Read
        } else {
            Access::Change
        }
    }

    /// The scopes that grant this access, the narrowest first.
    pub fn granted_by(self) -> &'static [Scope] {
        match self {
            Access::Read => &[Scope::Read, Scope::Deploy, Scope::Admin],
            Access::Change => &[Scope::Deploy, Scope::Admin],
            Access::Metrics => &[Scope::Metrics, Scope::Admin],
        }
    }
}

/// A bearer token of `--tokens-file`: the tenant and the actor it stands
/// for, and what it may do. Tokens files written before scopes existed
/// have none, and meant everything: no `scopes` is `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenConfig {
    pub token: String,
    pub tenant: String,
    /// The actor recorded in approvals, events and agent tokens.
    pub subject: String,
    #[serde(default = "all_scopes")]
    pub scopes: Vec<Scope>,
}

fn all_scopes() -> Vec<Scope> {
    vec![Scope::Admin]
}

impl TokenConfig {
    /// A token that may do everything (`admin`).
    pub fn admin(
        token: impl Into<String>,
        tenant: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            token: token.into(),
            tenant: tenant.into(),
            subject: subject.into(),
            scopes: all_scopes(),
        }
    }

    /// Whether the token's scopes grant `access`.
    pub fn allows(&self, access: Access) -> bool {
        access
            .granted_by()
            .iter()
            .any(|scope| self.scopes.contains(scope))
    }
}

/// A subject for a token that names none: `token-` and the first 8 hex
/// digits of its SHA-256. Stable across restarts and replicas, so
/// approvals by the same token are counted as one approver; not the
/// token, so events and logs never carry a secret.
pub fn derived_subject(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    format!("token-{}", &hex::encode(digest)[..8])
}

/// Who the API takes the caller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: String,
    /// Recorded in events and approvals.
    pub actor: String,
    /// The caller may change state (promote, approve, roll back), not only
    /// read: what a UI asks before it offers a button.
    pub can_change: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("unknown bearer token")]
    Unknown,
    #[error("{}", forbidden_message(*.0))]
    Forbidden(Access),
}

fn forbidden_message(access: Access) -> String {
    let (needed, others) = access
        .granted_by()
        .split_first()
        .unwrap_or((&Scope::Admin, &[]));
    let others: Vec<String> = others.iter().map(|s| format!("`{s}`")).collect();
    let what = match access {
        Access::Read => "reading",
        Access::Change => "changing state",
        Access::Metrics => "scraping /metrics",
    };
    format!(
        "token lacks the `{needed}` scope ({what} needs `{needed}` or {})",
        others.join(" or ")
    )
}

/// The configured tokens, by token.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, TokenConfig>,
}

impl Tokens {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        Self {
            by_token: tokens
                .iter()
                .map(|t| (t.token.trim().to_owned(), t.clone()))
                .collect(),
        }
    }

    /// No tokens: open mode (loopback only, tenant `default`).
    pub fn is_open(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Who the caller is, if they may have `access`. `authorization` is the
    /// `Authorization` header; `actor_header` the `X-Sextant-Actor` one,
    /// used only in open mode.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        actor_header: Option<&str>,
        access: Access,
    ) -> Result<Identity, AuthError> {
        if self.is_open() {
            let actor = actor_header
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .unwrap_or(DEFAULT_ACTOR);
            return Ok(Identity {
                tenant: DEFAULT_TENANT.to_owned(),
                actor: actor.to_owned(),
                can_change: true,
            });
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        let t = self.by_token.get(token).ok_or(AuthError::Unknown)?;
        if !t.allows(access) {
            return Err(AuthError::Forbidden(access));
        }
        Ok(Identity {
            tenant: t.tenant.clone(),
            actor: t.subject.clone(),
            can_change: t.allows(Access::Change),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, scopes: &[Scope]) -> TokenConfig {
        TokenConfig {
            scopes: scopes.to_vec(),
            ..TokenConfig::admin(name, "acme", format!("{name}-subject"))
        }
    }

    #[test]
    fn scopes_grant_reading_and_changing() {
        use Scope::*;
        // (scopes, may read, may change)
        let rules: &[(&[Scope], bool, bool)] = &[
            (&[Read], true, false),
            (&[Deploy], true, true),
            (&[Admin], true, true),
            (&[Ingest], false, false),
            (&[Metrics], false, false),
            (&[Ingest, Read], true, false),
            (&[], false, false),
        ];
        for (scopes, read, change) in rules {
            let t = token("t", scopes);
            assert_eq!(t.allows(Access::Read), *read, "{scopes:?} reading");
            assert_eq!(t.allows(Access::Change), *change, "{scopes:?} changing");
        }
    }

    #[test]
    fn the_method_says_what_a_request_needs() {
        assert_eq!(Access::of(&Method::GET), Access::Read);
        assert_eq!(Access::of(&Method::HEAD), Access::Read);
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(Access::of(&m), Access::Change, "{m}");
        }
    }

    #[test]
    fn tokens_name_the_caller_and_the_header_is_ignored() {
        let tokens = Tokens::new(&[token("r", &[Scope::Read]), token("i", &[Scope::Ingest])]);
        let me = tokens
            .authenticate(Some("Bearer r"), Some("mallory"), Access::Read)
            .unwrap();
        assert_eq!(
            me,
            Identity {
                tenant: "acme".into(),
                actor: "r-subject".into(),
                can_change: false,
            }
        );
        assert_eq!(
            tokens.authenticate(Some("Bearer r"), None, Access::Change),
            Err(AuthError::Forbidden(Access::Change))
        );
        assert_eq!(
            tokens.authenticate(Some("Bearer i"), None, Access::Read),
            Err(AuthError::Forbidden(Access::Read))
        );
        assert_eq!(
            tokens.authenticate(None, Some("mallory"), Access::Read),
            Err(AuthError::Missing)
        );
        assert_eq!(
            tokens.authenticate(Some("Basic r"), None, Access::Read),
            Err(AuthError::Missing)
        );
        assert_eq!(
            tokens.authenticate(Some("Bearer x"), None, Access::Read),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn forbidden_names_the_missing_scope() {
        assert_eq!(
            AuthError::Forbidden(Access::Change).to_string(),
            "token lacks the `deploy` scope (changing state needs `deploy` or `admin`)"
        );
        assert_eq!(
            AuthError::Forbidden(Access::Read).to_string(),
            "token lacks the `read` scope (reading needs `read` or `deploy` or `admin`)"
        );
    }

    #[test]
    fn open_mode_takes_the_actor_header() {
        let open = Tokens::new(&[]);
        for (header, actor) in [
            (Some("alice"), "alice"),
            (Some("  "), "local"),
            (None, "local"),
        ] {
            let me = open.authenticate(None, header, Access::Change).unwrap();
            assert_eq!((me.tenant.as_str(), me.actor.as_str()), ("default", actor));
        }
    }

    #[test]
    fn a_tokens_file_without_scopes_means_admin() {
        let tokens: Vec<TokenConfig> = serde_norway::from_str(
            "- {token: aaaaaaaaaaaaaaaa, tenant: acme, subject: ops}\n\
             - {token: bbbbbbbbbbbbbbbb, tenant: acme, subject: ci, scopes: [read, deploy]}\n",
        )
        .unwrap();
        assert_eq!(tokens[0].scopes, [Scope::Admin]);
        assert_eq!(tokens[1].scopes, [Scope::Read, Scope::Deploy]);
        assert!(
            serde_norway::from_str::<Vec<TokenConfig>>(
                "- {token: a, tenant: b, subject: c, scopes: [write]}"
            )
            .is_err()
        );
    }

    #[test]
    fn derived_subjects_are_stable_and_not_the_token() {
        let s = derived_subject("s3cr3t-token-value");
        assert_eq!(s, derived_subject("s3cr3t-token-value"));
        assert_ne!(s, derived_subject("another-token-value"));
        assert!(s.starts_with("token-") && s.len() == 14, "{s}");
        assert!(!s.contains("s3cr3t"));
        // sha256("abc") = ba7816bf…
        assert_eq!(derived_subject("abc"), "token-ba7816bf");
    }
}
