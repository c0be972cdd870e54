//! The report cache: serialized environment-state and compare responses,
//! kept per tenant under the store's change mark (`store/mark.rs`).
//!
//! Both reports are a few statements over every target of an environment
//! and up to 1.4 MB of JSON at 10,000 hosts × 100 workloads, yet they change
//! only when a desired version, a revision or a status does — not with the
//! heartbeats that make up nearly all ingest — and they hold nothing that
//! depends on the time (no staleness: that lives in drift and the host
//! view). So while the tenant's mark stands a request costs one read of the
//! mark and a copy of the bytes. The mark comes from the database, so a
//! change written through another hub replica is seen as soon as it
//! commits. An entry is stored only under a settled mark read *before* the
//! report, so it is never older than its mark.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::ApiState;
use crate::store::{ChangeMark, StoreError};

/// How many bytes of responses one hub keeps; the least recently used go
/// first. A compare of three environments at 10,000 hosts × 100 workloads is
/// 1.4 MB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// Cached responses, shared by every request of one hub.
#[derive(Debug)]
pub struct ReportCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, String), Entry>,
    bytes: usize,
    /// Bumped on every use; an entry's `used` orders eviction.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    mark: ChangeMark,
    body: Bytes,
    used: u64,
}

/// How a request was served, for the `sextant_report_cache_requests_total`
/// metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache: the mark had not moved.
    Hit,
    /// Read from the store and stored under a settled mark.
    Miss,
    /// Read from the store and not stored: writes of the tenant were in
    /// flight (PostgreSQL), or the tenant has no data yet.
    Uncached,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Uncached => "uncached",
        }
    }
}

impl Default for ReportCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl ReportCache {
    /// A cache that keeps at most `max_bytes` of responses.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    /// The body stored for (`tenant`, `key`) under `mark`, if any.
    fn get(&self, tenant: &str, key: &str, mark: ChangeMark) -> Option<Bytes> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let clock = inner.clock;
        let entry = inner
            .entries
            .get_mut(&(tenant.to_owned(), key.to_owned()))?;
        if entry.mark != mark {
            return None;
        }
        entry.used = clock;
        Some(entry.body.clone())
    }

    /// Stores `body` for (`tenant`, `key`) under `mark`, replacing an older
    /// entry and evicting the least recently used beyond the size limit.
    fn put(&self, tenant: &str, key: &str, mark: ChangeMark, body: Bytes) {
        if body.len() > self.max_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.clock += 1;
        let used = inner.clock;
        let size = body.len();
        if let Some(old) = inner.entries.insert(
            (tenant.to_owned(), key.to_owned()),
            Entry { mark, body, used },
        ) {
            inner.bytes -= old.body.len();
        }
        inner.bytes += size;
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.body.len();
            }
        }
    }
}

/// Serves the JSON report `key` of `tenant` from the cache while the
/// tenant's change mark stands; otherwise runs `read` (which returns the
/// serialized report) and keeps its result under a settled mark. `E` is
/// the caller's error, which the store's errors turn into.
pub(crate) async fn cached_json<F, Fut, E>(
    state: &ApiState,
    tenant: &str,
    key: String,
    read: F,
) -> Result<Response, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, E>>,
    E: From<StoreError>,
{
    let (body, outcome) = cached(state, tenant, &key, read).await?;
    state
        .metrics
        .report_cache
        .with_label_values(&[outcome.as_str()])
        .inc();
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn cached<F, Fut, E>(
    state: &ApiState,
    tenant: &str,
    key: &str,
    read: F,
) -> Result<(Bytes, Outcome), E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, E>>,
    E: From<StoreError>,
{
    if let Some(mark) = state.store.change_mark(tenant).await?
        && let Some(body) = state.reports.get(tenant, key, mark)
    {
        return Ok((body, Outcome::Hit));
    }
    // Settled first, report second: the report then holds at least every
    // change below the mark, and a later change moves the mark.
    let settled = state.store.settled_change_mark(tenant).await?;
    let body = read().await?;
    Ok(match settled {
        Some(mark) => {
            state.reports.put(tenant, key, mark, body.clone());
            (body, Outcome::Miss)
        }
        None => (body, Outcome::Uncached),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(n: i64) -> ChangeMark {
        ChangeMark {
            history: n,
            desired: 0,
            targets: 0,
        }
    }

    #[test]
    fn an_entry_is_served_only_under_its_mark() {
        let cache = ReportCache::new(1024);
        cache.put("t", "k", mark(1), Bytes::from_static(b"one"));
        assert_eq!(cache.get("t", "k", mark(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(cache.get("t", "k", mark(2)), None);
        assert_eq!(cache.get("other", "k", mark(1)), None);
        cache.put("t", "k", mark(2), Bytes::from_static(b"two"));
        assert_eq!(cache.get("t", "k", mark(1)), None);
        assert_eq!(cache.get("t", "k", mark(2)).as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let cache = ReportCache::new(10);
        cache.put("t", "a", mark(1), Bytes::from_static(b"aaaa"));
        cache.put("t", "b", mark(1), Bytes::from_static(b"bbbb"));
        assert!(cache.get("t", "a", mark(1)).is_some());
        cache.put("t", "c", mark(1), Bytes::from_static(b"cccc"));
        assert!(cache.get("t", "a", mark(1)).is_some());
        assert_eq!(cache.get("t", "b", mark(1)), None);
        assert!(cache.get("t", "c", mark(1)).is_some());
        // Larger than the whole cache: not kept.
        cache.put("t", "d", mark(1), Bytes::from(vec![0; 11]));
        assert_eq!(cache.get("t", "d", mark(1)), None);
        assert!(cache.get("t", "c", mark(1)).is_some());
    }
}
