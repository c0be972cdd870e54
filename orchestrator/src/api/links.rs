//! The trace and log links of jobs and promotions (`trace_url_template`,
//! `logs_url_template`; `sextant_kit::links`), for the JSON and the pages.
//!
//! A job's trace is its promotion's (a rollback job's too); the window runs
//! from the job's creation to its end, or to now while it runs. A
//! promotion's runs from its request to its last change once it is over.

use sextant_kit::links::{Links, TraceLinks};

use crate::store::{Job, Promotion, now_ms};

/// Unix ms of an RFC 3339 time the store wrote.
fn ms(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The links of a job's trace.
pub fn job(links: &TraceLinks, job: &Job) -> Links {
    let now = now_ms();
    let start = ms(&job.created_at).unwrap_or(now);
    let end = job.finished_at.as_deref().and_then(ms).unwrap_or(now);
    links.of(job.traceparent.as_deref(), start, end)
}

/// The links of a promotion's trace.
pub fn promotion(links: &TraceLinks, p: &Promotion) -> Links {
    let now = now_ms();
    let start = ms(&p.created_at).unwrap_or(now);
    let end = if p.state.is_terminal() {
        ms(&p.updated_at).unwrap_or(now)
    } else {
        now
    };
    links.of(p.traceparent.as_deref(), start, end)
}
