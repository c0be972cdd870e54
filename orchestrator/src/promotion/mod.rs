//! Promotions: requests, approvals (N of M, separation of duties), gates,
//! the decision record, and the deployment job an approved promotion
//! starts.

pub mod gates;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sextant_exporters::telemetry::{self, KeyValue};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::domain::task::TaskKind;
use crate::domain::{
    EnvironmentSpec, GateSpec, JobKind, PromotionState, Release, ReleaseStatus, Strategy,
};
use crate::jobs::JobEnd;
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{Job, NewJob, NewPromotion, NewTask, Promotion};
use gates::{Decision, GateContext, ManualGateState};

/// A promotion request.
#[derive(Debug, Clone)]
pub struct PromotionRequest {
    pub release: String,
    pub environment: String,
    pub strategy: Strategy,
    pub reason: Option<String>,
    /// Task timeout for this deployment (default: the service's).
    pub task_timeout: Option<Duration>,
}

/// Why an approved promotion's tasks could not be planned (the promotion
/// is cancelled with this as the reason).
#[derive(Debug, thiserror::Error)]
enum PlanError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("environment {environment} has no targets")]
    NoTargets { environment: String },
    #[error(
        "blue-green needs a switch command, and target {target} has none (deploy.template: \
         custom with switch)"
    )]
    NoSwitch { target: String },
}

impl Orchestrator {
    /// Requests a promotion of a finalized release into an environment and
    /// evaluates it at once.
    pub async fn request_promotion(
        &self,
        tenant: &str,
        actor: &str,
        request: &PromotionRequest,
    ) -> Result<Promotion> {
        let release = self
            .store
            .release(tenant, &request.release)
            .await?
            .ok_or_else(|| {
                OrchestratorError::NotFound(format!("no release {:?}", request.release))
            })?;
        if release.status != ReleaseStatus::Finalized {
            return Err(OrchestratorError::Conflict(format!(
                "release {:?} is a draft; only a finalized release can be promoted",
                release.name
            )));
        }
        self.environment(tenant, &request.environment).await?;
        crate::domain::strategy::validate(&request.strategy)
            .map_err(|e| OrchestratorError::Invalid(e.to_string()))?;
        if self
            .store
            .targets(tenant, Some(&request.environment))
            .await?
            .is_empty()
        {
            return Err(OrchestratorError::Invalid(format!(
                "environment {:?} has no targets",
                request.environment
            )));
        }
        // The promotion's span: a child of the request's (and so of a CD
        // pipeline's span when it sent `traceparent`); stored with the
        // promotion so that everything after it joins its trace.
        let span = tracing::info_span!("promotion", promotion.id = tracing::field::Empty,
            release = %release.name, environment = %request.environment, actor);
        let traceparent = telemetry::traceparent_of(&span);
        self.create_and_evaluate(tenant, actor, request, &release, traceparent.as_deref())
            .instrument(span)
            .await
    }

    async fn create_and_evaluate(
        &self,
        tenant: &str,
        actor: &str,
        request: &PromotionRequest,
        release: &Release,
        traceparent: Option<&str>,
    ) -> Result<Promotion> {
        let promotion = self
            .store
            .create_promotion(&NewPromotion {
                tenant,
                release_id: &release.id,
                environment: &request.environment,
                requested_by: actor,
                strategy: &request.strategy,
                reason: request.reason.as_deref(),
                traceparent,
            })
            .await?;
        tracing::Span::current().record("promotion.id", promotion.id.as_str());
        tracing::info!(
            promotion = %promotion.id,
            release = %release.name,
            environment = %request.environment,
            actor,
            "Promotion requested"
        );
        self.evaluate_promotion(tenant, &promotion.id).await?;
        self.wake.notify_one();
        Ok(self
            .store
            .promotion(tenant, &promotion.id)
            .await?
            .unwrap_or(promotion))
    }

    pub(crate) async fn environment(&self, tenant: &str, name: &str) -> Result<EnvironmentSpec> {
        self.store
            .environments(tenant)
            .await?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| OrchestratorError::NotFound(format!("no environment {name:?}")))
    }

    async fn open_promotion(&self, tenant: &str, id: &str) -> Result<Promotion> {
        let p = self
            .store
            .promotion(tenant, id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no promotion {id:?}")))?;
        if !matches!(
            p.state,
            PromotionState::Requested | PromotionState::AwaitingApproval
        ) {
            return Err(OrchestratorError::Conflict(format!(
                "promotion {id} is {}, not awaiting a decision",
                p.state
            )));
        }
        Ok(p)
    }

    /// Approves (or rejects) a promotion as `actor`.
    pub async fn approve(
        &self,
        tenant: &str,
        actor: &str,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<Promotion> {
        let p = self.open_promotion(tenant, id).await?;
        let env = self.environment(tenant, &p.environment).await?;
        if env.separation_of_duties && actor == p.requested_by {
            return Err(OrchestratorError::Forbidden(format!(
                "{actor} requested promotion {id} and may not approve it (separation of duties)"
            )));
        }
        if !env.approvers.is_empty() && !env.approvers.iter().any(|a| a == actor) {
            return Err(OrchestratorError::Forbidden(format!(
                "{actor} is not an approver of {} (approvers: {})",
                env.name,
                env.approvers.join(", ")
            )));
        }
        // Recorded in the promotion's trace, linked to the request's.
        let span = tracing::info_span!("promotion.approve", promotion.id = id, actor, approve);
        if let Some(parent) = &p.traceparent {
            telemetry::link_and_reparent(&span, parent);
        }
        async {
            if !self.store.add_approval(id, actor, approve, comment).await? {
                return Err(OrchestratorError::Conflict(format!(
                    "{actor} already decided on promotion {id}"
                )));
            }
            tracing::info!(promotion = id, actor, approve, "Approval recorded");
            self.evaluate_promotion(tenant, id).await
        }
        .instrument(span)
        .await?;
        self.wake.notify_one();
        self.store
            .promotion(tenant, id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no promotion {id:?}")))
    }

    /// Opens or closes a manual gate of a promotion.
    pub async fn set_manual_gate(
        &self,
        tenant: &str,
        actor: &str,
        id: &str,
        gate: &str,
        open: bool,
        comment: Option<&str>,
    ) -> Result<Promotion> {
        let p = self.open_promotion(tenant, id).await?;
        let env = self.environment(tenant, &p.environment).await?;
        if !env
            .gates
            .iter()
            .any(|g| matches!(g, GateSpec::Manual { name } if name == gate))
        {
            return Err(OrchestratorError::NotFound(format!(
                "environment {} has no manual gate {gate:?}",
                env.name
            )));
        }
        self.store
            .set_manual_gate(id, gate, open, actor, comment)
            .await?;
        self.evaluate_promotion(tenant, id).await?;
        self.store
            .promotion(tenant, id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no promotion {id:?}")))
    }

    /// Cancels a promotion that has not started deploying.
    pub async fn cancel_promotion(&self, tenant: &str, actor: &str, id: &str) -> Result<Promotion> {
        let p = self
            .store
            .promotion(tenant, id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no promotion {id:?}")))?;
        if !p.state.can_move_to(PromotionState::Cancelled)
            || !self
                .store
                .move_promotion(id, p.state, PromotionState::Cancelled, actor, None, None)
                .await?
        {
            return Err(OrchestratorError::Conflict(format!(
                "promotion {id} is {} and cannot be cancelled",
                p.state
            )));
        }
        Ok(self.store.promotion(tenant, id).await?.unwrap_or(p))
    }

    /// Decides a promotion waiting on gates and approvals: rejected,
    /// still waiting, or approved (which starts its job). Safe to call from
    /// several replicas: every move is compare-and-set.
    pub async fn evaluate_promotion(&self, tenant: &str, id: &str) -> Result<()> {
        let Some(p) = self.store.promotion(tenant, id).await? else {
            return Ok(());
        };
        if !matches!(
            p.state,
            PromotionState::Requested | PromotionState::AwaitingApproval
        ) {
            return Ok(());
        }
        let release = self
            .store
            .release(tenant, &p.release_id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no release {}", p.release_id)))?;
        let environments = self.store.environments(tenant).await?;
        let Some(position) = environments.iter().position(|e| e.name == p.environment) else {
            let detail = format!("environment {} no longer exists", p.environment);
            self.decide(
                &p,
                PromotionState::Rejected,
                "sextant",
                &detail,
                json!({ "error": detail }),
            )
            .await?;
            return Ok(());
        };
        let env = &environments[position];
        let previous = position
            .checked_sub(1)
            .map(|i| environments[i].name.as_str());
        let components = self.store.components(tenant).await?;
        let manual = self.manual_gate_states(id).await?;
        let ctx = GateContext {
            tenant,
            promotion_id: id,
            requested_by: &p.requested_by,
            release: &release,
            components: &components,
            environment: env,
            previous_environment: previous,
            now: time::OffsetDateTime::now_utc(),
            manual: &manual,
            hub: self.hub.as_ref(),
            http: &self.http,
        };
        let evaluating = std::time::SystemTime::now();
        let results = gates::evaluate_all(&env.gates, &ctx).await;
        let gate_decision = gates::overall(&results);
        let approvals = self.store.approvals(id).await?;
        let approved = approvals.iter().filter(|a| a.decision == "approve").count();
        let rejected_by = approvals.iter().find(|a| a.decision == "reject");
        let required = env.required_approvals as usize;
        let record = json!({
            "release": release.name,
            "environment": env.name,
            "gates": results,
            "approvals": approvals,
            "required_approvals": required,
        });
        if let Some(r) = rejected_by {
            // The approver who refused is the actor of the move.
            let detail = format!("rejected by {}", r.approver);
            trace_gates(&p, evaluating, &results, gate_decision, "rejected");
            return self
                .decide(&p, PromotionState::Rejected, &r.approver, &detail, record)
                .await;
        }
        if gate_decision == Decision::Deny {
            let (detail, actor) = denial(&results, &env.gates, &manual);
            trace_gates(&p, evaluating, &results, gate_decision, "rejected");
            return self
                .decide(&p, PromotionState::Rejected, actor, &detail, record)
                .await;
        }
        if gate_decision == Decision::Pending || approved < required {
            if p.state == PromotionState::Requested {
                trace_gates(&p, evaluating, &results, gate_decision, "awaiting_approval");
                self.await_approval(&p, &results, (approved, required))
                    .await?;
            }
            return Ok(());
        }
        trace_gates(&p, evaluating, &results, gate_decision, "approved");
        self.decide(
            &p,
            PromotionState::Approved,
            "sextant",
            "gates and approvals passed",
            record,
        )
        .await?;
        self.start_deployment(tenant, id).await
    }

    /// The manual gates of a promotion, opened or closed by someone.
    async fn manual_gate_states(&self, id: &str) -> Result<BTreeMap<String, ManualGateState>> {
        Ok(self
            .store
            .manual_gates(id)
            .await?
            .into_iter()
            .map(|(gate, (open, by, at, comment))| {
                let state = ManualGateState {
                    open,
                    by,
                    at,
                    comment,
                };
                (gate, state)
            })
            .collect())
    }

    /// A requested promotion that must wait: it moves to
    /// `awaiting_approval`, saying what for (approvals, pending gates).
    async fn await_approval(
        &self,
        p: &Promotion,
        results: &[gates::GateResult],
        (approved, required): (usize, usize),
    ) -> Result<()> {
        let mut waiting = Vec::new();
        if approved < required {
            waiting.push(format!("{approved}/{required} approvals"));
        }
        waiting.extend(
            results
                .iter()
                .filter(|r| r.decision == Decision::Pending)
                .map(|r| format!("{}: {}", r.gate, r.reason)),
        );
        self.store
            .move_promotion(
                &p.id,
                PromotionState::Requested,
                PromotionState::AwaitingApproval,
                "sextant",
                Some(&format!("waiting for {}", waiting.join("; "))),
                None,
            )
            .await?;
        Ok(())
    }

    /// Writes the decision record and moves the promotion.
    async fn decide(
        &self,
        p: &Promotion,
        to: PromotionState,
        actor: &str,
        detail: &str,
        mut record: serde_json::Value,
    ) -> Result<()> {
        record["outcome"] = json!(to.as_str());
        record["detail"] = json!(detail);
        if self
            .store
            .move_promotion(&p.id, p.state, to, actor, Some(detail), None)
            .await?
        {
            self.store
                .write_decision(&p.id, to.as_str(), &record)
                .await?;
            tracing::info!(promotion = %p.id, outcome = to.as_str(), detail, "Promotion decided");
            if p.state == PromotionState::AwaitingApproval {
                trace_approval_wait(p, to, actor);
            }
        }
        Ok(())
    }

    /// Creates the deployment job of an approved promotion and moves it to
    /// `deploying`.
    async fn start_deployment(&self, tenant: &str, id: &str) -> Result<()> {
        let Some(p) = self.store.promotion(tenant, id).await? else {
            return Ok(());
        };
        if p.state != PromotionState::Approved {
            return Ok(());
        }
        let release = self
            .store
            .release(tenant, &p.release_id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no release {}", p.release_id)))?;
        let tasks = self
            .plan_tasks(tenant, &p.environment, &release, &p.strategy)
            .await;
        let tasks = match tasks {
            Ok(tasks) => tasks,
            Err(why) => {
                let why = why.to_string();
                self.store
                    .move_promotion(
                        id,
                        PromotionState::Approved,
                        PromotionState::Cancelled,
                        "sextant",
                        Some(&why),
                        None,
                    )
                    .await?;
                return Err(OrchestratorError::Invalid(why));
            }
        };
        let job = NewJob {
            tenant: tenant.to_owned(),
            kind: JobKind::Deploy,
            promotion_id: Some(id.to_owned()),
            parent_job_id: None,
            release_id: release.id.clone(),
            environment: p.environment.clone(),
            strategy: p.strategy.clone(),
            max_attempts: 5,
            created_by: p.requested_by.clone(),
            tasks,
        };
        let Some(job_id) = self.store.create_job(&job).await? else {
            return Ok(());
        };
        tracing::info!(promotion = id, job = %job_id, "Deployment job created");
        self.wake.notify_one();
        Ok(())
    }

    /// One task per (target, component), in target order, batched by the
    /// strategy. Blue-green adds a switch task per target after every
    /// deploy.
    async fn plan_tasks(
        &self,
        tenant: &str,
        environment: &str,
        release: &Release,
        strategy: &Strategy,
    ) -> std::result::Result<Vec<NewTask>, PlanError> {
        let targets = self.store.targets(tenant, Some(environment)).await?;
        if targets.is_empty() {
            return Err(PlanError::NoTargets {
                environment: environment.to_owned(),
            });
        }
        let deployed = self.store.deployed(tenant, None).await?;
        let blue_green = matches!(strategy, Strategy::BlueGreen {});
        let batches = crate::domain::strategy::batches(strategy, targets.len());
        let timeout_ms = self.settings.task_timeout.as_millis() as i64;
        let mut tasks = Vec::new();
        for (target, batch) in targets.iter().zip(batches) {
            if blue_green {
                let has_switch = matches!(
                    target.deploy,
                    Some(crate::domain::DeployTemplate::Custom {
                        switch: Some(_),
                        ..
                    })
                );
                if !has_switch {
                    return Err(PlanError::NoSwitch {
                        target: target.name.clone(),
                    });
                }
            }
            for c in &release.components {
                let current = deployed
                    .iter()
                    .find(|d| d.target == target.name && d.component == c.component);
                let slot = blue_green.then(|| match current.and_then(|d| d.slot.as_deref()) {
                    Some("blue") => "green".to_owned(),
                    _ => "blue".to_owned(),
                });
                tasks.push(NewTask {
                    batch: batch as i64,
                    kind: TaskKind::Deploy,
                    release_id: release.id.clone(),
                    target: target.name.clone(),
                    component: c.component.clone(),
                    image: c.image.clone(),
                    digest: c.digest.clone(),
                    previous_digest: current.map(|d| d.digest.clone()),
                    slot: slot.clone(),
                    max_attempts: self.settings.task_attempts,
                    timeout_ms,
                });
                if blue_green {
                    tasks.push(NewTask {
                        batch: 1,
                        kind: TaskKind::Switch,
                        release_id: release.id.clone(),
                        target: target.name.clone(),
                        component: c.component.clone(),
                        image: c.image.clone(),
                        digest: c.digest.clone(),
                        previous_digest: current.map(|d| d.digest.clone()),
                        slot,
                        max_attempts: self.settings.task_attempts,
                        timeout_ms,
                    });
                }
            }
        }
        // Deploys of one batch before switches: stable order by batch.
        tasks.sort_by_key(|t| t.batch);
        Ok(tasks)
    }

    /// The promotion loop: re-evaluates every waiting promotion each
    /// `poll`, until `cancel` fires.
    pub async fn run_promotions(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.evaluate_waiting().await {
                tracing::warn!(error = %e, "Promotion loop failed; retrying");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// The job engine's report that a deploy job ended: the job's promotion
    /// follows (`deployed`, `failed` or `rolled_back`) unless it has moved
    /// on. A rollback job's end is reported through the job it rolls back.
    pub(crate) async fn job_ended(&self, job: &Job, end: JobEnd, detail: &str) -> Result<()> {
        if job.kind != JobKind::Deploy {
            return Ok(());
        }
        let to = match end {
            JobEnd::Deployed => PromotionState::Deployed,
            JobEnd::Failed => PromotionState::Failed,
            JobEnd::RolledBack => PromotionState::RolledBack,
        };
        if let Some(p) = &job.promotion_id
            && let Some(promotion) = self.store.promotion(&job.tenant, p).await?
            && promotion.state.can_move_to(to)
        {
            self.store
                .move_promotion(p, promotion.state, to, "sextant", Some(detail), None)
                .await?;
        }
        Ok(())
    }

    /// Re-evaluates every promotion still waiting (one pass of the
    /// promotion loop).
    pub async fn evaluate_waiting(&self) -> Result<()> {
        for (tenant, id) in self
            .store
            .promotions_in(&[PromotionState::Requested, PromotionState::AwaitingApproval])
            .await?
        {
            if let Err(e) = self.evaluate_promotion(&tenant, &id).await {
                tracing::warn!(promotion = %id, error = %e, "Cannot evaluate promotion");
            }
        }
        // An approved promotion whose job was not created (a crash between
        // the two) gets it now.
        for (tenant, id) in self
            .store
            .promotions_in(&[PromotionState::Approved])
            .await?
        {
            if let Err(e) = self.start_deployment(&tenant, &id).await {
                tracing::warn!(promotion = %id, error = %e, "Cannot start deployment");
            }
        }
        Ok(())
    }
}

/// Why gates denied a promotion, and who did: a manual gate closed by
/// someone makes them the actor, any other denial is the orchestrator's.
fn denial<'a>(
    results: &[gates::GateResult],
    specs: &[GateSpec],
    manual: &'a BTreeMap<String, ManualGateState>,
) -> (String, &'a str) {
    let denied: Vec<String> = results
        .iter()
        .filter(|r| r.decision == Decision::Deny)
        .map(|r| format!("{}: {}", r.gate, r.reason))
        .collect();
    let actor = specs
        .iter()
        .filter_map(|g| match g {
            GateSpec::Manual { name } => manual.get(name).filter(|m| !m.open),
            _ => None,
        })
        .map(|m| m.by.as_str())
        .next()
        .unwrap_or("sextant");
    (format!("denied by gate {}", denied.join("; ")), actor)
}

/// Records the gate evaluation that moved a promotion (to waiting, or to a
/// decision) as a `gate.evaluate` span of the promotion's trace; the
/// evaluations that change nothing while it waits are not recorded.
fn trace_gates(
    p: &Promotion,
    started: std::time::SystemTime,
    results: &[gates::GateResult],
    decision: Decision,
    outcome: &'static str,
) {
    let Some(parent) = &p.traceparent else { return };
    let names = |d: Decision| {
        results
            .iter()
            .filter(|r| r.decision == d)
            .map(|r| r.gate.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    telemetry::record_span(
        "gate.evaluate",
        parent,
        started,
        std::time::SystemTime::now(),
        vec![
            KeyValue::new("sextant.promotion.id", p.id.clone()),
            KeyValue::new("sextant.gates", results.len() as i64),
            KeyValue::new("sextant.gate.decision", decision.as_str()),
            KeyValue::new("sextant.gates.denied", names(Decision::Deny)),
            KeyValue::new("sextant.gates.pending", names(Decision::Pending)),
            KeyValue::new("sextant.promotion.outcome", outcome),
        ],
    );
}

/// Records a promotion's wait for approvals and gates, from its request to
/// the decision, as an `approval.wait` span of its trace.
fn trace_approval_wait(p: &Promotion, to: PromotionState, actor: &str) {
    let Some(parent) = &p.traceparent else { return };
    let Ok(requested) = time::OffsetDateTime::parse(
        &p.created_at,
        &time::format_description::well_known::Rfc3339,
    ) else {
        return;
    };
    telemetry::record_span(
        "approval.wait",
        parent,
        requested.into(),
        std::time::SystemTime::now(),
        vec![
            KeyValue::new("sextant.promotion.id", p.id.clone()),
            KeyValue::new("sextant.environment", p.environment.clone()),
            KeyValue::new("sextant.promotion.outcome", to.as_str()),
            KeyValue::new("sextant.actor", actor.to_owned()),
        ],
    );
}
