//! Delivery performance (DORA's five metrics) computed from the hub's
//! history: the answer of `GET /api/v1/insights/dora`, read by the UI's
//! insights page and `sextant dora`. Definitions: `docs/insights.md`.

use serde::{Deserialize, Serialize};

use crate::time::UnixNanos;

/// How a report's series is cut.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    #[default]
    Day,
    Week,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
        }
    }

    /// The bucket's length in nanoseconds.
    pub fn nanos(self) -> i64 {
        match self {
            Self::Day => 86_400 * 1_000_000_000,
            Self::Week => 7 * 86_400 * 1_000_000_000,
        }
    }
}

impl std::str::FromStr for Bucket {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            other => Err(format!(
                "unknown bucket {other:?}: bucket takes day or week"
            )),
        }
    }
}

/// DORA's performance bands, as dora.dev draws them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Elite,
    High,
    Medium,
    Low,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elite => "elite",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// The five metrics over one set of deployments. A figure is null when
/// nothing measured it (no deployments, no failures, no commit times).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoraMetrics {
    /// Deployments counted (see `docs/insights.md` for what one is).
    pub deployments: u64,
    /// Deployment frequency: deployments per day over the window.
    pub deployments_per_day: f64,
    pub deployment_frequency_band: Option<Band>,
    /// Change lead time: the median, in seconds, over the deployments
    /// whose lead time is known.
    pub lead_time_seconds: Option<f64>,
    /// How many deployments the lead time is measured over.
    pub lead_time_deployments: u64,
    pub lead_time_band: Option<Band>,
    /// Deployments that failed (a failed report, or undone by a rollback
    /// or by a redeploy of an older revision).
    pub failed_deployments: u64,
    /// Change fail rate: failed deployments / deployments.
    pub change_fail_rate: Option<f64>,
    pub change_fail_rate_band: Option<Band>,
    /// Failed deployment recovery time: the median, in seconds, over the
    /// failures that were recovered.
    pub recovery_time_seconds: Option<f64>,
    pub recovered_failures: u64,
    /// Failures not recovered by the end of the window.
    pub unrecovered_failures: u64,
    pub recovery_time_band: Option<Band>,
    /// Deployments made to undo or repair a failed one.
    pub rework_deployments: u64,
    /// Deployment rework rate: rework deployments / deployments.
    pub rework_rate: Option<f64>,
}

/// One bucket of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoraPoint {
    /// The bucket's first instant (UTC midnight; Mondays for weeks).
    pub start: UnixNanos,
    #[serde(flatten)]
    pub metrics: DoraMetrics,
}

/// The metrics of one (workspace, application, workload, environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoraGroup {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    pub environment: String,
    #[serde(flatten)]
    pub metrics: DoraMetrics,
}

/// `GET /api/v1/insights/dora`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoraReport {
    pub since: UnixNanos,
    pub until: UnixNanos,
    pub bucket: Bucket,
    /// Every deployment in scope.
    pub totals: DoraMetrics,
    /// The window cut into buckets, oldest first; empty buckets included.
    pub series: Vec<DoraPoint>,
    /// Per (workspace, application, workload, environment), by name.
    pub groups: Vec<DoraGroup>,
    /// Targets whose deployments a hub upgraded with history already
    /// stored is still rebuilding from it: their deployments are not
    /// counted yet. 0 once the rebuild is done.
    #[serde(default)]
    pub rebuilding_targets: u64,
}

/// A rate as a percentage with one decimal (`25.0%`); `—` when unknown.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// A duration in seconds as people read it: `2d 3h`, `3h 12m`, `4m 5s`
/// or `12s`; `—` when unknown.
pub fn duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "—".to_owned();
    };
    let s = s.max(0.0).round() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_read_at_a_glance() {
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(12.4)), "12s");
        assert_eq!(duration(Some(245.0)), "4m 5s");
        assert_eq!(duration(Some(3.0 * 3600.0 + 720.0)), "3h 12m");
        assert_eq!(duration(Some(2.0 * 86_400.0 + 3.0 * 3600.0)), "2d 3h");
        assert_eq!(percent(Some(0.25)), "25.0%");
        assert_eq!(percent(None), "—");
    }
}
