//! Report endpoints: environment state, compare, drift, the host view and
//! history. Each reads through the store and leaves the rules to
//! `sextant-model`.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sextant_kit::serve::Peer;
use sextant_model::{
    ApplicationItem, Comparison, EnvironmentItem, ErrorBody, HistoryEntry, HostDeployment,
    HostDetail, Page, TargetItem, TargetRef, TargetSummary, UnixNanos, WorkloadItem,
    order_environments,
};

use super::{ApiError, page_limit, reader};
use crate::read::{ApiState, cached_json, parse_time, source_filter};
use crate::store::{
    CatalogKind, CatalogQuery, CatalogRow, CurrentQuery, HistoryQuery, SourceFilter, StateQuery,
    WorkloadKey,
};

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        invalid(e.body_text())
    }
}

/// Encodes a keyset cursor: JSON, hex-encoded, so it is opaque and URL-safe.
fn encode_cursor<T: Serialize>(key: &T) -> Option<String> {
    serde_json::to_vec(key).ok().map(hex::encode)
}

fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid("invalid cursor: pass back the next_cursor of the previous page"))
}

/// Splits a page fetched with one extra row into the page and its cursor.
fn paginate<T, C: Serialize>(mut rows: Vec<(T, C)>, limit: u32) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().and_then(|(_, c)| encode_cursor(c))
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(|(item, _)| item).collect(),
        next_cursor,
    }
}

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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn environment_state(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<TargetFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = reader(&state, &headers, peer.as_ref())?;
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
    let query = &query;
    let mut response = cached_json(&state, tenant, key, move || async move {
        to_json(&store.summaries(tenant, query).await?)
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

/// The cache key of a report request: its name and parameters as JSON.
fn cache_key<T: Serialize>(parameters: &T) -> String {
    serde_json::to_string(parameters).unwrap_or_default()
}

/// Serializes a report for the cache.
fn to_json<T: Serialize>(report: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(report).map(Bytes::from).map_err(|e| {
        tracing::error!(error = %e, "Report serialization failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the report could not be serialized",
        )
    })
}

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
    headers: &HeaderMap,
    peer: Option<&Extension<Peer>>,
    kind: CatalogKind,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<(Vec<CatalogRow>, Option<String>), ApiError> {
    let principal = reader(state, headers, peer)?;
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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn environments(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<EnvironmentItem>>, ApiError> {
    let (rows, next_cursor) = catalog_page(
        &state,
        &headers,
        peer.as_ref(),
        CatalogKind::Environments,
        params,
    )
    .await?;
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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn applications(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<ApplicationItem>>, ApiError> {
    let (rows, next_cursor) = catalog_page(
        &state,
        &headers,
        peer.as_ref(),
        CatalogKind::Applications,
        params,
    )
    .await?;
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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn workloads(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<WorkloadItem>>, ApiError> {
    let (rows, next_cursor) = catalog_page(
        &state,
        &headers,
        peer.as_ref(),
        CatalogKind::Workloads,
        params,
    )
    .await?;
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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn targets(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<TargetItem>>, ApiError> {
    let (rows, next_cursor) = catalog_page(
        &state,
        &headers,
        peer.as_ref(),
        CatalogKind::Targets,
        params,
    )
    .await?;
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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn compare(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    params: Result<Query<CompareParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = reader(&state, &headers, peer.as_ref())?;
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
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the `read` scope", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit: retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The hub store is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn host(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HostParams>, QueryRejection>,
) -> Result<Json<HostDetail>, ApiError> {
    let principal = reader(&state, &headers, peer.as_ref())?;
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
    let rows = state.store.current(&principal.tenant, &query).await?;
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
