//! `GET /api/v1/drift`: the rows that differ from desired state, one page.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use sextant_model::{HostDeployment, Page};

use super::{decode_cursor, paginate};
use crate::api::{ApiError, ReadErrors, Reader, page_limit, state_query};
use crate::read::ApiState;
use crate::store::CurrentQuery;

/// Parameters of `GET /api/v1/drift`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DriftParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    host: Option<String>,
    /// Only rows from these sources, comma-separated: `flux`, `argocd`,
    /// `agent`, `kalypso`, `otlp`.
    source: Option<String>,
    /// Only rows from the reconciler of this name.
    reconciler: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/drift`: every (host, reconciler, target) whose current state
/// differs from desired, with its reasons.
#[utoipa::path(
    get,
    path = "/api/v1/drift",
    tag = "reports",
    params(DriftParams),
    responses(
        (status = 200, description = "OK", body = Page<HostDeployment>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn drift(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<DriftParams>, QueryRejection>,
) -> Result<Json<Page<HostDeployment>>, ApiError> {
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let query = CurrentQuery {
        filter: state_query!(p)?,
        host: p.host,
        drift_only: true,
        stale_before: state.stale_before(),
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: limit + 1,
    };
    let mut rows = state.store.current(&principal.tenant, &query).await?;
    state.links.fill(&mut rows);
    Ok(Json(paginate(rows, limit)))
}
