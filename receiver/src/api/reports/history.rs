//! `GET /api/v1/history`: desired assignments and observed changes, one
//! page.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use sextant_model::{HistoryEntry, Page, UnixNanos};

use super::{decode_cursor, paginate};
use crate::api::{ApiError, ReadErrors, Reader, page_limit, state_query};
use crate::read::{ApiState, parse_time};
use crate::store::HistoryQuery;

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
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn history(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let now = UnixNanos::now();
    let query = HistoryQuery {
        filter: state_query!(p)?,
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
    let mut rows = state.store.history(&principal.tenant, &query).await?;
    state.links.fill(&mut rows);
    Ok(Json(paginate(rows, limit)))
}
