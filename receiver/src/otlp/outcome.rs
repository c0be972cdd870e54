//! What reading one OTLP request gave: its deployment events, and what was
//! ignored or rejected and why. Written by `extract` and by the
//! reconcilers' readers, read by `ingest`.

use sextant_model::DeploymentEvent;
use sextant_model::EventError;

/// The outcome of reading one request.
#[derive(Debug, Default)]
pub struct Extracted {
    pub events: Vec<DeploymentEvent>,
    /// Records that are not deployment events.
    pub ignored: u64,
    /// Records of a reconciler that map to no deployment event, by reason
    /// label (a Flux `Alert`, a source used only for desired state, …).
    pub ignored_for: Vec<(&'static str, u64)>,
    /// Desired revisions of reconcilers' workloads in `events`, to remember
    /// once the store has taken them ([`crate::reconcilers::DesiredMemo`]).
    pub remember: Vec<(String, String)>,
    /// Rejected deployment events, by reason label.
    pub rejected: Vec<(&'static str, u64)>,
    /// The first problem, for `partial_success.error_message`.
    pub first_error: Option<String>,
}

impl Extracted {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// Counts one rejected record under `reason`; the first message is kept.
    pub fn reject(&mut self, reason: &'static str, message: String) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.rejected.push((reason, 1)),
        }
        self.first_error.get_or_insert(message);
    }

    /// Counts one record that maps to no deployment event under `reason`.
    pub fn ignore(&mut self, reason: &'static str) {
        match self.ignored_for.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.ignored_for.push((reason, 1)),
        }
    }

    /// Every ignored record, whatever the reason.
    pub fn ignored_total(&self) -> u64 {
        self.ignored + self.ignored_for.iter().map(|(_, n)| n).sum::<u64>()
    }

    pub(crate) fn reject_event(&mut self, location: String, error: EventError) {
        let reason = match error {
            EventError::Missing { .. } => "missing_attribute",
            EventError::Invalid { .. } => "invalid_attribute",
            EventError::Field { .. } => "invalid_field",
        };
        self.reject(reason, format!("{location}: {error}"));
    }

    /// The `partial_success` error message: the first problem and how many
    /// records were rejected.
    pub fn error_message(&self) -> String {
        match (&self.first_error, self.rejected_total()) {
            (Some(first), 1) => first.clone(),
            (Some(first), n) => format!("{n} deployment events rejected; first: {first}"),
            (None, _) => String::new(),
        }
    }
}
