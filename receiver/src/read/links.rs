//! Links the hub adds to what it answers: from a desired assignment's
//! origin to the orchestrator's job and promotion, and from its trace id
//! to the trace and logs viewers (`trace_url_template`,
//! `logs_url_template`). The API and the UI fill them alike, after the
//! read, so the store never knows a URL.

use std::sync::Arc;

use sextant_kit::links::{LinkVars, TraceLinks};
use sextant_model::{
    DesiredOrigin, HistoryEntry, HostDeployment, TargetState, TargetSummary, UnixNanos,
};

/// Where the hub's links point.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// The orchestrator's base URL (no trailing `/`).
    pub orchestrator: Option<Arc<str>>,
    /// The trace and logs templates (`{service}` is the sender's).
    pub traces: Arc<TraceLinks>,
}

impl Links {
    /// Fills the `*_url` fields of `origin`, an assignment made at `at`.
    pub fn origin(&self, origin: &mut DesiredOrigin, at: UnixNanos) {
        if let Some(trace_id) = origin.trace_id.as_deref() {
            let ms = at.0 / 1_000_000;
            let vars = LinkVars {
                trace_id,
                service: origin.service.as_deref().unwrap_or_default(),
                from_ms: ms.saturating_sub(LinkVars::MARGIN_MS),
                to_ms: ms.saturating_add(LinkVars::MARGIN_MS),
            };
            origin.trace_url = self.traces.trace.as_ref().map(|t| t.render(&vars));
            origin.logs_url = self.traces.logs.as_ref().map(|t| t.render(&vars));
        }
        if let Some(base) = self.orchestrator.as_deref() {
            origin.job_url = origin
                .job
                .as_deref()
                .map(|job| format!("{base}/jobs/{}", segment(job)));
            origin.promotion_url = origin
                .promotion
                .as_deref()
                .map(|p| format!("{base}/api/v1/promotions/{}", segment(p)));
        }
    }

    /// Fills the links of every origin in `items`.
    pub fn fill<T: Linked>(&self, items: &mut [T]) {
        for item in items {
            item.origins(&mut |o, at| self.origin(o, at));
        }
    }
}

/// A path segment, percent-encoded.
fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An answer that holds desired origins.
pub trait Linked {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin, UnixNanos));
}

impl Linked for HostDeployment {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin, UnixNanos)) {
        if let Some(d) = self.desired.as_mut() {
            let at = d.at;
            if let Some(o) = d.origin.as_mut() {
                f(o, at);
            }
        }
    }
}

impl Linked for TargetState {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin, UnixNanos)) {
        if let Some(d) = self.desired.as_mut() {
            let at = d.at;
            if let Some(o) = d.origin.as_mut() {
                f(o, at);
            }
        }
    }
}

impl Linked for TargetSummary {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin, UnixNanos)) {
        if let Some(d) = self.desired.as_mut() {
            let at = d.at;
            if let Some(o) = d.origin.as_mut() {
                f(o, at);
            }
        }
    }
}

impl Linked for HistoryEntry {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin, UnixNanos)) {
        if let HistoryEntry::Desired {
            origin: Some(o),
            at,
            ..
        } = self
        {
            f(o, *at);
        }
    }
}

impl<T: Linked, C> Linked for (T, C) {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin, UnixNanos)) {
        self.0.origins(f);
    }
}
