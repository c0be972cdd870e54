//! Promotions: requested, approved or rejected, cancelled, and their
//! manual gates set.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{PromotionState, Strategy};
use crate::promotion::PromotionRequest;
use crate::store::{Approval, DecisionRecord, Promotion, PromotionFilter, StateEvent};

use super::error::*;
use super::jobs::TraceUrls;
use super::state::*;

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct NewPromotion {
    release: String,
    environment: String,
    #[serde(default)]
    strategy: Option<Strategy>,
    #[serde(default)]
    reason: Option<String>,
}

/// A promotion with its trail.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PromotionDetail {
    #[serde(flatten)]
    promotion: Promotion,
    #[serde(flatten)]
    links: TraceUrls,
    events: Vec<StateEvent>,
    approvals: Vec<Approval>,
    decision: Option<DecisionRecord>,
}

pub(super) async fn promotion_detail(
    state: &ApiState,
    tenant: &str,
    id: &str,
) -> ApiResult<PromotionDetail> {
    let store = &state.orchestrator.store;
    let promotion = store
        .promotion(tenant, id)
        .await?
        .ok_or_else(|| not_found(format!("no promotion {id:?}")))?;
    Ok(Json(PromotionDetail {
        links: super::links::promotion(&state.links, &promotion).into(),
        events: store.promotion_events(id).await?,
        approvals: store.approvals(id).await?,
        decision: store.decision(id).await?,
        promotion,
    }))
}

/// Requests a promotion.
#[utoipa::path(post, path = "/api/v1/promotions", tag = "promotions", request_body = NewPromotion,
    responses((status = 201, body = PromotionDetail), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_promotion(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewPromotion>,
) -> Result<(StatusCode, Json<PromotionDetail>), ApiError> {
    let request = PromotionRequest {
        release: body.release,
        environment: body.environment,
        strategy: body.strategy.unwrap_or_default(),
        reason: body.reason,
        task_timeout: None,
    };
    let p = state
        .orchestrator
        .request_promotion(&caller.tenant, &caller.actor, &request)
        .await?;
    let detail = promotion_detail(&state, &caller.tenant, &p.id).await?;
    Ok((StatusCode::CREATED, detail))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PromotionParams {
    /// Comma-separated states.
    state: Option<String>,
    /// Only promotions into this environment.
    environment: Option<String>,
    /// Only promotions of this release (its id or name; 404 when there is
    /// no such release).
    release: Option<String>,
    /// At most this many promotions (1 to 1000; default 100).
    limit: Option<i64>,
    /// The id of the last promotion of the previous page: this page holds
    /// the promotions after it.
    before: Option<String>,
}

/// A promotion with the links of its trace.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PromotionView {
    #[serde(flatten)]
    promotion: Promotion,
    #[serde(flatten)]
    links: TraceUrls,
}

/// Promotions, newest first (by creation, then id), a page at a time,
/// optionally of some states, one environment or one release.
#[utoipa::path(get, path = "/api/v1/promotions", tag = "promotions", params(PromotionParams),
    responses((status = 200, body = [PromotionView]), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn list_promotions(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<PromotionParams>,
) -> ApiResult<Vec<PromotionView>> {
    let states = q
        .state
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<PromotionState>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    let store = &state.orchestrator.store;
    let release = match q.release.as_deref() {
        Some(release) => Some(
            store
                .release(&caller.tenant, release)
                .await?
                .ok_or_else(|| not_found(format!("no release {release:?}")))?
                .id,
        ),
        None => None,
    };
    let filter = PromotionFilter {
        states: &states,
        environment: q.environment.as_deref(),
        release_id: release.as_deref(),
    };
    let page = page(q.before.as_deref(), q.limit, 100);
    let promotions = store
        .promotions(&caller.tenant, &filter, page)
        .await?
        .ok_or_else(|| unknown_cursor("promotion", page))?;
    Ok(Json(
        promotions
            .into_iter()
            .map(|promotion| PromotionView {
                links: super::links::promotion(&state.links, &promotion).into(),
                promotion,
            })
            .collect(),
    ))
}

/// A promotion with its events, approvals and decision record.
#[utoipa::path(get, path = "/api/v1/promotions/{id}", tag = "promotions",
    params(("id" = String, Path)),
    responses((status = 200, body = PromotionDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_promotion(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<PromotionDetail> {
    promotion_detail(&state, &caller.tenant, &id).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub(super) struct Comment {
    #[serde(default)]
    comment: Option<String>,
}

/// Approves a promotion as the caller.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/approve", tag = "promotions",
    params(("id" = String, Path)), request_body = Comment,
    responses((status = 200, body = PromotionDetail), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Comment>>,
) -> ApiResult<PromotionDetail> {
    let comment = body.and_then(|b| b.0.comment);
    state
        .orchestrator
        .approve(&caller.tenant, &caller.actor, &id, true, comment.as_deref())
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

/// Rejects a promotion as the caller.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/reject", tag = "promotions",
    params(("id" = String, Path)), request_body = Comment,
    responses((status = 200, body = PromotionDetail), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Comment>>,
) -> ApiResult<PromotionDetail> {
    let comment = body.and_then(|b| b.0.comment);
    state
        .orchestrator
        .approve(
            &caller.tenant,
            &caller.actor,
            &id,
            false,
            comment.as_deref(),
        )
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

/// Cancels a promotion that has not started deploying.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/cancel", tag = "promotions",
    params(("id" = String, Path)),
    responses((status = 200, body = PromotionDetail), (status = 409, body = ErrorBody)))]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<PromotionDetail> {
    state
        .orchestrator
        .cancel_promotion(&caller.tenant, &caller.actor, &id)
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct GateAction {
    /// `open` or `close`.
    action: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Opens or closes a manual gate of a promotion.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/gates/{gate}", tag = "promotions",
    params(("id" = String, Path), ("gate" = String, Path, description = "manual gate name")),
    request_body = GateAction,
    responses((status = 200, body = PromotionDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn gate(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, gate)): Path<(String, String)>,
    Json(body): Json<GateAction>,
) -> ApiResult<PromotionDetail> {
    let open = match body.action.as_str() {
        "open" => true,
        "close" => false,
        other => return Err(invalid(format!("action is open or close, not {other:?}"))),
    };
    state
        .orchestrator
        .set_manual_gate(
            &caller.tenant,
            &caller.actor,
            &id,
            &gate,
            open,
            body.comment.as_deref(),
        )
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}
