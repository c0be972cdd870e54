//! `GET /api/v1/hosts/{host}`: the host view.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use sextant_model::{ErrorBody, HostDeployment, HostDetail};

use super::not_found;
use crate::api::{ApiError, ReadErrors, Reader};
use crate::read::{ApiState, source_filter};
use crate::store::{CurrentQuery, StateQuery};

/// Parameters of `GET /api/v1/hosts/{host}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HostParams {
    /// Only rows from these sources, comma-separated: `flux`, `argocd`,
    /// `agent`, `kalypso`, `otlp`.
    source: Option<String>,
    /// Only rows from the reconciler of this name.
    reconciler: Option<String>,
}

/// `GET /api/v1/hosts/{host}`: everything a host runs.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}",
    tag = "reports",
    params(("host" = String, Path, description = "Host name"), HostParams),
    responses(
        (status = 200, description = "OK", body = HostDetail),
        (status = 404, description = "No such host (or none of its rows passes the source filter)", body = ErrorBody),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn host(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HostParams>, QueryRejection>,
) -> Result<Json<HostDetail>, ApiError> {
    let Path(host) = path?;
    let Query(p) = params?;
    let source = source_filter(p.source.as_deref(), p.reconciler)?;
    let filtered = !source.is_empty();
    let stale_before = state.stale_before();
    let query = CurrentQuery {
        filter: StateQuery {
            source,
            ..StateQuery::default()
        },
        host: Some(host.clone()),
        drift_only: false,
        stale_before,
        after: None,
        limit: u32::MAX,
    };
    let mut rows = state.store.current(&principal.tenant, &query).await?;
    state.links.fill(&mut rows);
    let deployments: Vec<HostDeployment> = rows.into_iter().map(|(d, _)| d).collect();
    let Some(last_seen_at) = deployments.iter().map(|d| d.observed_at).max() else {
        return Err(not_found(if filtered {
            format!("no host {host:?} with rows that pass the source filter")
        } else {
            format!("no host {host:?}")
        }));
    };
    Ok(Json(HostDetail {
        host,
        last_seen_at,
        stale: HostDeployment::host_is_stale(&deployments, stale_before),
        deployments,
    }))
}
