//! CSRF tokens for the UI's forms: an HMAC-SHA256 of the session cookie's
//! value (the token cookie, or a random session cookie) under a key the
//! hub makes at start. A form from another site cannot carry it: that site
//! reads neither the cookie nor the page. Cookies are `SameSite=Strict` as
//! well, so a browser does not send them on another site's request.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The key CSRF tokens are made with. Cheap to clone.
#[derive(Clone)]
pub struct CsrfKey(Arc<[u8; 32]>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(***)")
    }
}

impl CsrfKey {
    /// A new random key: tokens last as long as the process (a restarted
    /// hub asks for the form again).
    pub fn random() -> Self {
        Self(Arc::new(rand::random()))
    }

    /// The token of `session`.
    pub fn token(&self, session: &str) -> String {
        hex::encode(self.mac(session).finalize().into_bytes())
    }

    /// Whether `token` is `session`'s, compared in constant time.
    pub fn verify(&self, session: &str, token: &str) -> bool {
        hex::decode(token).is_ok_and(|bytes| self.mac(session).verify_slice(&bytes).is_ok())
    }

    fn mac(&self, session: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"sextant-ui-csrf\0");
        mac.update(session.as_bytes());
        mac
    }
}

/// A fresh random session id for a browser without one.
pub(crate) fn new_session() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_its_session_and_key() {
        let key = CsrfKey::random();
        let t = key.token("alice-session");
        assert!(key.verify("alice-session", &t));
        assert!(!key.verify("mallory-session", &t));
        assert!(!key.verify("alice-session", "00"));
        assert!(!key.verify("alice-session", "not hex"));
        assert!(!CsrfKey::random().verify("alice-session", &t));
    }
}
