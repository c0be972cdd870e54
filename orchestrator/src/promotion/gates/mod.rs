//! Promotion gates: what must hold before a release may enter an
//! environment, each answering allow, deny or pending.
//!
//! The promotion service builds a [`GateContext`] for one promotion and asks
//! [`evaluate_all`]; the results go into the promotion's decision record and
//! [`overall`] folds them into one decision.
//!
//! Missing input means deny, never allow: a malformed freeze window, a hub
//! that cannot be reached or answers something unexpected, a webhook that
//! times out or answers nonsense, all become [`Decision::Deny`] with the
//! reason. Nothing here panics on input.
//!
//! - [`freeze`]: the environment's weekly freeze windows (UTC).
//! - manual: opened or closed by a person (`sextant gate open|close`).
//! - [`hub`]: "the same release has been healthy in the previous environment
//!   for T", from the hub's rollout and history APIs.
//! - [`webhook`]: an HTTP policy endpoint.

pub mod freeze;
pub mod hub;
pub mod webhook;

use sextant_kit::hub::HubClient;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::domain::{ComponentSpec, EnvironmentSpec, GateSpec, Release};

pub use freeze::{FreezeWindowError, freeze_window_open};

/// What a gate (or a set of gates) says about a promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The gate passes.
    Allow,
    /// The gate refuses; the promotion must not proceed.
    Deny,
    /// Not yet: ask again later.
    Pending,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Pending => "pending",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One gate's answer, as kept in the promotion's decision record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateResult {
    /// [`GateSpec::name`].
    pub gate: String,
    pub decision: Decision,
    /// Why, for people.
    pub reason: String,
    /// RFC 3339: the `now` the gate was evaluated against.
    pub evaluated_at: String,
}

/// The state of one manual gate for one promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManualGateState {
    /// Opened (true) or closed (false).
    pub open: bool,
    /// Who opened or closed it.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Everything the gates of one promotion may look at.
pub struct GateContext<'a> {
    pub tenant: &'a str,
    pub promotion_id: &'a str,
    pub requested_by: &'a str,
    pub release: &'a Release,
    /// The specs of the release's components (application and workspace on
    /// the hub).
    pub components: &'a [ComponentSpec],
    /// The environment promoted into.
    pub environment: &'a EnvironmentSpec,
    /// The environment before it in promotion order; `None` for the first.
    pub previous_environment: Option<&'a str>,
    pub now: OffsetDateTime,
    /// Manual gate name → its state for this promotion.
    pub manual: &'a BTreeMap<String, ManualGateState>,
    /// The hub, when one is configured.
    pub hub: Option<&'a HubClient>,
    /// For webhooks.
    pub http: &'a reqwest::Client,
}

/// Evaluates one gate. Never fails: every error is a deny with its reason.
pub async fn evaluate(gate: &GateSpec, ctx: &GateContext<'_>) -> GateResult {
    let (decision, reason) = match gate {
        GateSpec::Freeze => freeze::evaluate(ctx),
        GateSpec::Manual { name } => manual(name, ctx.manual),
        GateSpec::PreviousEnvironmentHealthy { for_ } => hub::evaluate(*for_, ctx).await,
        GateSpec::Webhook { name, url, timeout } => {
            webhook::evaluate(name, url, *timeout, ctx).await
        }
    };
    let gate = gate.name();
    tracing::debug!(
        promotion = ctx.promotion_id,
        gate,
        decision = decision.as_str(),
        reason,
        "Gate evaluated"
    );
    GateResult {
        gate,
        decision,
        reason,
        evaluated_at: rfc3339(ctx.now),
    }
}

/// Evaluates every gate concurrently; the results come back in gate order.
pub async fn evaluate_all(gates: &[GateSpec], ctx: &GateContext<'_>) -> Vec<GateResult> {
    futures::future::join_all(gates.iter().map(|gate| evaluate(gate, ctx))).await
}

/// Folds results into one decision: any deny denies, else any pending is
/// pending, else allow (also when there are no gates).
pub fn overall(results: &[GateResult]) -> Decision {
    if results.iter().any(|r| r.decision == Decision::Deny) {
        Decision::Deny
    } else if results.iter().any(|r| r.decision == Decision::Pending) {
        Decision::Pending
    } else {
        Decision::Allow
    }
}

fn manual(name: &str, states: &BTreeMap<String, ManualGateState>) -> (Decision, String) {
    let Some(state) = states.get(name) else {
        return (
            Decision::Pending,
            format!("waiting for someone to open manual gate {name:?}"),
        );
    };
    let comment = state
        .comment
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    if state.open {
        (
            Decision::Allow,
            format!("opened by {} at {}{comment}", state.by, state.at),
        )
    } else {
        (
            Decision::Deny,
            format!("closed by {} at {}{comment}", state.by, state.at),
        )
    }
}

/// RFC 3339 in UTC; falls back to the Unix time if formatting fails (it
/// cannot for years 0–9999).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A duration for people: `1h2m3s`, `40s`, `0s` (whole seconds).
pub(crate) fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 && d.subsec_millis() > 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(decision: Decision) -> GateResult {
        GateResult {
            gate: "g".into(),
            decision,
            reason: String::new(),
            evaluated_at: String::new(),
        }
    }

    #[test]
    fn overall_prefers_deny_then_pending() {
        use Decision::*;
        assert_eq!(overall(&[]), Allow);
        assert_eq!(overall(&[result(Allow), result(Allow)]), Allow);
        assert_eq!(overall(&[result(Allow), result(Pending)]), Pending);
        assert_eq!(
            overall(&[result(Pending), result(Deny), result(Allow)]),
            Deny
        );
    }

    #[test]
    fn manual_gates_wait_open_and_close() {
        let mut states = BTreeMap::new();
        assert_eq!(manual("qa", &states).0, Decision::Pending);
        states.insert(
            "qa".to_string(),
            ManualGateState {
                open: true,
                by: "alice".into(),
                at: "2026-01-01T00:00:00Z".into(),
                comment: Some("looks good".into()),
            },
        );
        let (d, reason) = manual("qa", &states);
        assert_eq!(d, Decision::Allow);
        assert!(
            reason.contains("alice") && reason.contains("looks good"),
            "{reason}"
        );
        if let Some(s) = states.get_mut("qa") {
            s.open = false;
            s.by = "bob".into();
        }
        let (d, reason) = manual("qa", &states);
        assert_eq!(d, Decision::Deny);
        assert!(reason.contains("closed by bob"), "{reason}");
        assert_eq!(manual("other", &states).0, Decision::Pending);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(40)), "40s");
        assert_eq!(human(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
