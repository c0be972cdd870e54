//! `GET /api/v1/environments/{environment}/state`, whole or a page of
//! workloads at a time.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sextant_model::TargetSummary;

use super::{cache_key, decode_cursor, encode_cursor, to_json};
use crate::api::{ApiError, ReadErrors, Reader, page_limit};
use crate::read::{ApiState, cached_json, source_filter};
use crate::store::{StateQuery, WorkloadKey};

/// The filters every report shares.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TargetFilter {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    target: Option<String>,
    /// Only hosts reported by these sources, comma-separated: `flux`,
    /// `argocd`, `agent`, `kalypso`, `otlp`. Targets none of them reports
    /// are left out.
    source: Option<String>,
    /// Only hosts reported by the reconciler of this name.
    reconciler: Option<String>,
    /// Answer one page of whole workloads: at most this many (1–1000,
    /// default 100 once `cursor` is given) and at most 500 targets unless
    /// one workload alone has more. The next page's address comes in the
    /// `Link` header (`rel="next"`); the last page has none. Without
    /// `limit` and `cursor`, every target of the environment.
    limit: Option<u32>,
    /// Where a page starts: the `cursor` of the previous page's `Link`.
    cursor: Option<String>,
}

impl TargetFilter {
    fn query(self, environment: Option<String>) -> Result<StateQuery, ApiError> {
        Ok(StateQuery {
            workspace: self.workspace,
            application: self.application,
            workload: self.workload,
            environment,
            target: self.target,
            source: source_filter(self.source.as_deref(), self.reconciler)?,
            workloads: None,
        })
    }
}

/// `GET /api/v1/environments/{environment}/state`: per (application,
/// workload, target), the scheduled version and the deployed versions
/// grouped by version and status with host counts.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/state",
    tag = "reports",
    params(("environment" = String, Path, description = "Environment name"), TargetFilter),
    responses(
        (status = 200, description = "OK", body = Vec<TargetSummary>,
            headers(("Link" = String, description = "With `limit` or `cursor`, when more workloads remain: `<address of the next page>; rel=\"next\"`"))),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn environment_state(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<TargetFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(environment) = path?;
    let Query(mut filter) = params?;
    let paged = filter.limit.is_some() || filter.cursor.is_some();
    let limit = page_limit(filter.limit.take())?;
    let after: Option<WorkloadKey> = filter
        .cursor
        .take()
        .as_deref()
        .map(decode_cursor)
        .transpose()?;
    let mut query = filter.query(Some(environment))?;
    let (store, tenant) = (&state.store, &principal.tenant);
    // A page is planned first (a few reads of the tenant's workload names),
    // so its next address is known on a cache hit too.
    let mut next = None;
    if paged {
        let (range, after_page) = crate::store::plan_workload_page(
            store.as_ref(),
            tenant,
            &query,
            after,
            limit,
            crate::store::PAGE_TARGETS,
        )
        .await?;
        let Some(range) = range else {
            return Ok(Json(Vec::<TargetSummary>::new()).into_response());
        };
        query.workloads = Some(range);
        next = after_page.as_ref().and_then(encode_cursor);
    }
    let key = cache_key(&(
        "environment_state",
        &query.environment,
        &query.workspace,
        &query.application,
        &query.workload,
        &query.target,
        query.source.sources_param(),
        &query.source.reconciler,
        &query.workloads,
    ));
    let (query, links) = (&query, &state.links);
    let mut response = cached_json(&state, tenant, key, move || async move {
        let mut summaries = store.summaries(tenant, query).await?;
        links.fill(&mut summaries);
        to_json(&summaries)
    })
    .await?;
    if let Some(cursor) = next {
        let link = next_link(&uri, limit, &cursor);
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// The `Link` header (RFC 8288) of the page after `cursor`: the request's
/// address with `limit` and `cursor` set, its other parameters kept.
fn next_link(uri: &Uri, limit: u32, cursor: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if name != "limit" && name != "cursor" {
            query.append_pair(&name, &value);
        }
    }
    query.append_pair("limit", &limit.to_string());
    query.append_pair("cursor", cursor);
    format!("<{}?{}>; rel=\"next\"", uri.path(), query.finish())
}
