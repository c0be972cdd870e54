//! Integration tests of the outbox and its sender: the disk queue on real
//! files (restart, torn tail, corruption, cap, kill -9), the sender against
//! scripted OTLP peers (retry, refusal, partial success, split), over TLS
//! (a CA file, mTLS, an unknown issuer), several batches in flight
//! against a transport the test answers by hand (the cursor moves in
//! order, restart after a crash), and the
//! sender against the real hub (`sextant up`) stopped and restarted.

#![allow(clippy::unwrap_used)]

mod common;
mod disk;
mod hub;
mod pipeline;
mod scripted;
#[cfg(feature = "tls")]
mod tls;
