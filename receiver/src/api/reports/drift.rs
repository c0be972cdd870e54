//! `GET /api/v1/drift`: the rows that differ from desired state, one page.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::{ErrorBody, HostDeployment, Page};

use super::{decode_cursor, paginate};
use crate::api::{ApiError, page_limit, reader};
use crate::read::{ApiState, source_filter};
use crate::store::{CurrentQuery, StateQuery};

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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn drift(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<DriftParams>, QueryRejection>,
) -> Result<Json<Page<HostDeployment>>, ApiError> {
    let principal = reader(&state, &headers, peer.as_ref())?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let query = CurrentQuery {
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
        drift_only: true,
        stale_before: state.stale_before(),
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: limit + 1,
    };
    let rows = state.store.current(&principal.tenant, &query).await?;
    Ok(Json(paginate(rows, limit)))
}
