//! Releases: created with their digests pinned (tags resolved once),
//! listed, read and finalized.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::{Release, ReleaseComponent};

use super::error::*;
use super::state::*;

/// A component of a new release: a pinned image, or a tag resolved now.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct NewReleaseComponent {
    component: String,
    /// `repo@sha256:…`, or `repo:tag` (resolved to a digest once, now).
    image: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct NewRelease {
    name: String,
    components: Vec<NewReleaseComponent>,
    /// Keep it a draft (default: finalize at once).
    #[serde(default)]
    draft: bool,
}

/// Creates a release, resolving tags to digests.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = NewRelease,
    responses((status = 201, body = Release), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_release(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewRelease>,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    if body.name.trim().is_empty() {
        return Err(invalid("a release needs a name"));
    }
    if body.components.is_empty() {
        return Err(invalid("a release needs at least one component"));
    }
    let o = &state.orchestrator;
    let known = o.store.components(&caller.tenant).await?;
    let mut components = Vec::new();
    for c in &body.components {
        let Some(spec) = known.iter().find(|k| k.name == c.component) else {
            return Err(invalid(format!("unknown component {:?}", c.component)));
        };
        let image = if c.image.contains(['@', ':']) && c.image.starts_with(&spec.image) {
            c.image.clone()
        } else if c.image.starts_with(':') || c.image.starts_with('@') {
            format!("{}{}", spec.image, c.image)
        } else {
            c.image.clone()
        };
        let host = image.split('/').next().unwrap_or_default();
        let insecure = state.insecure_registries.iter().any(|r| r == host);
        let (pinned, digest, tag) = crate::tag_resolver::resolve(&o.http, &image, insecure)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let repository = pinned.split('@').next().unwrap_or_default();
        if repository != spec.image {
            return Err(invalid(format!(
                "component {} is image {}, not {repository}",
                c.component, spec.image
            )));
        }
        components.push(ReleaseComponent {
            component: c.component.clone(),
            image: pinned,
            digest,
            tag,
        });
    }
    let release = o
        .store
        .create_release(
            &caller.tenant,
            &body.name,
            &components,
            &caller.actor,
            !body.draft,
        )
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("release {:?} exists; releases are immutable", body.name),
            )
        })?;
    Ok((StatusCode::CREATED, Json(release)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReleaseParams {
    /// At most this many releases (1 to 1000; default 200).
    limit: Option<i64>,
    /// The id of the last release of the previous page: this page holds
    /// the releases after it.
    before: Option<String>,
}

/// Releases, newest first (by creation, then id), a page at a time.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", params(ReleaseParams),
    responses((status = 200, body = [Release]), (status = 400, body = ErrorBody)))]
pub(super) async fn list_releases(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<ReleaseParams>,
) -> ApiResult<Vec<Release>> {
    let page = page(q.before.as_deref(), q.limit, 200);
    state
        .orchestrator
        .store
        .releases(&caller.tenant, page)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_cursor("release", page))
}

/// A release by id or name.
#[utoipa::path(get, path = "/api/v1/releases/{release}", tag = "releases",
    params(("release" = String, Path, description = "id or name")),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody)))]
pub(super) async fn get_release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(release): Path<String>,
) -> ApiResult<Release> {
    state
        .orchestrator
        .store
        .release(&caller.tenant, &release)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("no release {release:?}")))
}

/// Finalizes a draft release.
#[utoipa::path(post, path = "/api/v1/releases/{release}/finalize", tag = "releases",
    params(("release" = String, Path, description = "id or name")),
    responses((status = 200, body = Release), (status = 409, body = ErrorBody)))]
pub(super) async fn finalize_release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(release): Path<String>,
) -> ApiResult<Release> {
    let store = &state.orchestrator.store;
    let r = store
        .release(&caller.tenant, &release)
        .await?
        .ok_or_else(|| not_found(format!("no release {release:?}")))?;
    store.finalize_release(&caller.tenant, &r.id).await?;
    Ok(Json(
        store.release(&caller.tenant, &r.id).await?.unwrap_or(r),
    ))
}
