//! The catalog lists: `GET /api/v1/environments`, `/applications`,
//! `/workloads` and `/targets`, one page each.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use sextant_model::{
    ApplicationItem, EnvironmentItem, Page, TargetItem, TargetRef, WorkloadItem, order_environments,
};

use super::{decode_cursor, encode_cursor, invalid};
use crate::api::{ApiError, ReadErrors, Reader, page_limit};
use crate::auth::Principal;
use crate::read::ApiState;
use crate::store::{CatalogKind, CatalogQuery, CatalogRow, SourceFilter, StateQuery};

/// Filters and paging of the catalog lists.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    host: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Reads one page of a catalog list: the rows and the next cursor.
async fn catalog_page(
    state: &ApiState,
    principal: &Principal,
    kind: CatalogKind,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<(Vec<CatalogRow>, Option<String>), ApiError> {
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let after: Option<Vec<String>> = p.cursor.as_deref().map(decode_cursor).transpose()?;
    if after.as_ref().is_some_and(|a| a.len() != kind.key_len()) {
        return Err(invalid(
            "invalid cursor: pass back the next_cursor of the previous page",
        ));
    }
    let query = CatalogQuery {
        filter: StateQuery {
            workspace: p.workspace,
            application: p.application,
            workload: p.workload,
            environment: p.environment,
            target: p.target,
            source: SourceFilter::default(),
            workloads: None,
        },
        host: p.host,
        after: after.clone(),
        limit: limit + 1,
    };
    let mut rows = state.store.catalog(&principal.tenant, kind, &query).await?;
    if kind == CatalogKind::Environments {
        // Few, and ordered by configuration rather than by name: page here.
        order_environments(&mut rows, |r| r.names[0].as_str(), &state.environments);
        if let Some(after) = after {
            let start = rows
                .iter()
                .position(|r| r.names == after)
                .map_or(0, |i| i + 1);
            rows.drain(..start);
        }
    }
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().and_then(|r| encode_cursor(&r.names)))
        .flatten();
    Ok((rows, next))
}

fn count(counts: &[i64], i: usize) -> u64 {
    counts
        .get(i)
        .and_then(|n| u64::try_from(*n).ok())
        .unwrap_or(0)
}

/// Splits a catalog row into its names, outermost first, and its counts.
fn split<const N: usize>(row: CatalogRow) -> Option<([String; N], Vec<i64>)> {
    Some((row.names.try_into().ok()?, row.counts))
}

/// `GET /api/v1/environments`: in the configured order, with target and
/// host counts.
#[utoipa::path(
    get,
    path = "/api/v1/environments",
    tag = "lists",
    params(ListParams),
    responses(
        (status = 200, description = "OK", body = Page<EnvironmentItem>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn environments(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<EnvironmentItem>>, ApiError> {
    let (rows, next_cursor) =
        catalog_page(&state, &principal, CatalogKind::Environments, params).await?;
    let items = rows
        .into_iter()
        .filter_map(split)
        .map(|([name], c)| EnvironmentItem {
            name,
            targets: count(&c, 0),
            hosts: count(&c, 1),
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// `GET /api/v1/applications`.
#[utoipa::path(
    get,
    path = "/api/v1/applications",
    tag = "lists",
    params(ListParams),
    responses(
        (status = 200, description = "OK", body = Page<ApplicationItem>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn applications(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<ApplicationItem>>, ApiError> {
    let (rows, next_cursor) =
        catalog_page(&state, &principal, CatalogKind::Applications, params).await?;
    let items = rows
        .into_iter()
        .filter_map(split)
        .map(|([workspace, application], c)| ApplicationItem {
            workspace,
            application,
            workloads: count(&c, 0),
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// `GET /api/v1/workloads`.
#[utoipa::path(
    get,
    path = "/api/v1/workloads",
    tag = "lists",
    params(ListParams),
    responses(
        (status = 200, description = "OK", body = Page<WorkloadItem>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn workloads(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<WorkloadItem>>, ApiError> {
    let (rows, next_cursor) =
        catalog_page(&state, &principal, CatalogKind::Workloads, params).await?;
    let items = rows
        .into_iter()
        .filter_map(split)
        .map(|([workspace, application, workload], c)| WorkloadItem {
            workspace,
            application,
            workload,
            environments: count(&c, 0),
            targets: count(&c, 1),
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// `GET /api/v1/targets`.
#[utoipa::path(
    get,
    path = "/api/v1/targets",
    tag = "lists",
    params(ListParams),
    responses(
        (status = 200, description = "OK", body = Page<TargetItem>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn targets(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<TargetItem>>, ApiError> {
    let (rows, next_cursor) =
        catalog_page(&state, &principal, CatalogKind::Targets, params).await?;
    let items = rows
        .into_iter()
        .filter_map(split)
        .map(
            |([workspace, application, workload, environment, target], c)| TargetItem {
                at: TargetRef {
                    workspace,
                    application,
                    workload,
                    environment,
                    target,
                },
                hosts: count(&c, 0),
            },
        )
        .collect();
    Ok(Json(Page { items, next_cursor }))
}
