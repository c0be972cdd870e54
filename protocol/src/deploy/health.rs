//! How an agent verifies a new container's health: a [`Probe`] and its
//! timing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// How the new container's health is verified: a probe and its timing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to probe.
    #[serde(flatten)]
    pub probe: Probe,
    /// Per probe (default 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Between probes (default 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Consecutive failures, after the start period, that fail the check
    /// (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Failures in this window after start don't count (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<HumanDuration>,
}

/// The probe of a [`HealthCheck`], tagged by `check`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "lowercase", deny_unknown_fields)]
pub enum Probe {
    /// Only that the container is running.
    #[default]
    None,
    /// The image's Docker `HEALTHCHECK`.
    Docker,
    /// An HTTP GET from the agent. `{port:N}` and `{ip}` are substituted.
    Http {
        url: String,
        /// The status to expect; absent means any 2xx.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect_status: Option<u16>,
    },
    /// A TCP connect from the agent. `{port:N}` and `{ip}` are substituted.
    Tcp { address: String },
    /// A command run inside the container (`docker exec`); exit 0 passes.
    Command { argv: Vec<String> },
}

impl HealthCheck {
    /// The per-probe timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(Duration::from_secs(2), |d| d.0)
    }
    /// The pause between probes.
    pub fn interval(&self) -> Duration {
        self.interval.map_or(Duration::from_secs(1), |d| d.0)
    }
    /// Consecutive failures that fail the check.
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(3).max(1)
    }
    /// The grace window after start.
    pub fn start_period(&self) -> Duration {
        self.start_period.map_or(Duration::ZERO, |d| d.0)
    }
}
