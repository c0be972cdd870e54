//! `GET /api/v1/compare`: environments side by side, a page of workloads
//! at a time.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use sextant_model::{Comparison, ErrorBody};

use super::{cache_key, decode_cursor, encode_cursor, invalid, not_found, to_json};
use crate::api::{ApiError, ReadErrors, Reader, page_limit};
use crate::read::{ApiState, cached_json};
use crate::store::{StateQuery, WorkloadKey};

/// Parameters of `GET /api/v1/compare`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CompareParams {
    /// Comma-separated, two or more.
    environments: String,
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    /// Most workloads per page (1–1000, default 100). A page also stops
    /// before it would hold more than 500 targets, unless its first
    /// workload alone has more.
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/compare?environments=dev,stage,prod`: per workload, the
/// desired and deployed versions in each environment, and whether they differ.
#[utoipa::path(
    get,
    path = "/api/v1/compare",
    tag = "reports",
    params(CompareParams),
    responses(
        (status = 200, description = "OK", body = Comparison),
        (status = 404, description = "Unknown environment", body = ErrorBody),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn compare(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<CompareParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let environments: Vec<String> = p
        .environments
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if environments.len() < 2 {
        return Err(invalid(
            "compare needs two or more environments: environments=stage,prod",
        ));
    }
    if let Some(dup) = environments
        .iter()
        .enumerate()
        .find_map(|(i, e)| environments[..i].contains(e).then_some(e))
    {
        return Err(invalid(format!("environment {dup:?} is listed twice")));
    }
    let limit = page_limit(p.limit)?;
    let after: Option<WorkloadKey> = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let key = cache_key(&(
        "compare",
        &environments,
        &p.workspace,
        &p.application,
        &p.workload,
        limit,
        &after,
    ));
    let (store, tenant, environments, p) = (&state.store, &principal.tenant, &environments, &p);
    cached_json(&state, tenant, key, move || async move {
        let names = StateQuery {
            workspace: p.workspace.clone(),
            application: p.application.clone(),
            workload: p.workload.clone(),
            ..StateQuery::default()
        };
        let (range, next) = crate::store::plan_workload_page(
            store.as_ref(),
            tenant,
            &names,
            after,
            limit,
            crate::store::PAGE_TARGETS,
        )
        .await?;
        // An environment with no target at all is unknown (an index read
        // each, run at once).
        if p.application.is_none() && p.workload.is_none() {
            let known = futures::future::try_join_all(
                environments
                    .iter()
                    .map(|environment| store.environment_exists(tenant, environment)),
            )
            .await?;
            if let Some((environment, _)) = environments.iter().zip(known).find(|(_, k)| !k) {
                return Err(not_found(format!("no environment {environment:?}")));
            }
        }
        // One read of the page's workloads in every environment, those not
        // compared dropped here: three statements to plan and run, not
        // three per environment.
        let summaries = match range {
            Some(_) => {
                let query = StateQuery {
                    workloads: range,
                    ..names
                };
                store
                    .summaries(tenant, &query)
                    .await?
                    .into_iter()
                    .filter(|s| environments.contains(&s.at.environment))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut c = Comparison::build(environments.clone(), summaries);
        c.next_cursor = next.as_ref().and_then(encode_cursor);
        to_json(&c)
    })
    .await
}
