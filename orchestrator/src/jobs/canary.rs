//! Canary analysis between stages: the hub's rollout of the stage's
//! targets and a Prometheus threshold. Missing input is a breach.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use sextant_exporters::telemetry;

use super::failure::{CanaryBreach, PrometheusError, RolloutProblem};
use crate::domain::{CanaryAnalysis, TargetSpec, TaskState};
use crate::promotion::gates::hub::error_chain;
use crate::service::Orchestrator;
use crate::store::{Job, Task};
use sextant_kit::hub::{Found as _, RolloutQuery};
use sextant_model::{DeploymentStatus, HostsListed, Rollout};

impl Orchestrator {
    /// Between canary stages: waits, then checks the hub's rollout for the
    /// stage's targets and the Prometheus threshold. Missing input is a
    /// breach.
    pub(super) async fn analyse_canary(
        &self,
        job: &Job,
        targets: &BTreeMap<String, TargetSpec>,
        stage: &[&Task],
        analysis: &CanaryAnalysis,
    ) -> std::result::Result<(), CanaryBreach> {
        if let Some(wait) = analysis.wait {
            tokio::time::sleep(wait.0).await;
        }
        if let Some(t) = stage.iter().find(|t| t.state != TaskState::Succeeded) {
            return Err(CanaryBreach::TaskNotSucceeded {
                target: t.target.clone(),
                state: t.state.to_string(),
            });
        }
        if analysis.hub_rollout {
            let hub = self.hub.as_ref().ok_or(CanaryBreach::NoHub)?;
            let components = self
                .store
                .components(&job.tenant)
                .await
                .map_err(|e| CanaryBreach::Store(e.to_string()))?;
            let mut checked = HashSet::new();
            for t in stage {
                let hub_target = targets
                    .get(&t.target)
                    .map(|s| s.hub_target().to_owned())
                    .unwrap_or_else(|| t.target.clone());
                if !checked.insert((hub_target.clone(), t.component.clone())) {
                    continue;
                }
                let application = components
                    .iter()
                    .find(|c| c.name == t.component)
                    .and_then(|c| c.application.clone())
                    .unwrap_or_else(|| "default".into());
                let query = RolloutQuery {
                    target: Some(hub_target.clone()),
                    application: Some(application),
                    hosts: Some(HostsListed::All),
                    ..RolloutQuery::new(&t.component, &job.environment)
                };
                let rollout = hub
                    .rollout(&query)
                    .await
                    .found()
                    .map_err(|e| CanaryBreach::HubUnreachable(error_chain(&e)))?;
                let rollout = rollout.ok_or_else(|| CanaryBreach::NotInHub {
                    component: t.component.clone(),
                    environment: job.environment.clone(),
                })?;
                check_rollout(&rollout, &t.digest).map_err(|problem| CanaryBreach::Rollout {
                    component: t.component.clone(),
                    target: hub_target.clone(),
                    problem,
                })?;
            }
        }
        if let Some(p) = &analysis.prometheus {
            let value = prometheus_value(&self.http, &p.url, &p.query).await?;
            if value > p.max {
                return Err(CanaryBreach::AboveThreshold {
                    query: p.query.clone(),
                    value,
                    max: p.max,
                });
            }
        }
        Ok(())
    }
}

/// Checks a hub rollout answer: at least one host on `digest`, every host
/// on it succeeded.
pub(super) fn check_rollout(
    rollout: &Rollout,
    digest: &str,
) -> std::result::Result<(), RolloutProblem> {
    let mut on_digest = 0;
    let mut bad = Vec::new();
    for h in &rollout.hosts {
        let (name, revision, status) = (&h.host.host, &h.host.revision, h.host.status);
        if revision != digest {
            bad.push(format!("{name} runs {revision}"));
        } else if status != DeploymentStatus::Succeeded {
            bad.push(format!("{name} is {}", status.as_str()));
        } else {
            on_digest += 1;
        }
    }
    if !bad.is_empty() {
        return Err(RolloutProblem::Hosts(bad));
    }
    if on_digest == 0 {
        return Err(RolloutProblem::NotYetReported);
    }
    Ok(())
}

/// The value of a Prometheus instant query (the first sample of a vector,
/// or a scalar).
pub(super) async fn prometheus_value(
    http: &reqwest::Client,
    base: &str,
    query: &str,
) -> std::result::Result<f64, PrometheusError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let failed = |e: reqwest::Error| PrometheusError::Request {
        url: url.clone(),
        error: e.to_string(),
    };
    let body: serde_json::Value = http
        .get(&url)
        .headers(telemetry::current_headers())
        .query(&[("query", query)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(failed)?
        .error_for_status()
        .map_err(failed)?
        .json()
        .await
        .map_err(failed)?;
    let data = &body["data"];
    let value = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .and_then(|r| r.first())
            .map(|s| &s["value"][1]),
        Some("scalar") => Some(&data["result"][1]),
        _ => None,
    };
    value
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| PrometheusError::NoSample {
            query: query.to_owned(),
        })
}
