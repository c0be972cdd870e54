//! `GET /api/v1/insights/dora`: DORA's five delivery metrics over a
//! window, from the hub's history (`docs/insights.md`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use sextant_model::{Bucket, DoraReport, UnixNanos};

use super::invalid;
use crate::api::{ApiError, ReadErrors, Reader, state_query};
use crate::read::{ApiState, parse_time};
use crate::store::DoraQuery;

/// How far back `since` reaches when not given.
const DEFAULT_SINCE: &str = "30d";

/// Most buckets one report holds: a window of up to about 2.7 years by
/// day, 19 by week.
const MAX_BUCKETS: i64 = 1000;

/// Parameters of `GET /api/v1/insights/dora`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DoraParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    /// Only targets reported by these sources, comma-separated: `flux`,
    /// `argocd`, `agent`, `kalypso`, `otlp`.
    source: Option<String>,
    /// Only targets reported by the reconciler of this name.
    reconciler: Option<String>,
    /// Start of the window: RFC 3339 time, or a duration back from now
    /// (`30m`, `12h`, `7d`). Default `30d`.
    since: Option<String>,
    /// End of the window, as `since`. Default now.
    until: Option<String>,
    /// How the series is cut: `day` (default) or `week` (from Mondays).
    bucket: Option<String>,
}

/// `GET /api/v1/insights/dora`: deployment frequency, change lead time,
/// change fail rate, failed deployment recovery time and deployment rework
/// rate of the deployments that started in the window, with dora.dev's
/// performance bands; in total, per bucket and per (workspace,
/// application, workload, environment). Definitions: docs/insights.md.
#[utoipa::path(
    get,
    path = "/api/v1/insights/dora",
    tag = "insights",
    params(DoraParams),
    responses(
        (status = 200, description = "OK", body = DoraReport),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn dora(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<DoraParams>, QueryRejection>,
) -> Result<Json<DoraReport>, ApiError> {
    let Query(p) = params?;
    let now = UnixNanos::now();
    let since = parse_time("since", p.since.as_deref().unwrap_or(DEFAULT_SINCE), now)?;
    let until = p
        .until
        .as_deref()
        .map(|v| parse_time("until", v, now))
        .transpose()?
        .unwrap_or(now);
    if since >= until {
        return Err(invalid(format!(
            "since ({}) must be before until ({})",
            since.to_rfc3339(),
            until.to_rfc3339()
        )));
    }
    let bucket: Bucket = p
        .bucket
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(invalid)?
        .unwrap_or_default();
    if (until.0 - since.0) / bucket.nanos() >= MAX_BUCKETS {
        return Err(invalid(format!(
            "the window holds more than {MAX_BUCKETS} {} buckets: shorten it or take bucket=week",
            bucket.as_str()
        )));
    }
    let query = DoraQuery {
        filter: state_query!(p)?,
        since,
        until,
        bucket,
    };
    Ok(Json(state.store.dora(&principal.tenant, &query).await?))
}
