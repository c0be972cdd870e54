//! Jobs, their tasks and logs, rollback on request, and what is deployed
//! where.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{ArtifactInfo, Deployed, Job, StateEvent, Task, TaskLogLine};

use super::error::*;
use super::state::*;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct JobParams {
    /// Only unfinished jobs.
    #[serde(default)]
    active: bool,
    /// At most this many jobs (1 to 1000; default 100).
    limit: Option<i64>,
    /// The id of the last job of the previous page: this page holds the
    /// jobs after it.
    before: Option<String>,
}

/// A job with the links of its trace.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobView {
    #[serde(flatten)]
    job: Job,
    #[serde(flatten)]
    links: TraceUrls,
}

/// The links of a trace (`trace_url_template`, `logs_url_template`):
/// null without a trace id or without a template.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TraceUrls {
    /// The trace, e.g. in Grafana's Explore on Tempo.
    trace_url: Option<String>,
    /// The trace's log lines, e.g. in Grafana's Explore on Loki.
    logs_url: Option<String>,
}

impl From<sextant_kit::links::Links> for TraceUrls {
    fn from(l: sextant_kit::links::Links) -> Self {
        Self {
            trace_url: l.trace_url,
            logs_url: l.logs_url,
        }
    }
}

/// Jobs, newest first (by creation, then id), a page at a time.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobParams),
    responses((status = 200, body = [JobView]), (status = 400, body = ErrorBody)))]
pub(super) async fn list_jobs(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<JobParams>,
) -> ApiResult<Vec<JobView>> {
    let page = page(q.before.as_deref(), q.limit, 100);
    let jobs = state
        .orchestrator
        .store
        .jobs(&caller.tenant, q.active, page)
        .await?
        .ok_or_else(|| unknown_cursor("job", page))?;
    Ok(Json(
        jobs.into_iter()
            .map(|job| JobView {
                links: super::links::job(&state.links, &job).into(),
                job,
            })
            .collect(),
    ))
}

/// A job with its tasks, events and artifacts.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobDetail {
    #[serde(flatten)]
    job: Job,
    #[serde(flatten)]
    links: TraceUrls,
    /// The rollback job created for this job, once there is one.
    rollback_job_id: Option<String>,
    tasks: Vec<Task>,
    events: Vec<StateEvent>,
    artifacts: Vec<ArtifactInfo>,
}

/// A job with its tasks, events and artifacts.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<JobDetail> {
    let store = &state.orchestrator.store;
    let job = store
        .job(Some(&caller.tenant), &id)
        .await?
        .ok_or_else(|| not_found(format!("no job {id:?}")))?;
    Ok(Json(job_detail(&state, job).await?))
}

pub(super) async fn job_detail(state: &ApiState, job: Job) -> Result<JobDetail, ApiError> {
    let store = &state.orchestrator.store;
    let id = job.id.clone();
    Ok(JobDetail {
        links: super::links::job(&state.links, &job).into(),
        rollback_job_id: store.rollback_job_of(&id).await?,
        tasks: store.tasks(&id).await?,
        events: store.job_events(&id).await?,
        artifacts: store.artifact_infos(&id).await?,
        job,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogParams {
    /// Lines after this id.
    after: Option<i64>,
    limit: Option<i64>,
}

/// A task's log lines.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/tasks/{task}/logs", tag = "jobs",
    params(("id" = String, Path), ("task" = String, Path), LogParams),
    responses((status = 200, body = [TaskLogLine]), (status = 404, body = ErrorBody)))]
pub(super) async fn task_logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<LogParams>,
) -> ApiResult<Vec<TaskLogLine>> {
    let store = &state.orchestrator.store;
    store
        .job(Some(&caller.tenant), &id)
        .await?
        .ok_or_else(|| not_found(format!("no job {id:?}")))?;
    match store.task(&task).await? {
        Some(t) if t.job_id == id => {}
        _ => return Err(not_found(format!("no task {task:?} in job {id}"))),
    }
    Ok(Json(
        store
            .task_logs(
                &task,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(1000).clamp(1, 10_000),
            )
            .await?,
    ))
}

/// Rolls a completed or failed deploy job back to what ran before it. The
/// job moves to `rolling_back` at once (202); the engine then creates its
/// rollback job, whose id appears as `rollback_job_id` in `GET
/// /api/v1/jobs/{id}` (the response carries it when it already exists).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/rollback", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 202, body = JobDetail), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn rollback(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobDetail>), ApiError> {
    let job = state
        .orchestrator
        .request_rollback(&caller.tenant, &caller.actor, &id)
        .await?;
    let detail = job_detail(&state, job).await?;
    Ok((StatusCode::ACCEPTED, Json(detail)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeployedParams {
    target: Option<String>,
}

/// What last succeeded on each (target, component).
#[utoipa::path(get, path = "/api/v1/deployed", tag = "jobs", params(DeployedParams),
    responses((status = 200, body = [Deployed])))]
pub(super) async fn deployed(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<DeployedParams>,
) -> ApiResult<Vec<Deployed>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .deployed(&caller.tenant, q.target.as_deref())
            .await?,
    ))
}
