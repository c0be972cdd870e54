//! Links the hub adds to what it answers: from a desired assignment's
//! origin to the orchestrator's job and promotion, and from its trace id
//! to the trace and logs viewers (`trace_url_template`,
//! `logs_url_template`). The API and the UI fill them alike, after the
//! read, so the store never knows a URL.

use std::sync::Arc;

use sextant_model::{DesiredOrigin, HistoryEntry, HostDeployment, TargetState, TargetSummary};

/// Where the hub's links point.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// The orchestrator's base URL (no trailing `/`).
    pub orchestrator: Option<Arc<str>>,
}

impl Links {
    /// Fills the `*_url` fields of `origin`.
    pub fn origin(&self, origin: &mut DesiredOrigin) {
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
            item.origins(&mut |o| self.origin(o));
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
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin));
}

impl Linked for HostDeployment {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin)) {
        if let Some(o) = self.desired.as_mut().and_then(|d| d.origin.as_mut()) {
            f(o);
        }
    }
}

impl Linked for TargetState {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin)) {
        if let Some(o) = self.desired.as_mut().and_then(|d| d.origin.as_mut()) {
            f(o);
        }
    }
}

impl Linked for TargetSummary {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin)) {
        if let Some(o) = self.desired.as_mut().and_then(|d| d.origin.as_mut()) {
            f(o);
        }
    }
}

impl Linked for HistoryEntry {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin)) {
        if let HistoryEntry::Desired {
            origin: Some(o), ..
        } = self
        {
            f(o);
        }
    }
}

impl<T: Linked, C> Linked for (T, C) {
    fn origins(&mut self, f: &mut dyn FnMut(&mut DesiredOrigin)) {
        self.0.origins(f);
    }
}
