//! `POST /api/v1/apply` and the configuration it writes: environments,
//! targets and components.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::apply::{Applied, Document};
use crate::domain::{ComponentSpec, EnvironmentSpec, TargetSpec};

use super::error::*;
use super::state::*;

/// Applies a configuration document (YAML or JSON body).
#[utoipa::path(post, path = "/api/v1/apply", tag = "config",
    request_body(content = Document, content_type = "application/yaml"),
    responses((status = 200, body = [Applied]), (status = 400, body = ErrorBody)))]
pub(super) async fn apply(
    State(state): State<ApiState>,
    caller: Caller,
    body: String,
) -> ApiResult<Vec<Applied>> {
    let doc = Document::parse(&body).map_err(|e| invalid(e.to_string()))?;
    Ok(Json(state.orchestrator.apply(&caller.tenant, &doc).await?))
}

/// Environments in promotion order.
#[utoipa::path(get, path = "/api/v1/environments", tag = "config",
    responses((status = 200, body = [EnvironmentSpec])))]
pub(super) async fn environments(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Vec<EnvironmentSpec>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .environments(&caller.tenant)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TargetParams {
    environment: Option<String>,
}

/// Targets, optionally of one environment.
#[utoipa::path(get, path = "/api/v1/targets", tag = "config", params(TargetParams),
    responses((status = 200, body = [TargetSpec])))]
pub(super) async fn targets(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<TargetParams>,
) -> ApiResult<Vec<TargetSpec>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .targets(&caller.tenant, q.environment.as_deref())
            .await?,
    ))
}

/// Components.
#[utoipa::path(get, path = "/api/v1/components", tag = "config",
    responses((status = 200, body = [ComponentSpec])))]
pub(super) async fn components(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Vec<ComponentSpec>> {
    Ok(Json(
        state.orchestrator.store.components(&caller.tenant).await?,
    ))
}
