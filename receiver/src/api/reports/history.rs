//! `GET /api/v1/history`: desired assignments and observed changes, one
//! page.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::{ErrorBody, HistoryEntry, Page, UnixNanos};

use super::{decode_cursor, paginate};
use crate::api::{ApiError, page_limit, reader};
use crate::read::{ApiState, parse_time, source_filter};
use crate::store::{HistoryQuery, StateQuery};

/// Parameters of `GET /api/v1/history`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    host: Option<String>,
    /// Only observed changes from these sources, comma-separated: `flux`,
    /// `argocd`, `agent`, `kalypso`, `otlp` (desired assignments are
    /// always listed).
    source: Option<String>,
    /// Only observed changes from the reconciler of this name.
    reconciler: Option<String>,
    /// RFC 3339 time, or a duration back from now: `30m`, `12h`, `7d`.
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/history`: desired assignments and observed status changes,
/// newest first.
#[utoipa::path(
    get,
    path = "/api/v1/history",
    tag = "reports",
    params(HistoryParams),
    responses(
        (status = 200, description = "OK", body = Page<HistoryEntry>),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn history(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let principal = reader(&state, &headers, peer.as_ref())?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let now = UnixNanos::now();
    let query = HistoryQuery {
        filter: StateQuery {
            source: source_filter(p.source.as_deref(), p.reconciler)?,
            workspace: p.workspace,
            application: p.application,
            workload: p.workload,
            environment: p.environment,
            target: p.target,
            workloads: None,
        },
        host: p.host,
        since: p
            .since
            .as_deref()
            .map(|v| parse_time("since", v, now))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|v| parse_time("until", v, now))
            .transpose()?,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: limit + 1,
    };
    let rows = state.store.history(&principal.tenant, &query).await?;
    Ok(Json(paginate(rows, limit)))
}
