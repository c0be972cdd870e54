//! `/releases` and `/releases/{id}`: releases newest first, a page at a
//! time; one release's components pinned by digest, where it is promoted,
//! and its promotions.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::orchestrator::PageQuery;

use crate::read::ApiState;

use super::super::layout::{page, path_segment};
use super::super::{PAGE, UiError};
use super::{Person, api_error, at, digest, next_link, state_badge};

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    before: Option<String>,
}

pub(super) async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let releases = person
        .api
        .releases(&PageQuery {
            limit: Some(PAGE),
            before: q.before.filter(|b| !b.is_empty()),
        })
        .await
        .map_err(api_error)?;
    let full = releases.len() == PAGE as usize;
    let body = html! {
        @if releases.is_empty() { p { "No releases yet: create one with " code { "sextant release create" } "." } }
        @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Release" } th scope="col" { "Status" } th scope="col" { "Components" } th scope="col" { "Created by" } th scope="col" { "Created" } } }
                tbody {
                    @for r in &releases {
                        tr {
                            td { a href={ "/releases/" (path_segment(&r.id)) } { (r.name) } }
                            td { (state_badge(&r.status)) }
                            td { @for (i, c) in r.components.iter().enumerate() { @if i > 0 { ", " } (c.component) } }
                            td { (r.created_by) }
                            td { (at(&r.created_at)) }
                        }
                    }
                }
            } }
            (next_link("/releases", full, releases.last().map(|r| r.id.as_str()), ""))
        }
    };
    Ok(page(&state, "Releases", "/releases", body))
}

pub(super) async fn detail(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let api = &person.api;
    let release = api.release(&id).await.map_err(api_error)?;
    let (me, environments, promotions) = tokio::try_join!(
        api.whoami(),
        api.environments(),
        api.promotions(
            &[],
            None,
            Some(&release.id),
            &PageQuery {
                limit: Some(PAGE),
                before: None,
            }
        )
    )
    .map_err(api_error)?;
    let mut environments = environments;
    environments.sort_by_key(|e| e.order.unwrap_or(i64::MAX));
    let body = html! {
        p { "Status " (state_badge(&release.status)) " · created by " (release.created_by) " " (at(&release.created_at)) }
        h2 { "Components" }
        div.scroll { table.components {
            thead { tr { th scope="col" { "Component" } th scope="col" { "Image" } th scope="col" { "Digest" } th scope="col" { "From tag" } } }
            tbody { @for c in &release.components {
                tr { td { (c.component) } td { code { (c.image) } } td { (digest(&c.digest)) } td { (c.tag.as_deref().unwrap_or("")) } }
            } }
        } }
        h2 { "Where it is promoted" }
        ul.where {
            @for e in &environments {
                @let latest = promotions.iter().find(|p| p.environment == e.name);
                li {
                    strong { (e.name) } ": "
                    @match latest {
                        Some(p) => { a href={ "/promotions/" (path_segment(&p.id)) } { (state_badge(&p.state)) } " " (at(&p.updated_at)) }
                        None => { "not promoted" }
                    }
                }
            }
        }
        @if me.can_change && release.status == "finalized" && !environments.is_empty() {
            form.inline method="get" action="/actions/promote" {
                input type="hidden" name="release" value=(release.id);
                label { "Promote into " select name="environment" {
                    @for e in &environments { option value=(e.name) { (e.name) } }
                } }
                button type="submit" { "Promote…" }
            }
        }
        h2 { "Promotions" }
        @if promotions.is_empty() { p { "None yet." } } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Requested by" } th scope="col" { "Updated" } } }
                tbody { @for p in &promotions {
                    tr { td { (p.environment) } td { a href={ "/promotions/" (path_segment(&p.id)) } { (state_badge(&p.state)) } } td { (p.requested_by) } td { (at(&p.updated_at)) } }
                } }
            } }
        }
    };
    Ok(page(
        &state,
        &format!("Release {}", release.name),
        "/releases",
        body,
    ))
}
