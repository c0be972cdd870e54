//! Agents, their registration tokens, status and revocation; and
//! `GET /api/v1/whoami`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agents::AgentView;
use crate::service::OrchestratorError;

use super::error::*;
use super::state::*;

/// Who the API takes the caller for.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WhoAmI {
    tenant: String,
    /// The actor recorded in events and approvals: the token's subject
    /// (the header is ignored then), or the `X-Sextant-Actor` header when
    /// no tokens are configured.
    actor: String,
    /// The caller may change state (promote, approve, gates, roll back,
    /// agents), not only read.
    can_change: bool,
}

/// The caller's tenant and actor, as the API will record them.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub(super) async fn whoami(caller: Caller) -> ApiResult<WhoAmI> {
    Ok(Json(WhoAmI {
        tenant: caller.tenant,
        actor: caller.actor,
        can_change: caller.can_change,
    }))
}

pub(super) fn channel(state: &ApiState) -> Result<&Arc<crate::agents::AgentChannel>, ApiError> {
    state.orchestrator.agents.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_agent_channel",
            "this orchestrator runs no agent channel",
        )
    })
}

/// Every agent of the caller's tenant: status (online, degraded, offline,
/// revoked), version, labels, last heartbeat and current tasks.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, body = [AgentView])))]
pub(super) async fn list_agents(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Vec<AgentView>> {
    let views = channel(&state)?
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    Ok(Json(views))
}

/// One agent, by id or name.
#[utoipa::path(get, path = "/api/v1/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "Agent id or name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(agent): Path<String>,
) -> ApiResult<AgentView> {
    let views = channel(&state)?
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    find_agent(views, &agent).map(Json)
}

pub(super) fn find_agent(views: Vec<AgentView>, key: &str) -> Result<AgentView, ApiError> {
    let mut matching: Vec<AgentView> = views
        .into_iter()
        .filter(|a| a.id == key || a.name == key)
        .collect();
    match matching.len() {
        0 => Err(not_found(format!("no agent {key}"))),
        1 => Ok(matching.remove(0)),
        n => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous",
            format!("{n} agents are named {key}; use an id"),
        )),
    }
}

/// Revokes an agent: its stream is closed and refused from now on.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/revoke", tag = "agents",
    params(("agent" = String, Path, description = "Agent id or name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(agent): Path<String>,
) -> ApiResult<AgentView> {
    let channel = channel(&state)?;
    let views = channel
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    let view = find_agent(views, &agent)?;
    channel
        .store
        .revoke_agent(&caller.tenant, &view.id)
        .await
        .map_err(OrchestratorError::from)?;
    tracing::info!(agent = %view.id, actor = %caller.actor, "Agent revoked");
    let views = channel
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    find_agent(views, &view.id).map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct NewAgentToken {
    /// How long the token may be used, in seconds (default 3600, at most
    /// 7 days).
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// A one-time registration token, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AgentToken {
    token: String,
    expires_at: String,
}

/// Creates a one-time registration token for an agent of the caller's
/// tenant.
#[utoipa::path(post, path = "/api/v1/agents/tokens", tag = "agents", request_body = NewAgentToken,
    responses((status = 201, body = AgentToken), (status = 400, body = ErrorBody)))]
pub(super) async fn create_agent_token(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewAgentToken>,
) -> Result<(StatusCode, Json<AgentToken>), ApiError> {
    let ttl = body.ttl_seconds.unwrap_or(3600);
    if ttl == 0 || ttl > 7 * 24 * 3600 {
        return Err(OrchestratorError::Invalid(
            "ttl_seconds must be between 1 and 604800 (7 days)".into(),
        )
        .into());
    }
    let token = format!(
        "{}{}",
        crate::agents::TOKEN_PREFIX,
        crate::agents::new_secret()
    );
    let expires = crate::store::now_ms() + (ttl * 1000) as i64;
    channel(&state)?
        .store
        .create_agent_token(
            &caller.tenant,
            &caller.actor,
            &crate::agents::secret_hash(&token),
            expires,
        )
        .await
        .map_err(OrchestratorError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(AgentToken {
            token,
            expires_at: crate::store::rfc3339(expires),
        }),
    ))
}
