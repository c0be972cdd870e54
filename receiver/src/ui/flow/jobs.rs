//! `/jobs` and `/jobs/{id}`: jobs newest first; one job's tasks per batch
//! and target with their progress, the tail of each task's log, health
//! results, the rollback job linked either way. While a job runs its page
//! refreshes itself in place every two seconds (`sextant.js`).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::orchestrator::{PageQuery, Task, TaskLogLine};

use crate::read::ApiState;

use super::super::layout::{layout, page, path_segment, short_revision};
use super::super::{PAGE, UiError};
use super::{Person, api_error, at, digest, next_link, state_badge, words};

/// How often a running job's page refreshes.
const LIVE_MS: u64 = 2000;
/// Log lines shown per task.
const TAIL: usize = 40;
/// Tasks whose logs a page reads.
const LOGGED_TASKS: usize = 24;

/// Job states that do not change any more.
fn finished(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "rolled_back" | "cancelled")
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    #[serde(default)]
    active: Option<String>,
    before: Option<String>,
}

pub(super) async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let active = q
        .active
        .as_deref()
        .is_some_and(|a| a == "true" || a == "on");
    let jobs = person
        .api
        .jobs(
            active,
            &PageQuery {
                limit: Some(PAGE),
                before: q.before.filter(|b| !b.is_empty()),
            },
        )
        .await
        .map_err(api_error)?;
    let full = jobs.len() == PAGE as usize;
    let body = html! {
        form.filters method="get" action="/jobs" {
            label { input type="checkbox" name="active" value="true" checked[active]; " Unfinished only" }
            button type="submit" { "Filter" }
        }
        @if jobs.is_empty() { p { "No jobs." } } @else {
            div.scroll { table.jobs {
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Release" } th scope="col" { "Environment" }
                    th scope="col" { "State" } th scope="col" { "Created by" } th scope="col" { "Updated" }
                } }
                tbody { @for j in &jobs {
                    tr data-job=(j.id) {
                        td { a href={ "/jobs/" (path_segment(&j.id)) } { (short_revision(&j.id)) } }
                        td { (j.kind) }
                        td { a href={ "/releases/" (path_segment(&j.release_id)) } { (j.release) } }
                        td { (j.environment) }
                        td { (state_badge(&j.state)) }
                        td { (j.created_by) }
                        td { (at(&j.updated_at)) }
                    }
                } }
            } }
            (next_link("/jobs", full, jobs.last().map(|j| j.id.as_str()), if active { "&active=true" } else { "" }))
        }
    };
    Ok(page(&state, "Jobs", "/jobs", body))
}

/// The tasks whose log is worth reading: started ones, the most recent first.
fn logged(tasks: &[Task]) -> Vec<&Task> {
    let mut started: Vec<&Task> = tasks.iter().filter(|t| t.started_at.is_some()).collect();
    started.sort_by(|a, b| b.started_at.cmp(&a.started_at));
    started.truncate(LOGGED_TASKS);
    started
}

/// The task's last health-check result, as its log says it
/// (`health check passed (…)`, `health check 2/3 failed: …`).
fn health(lines: &[TaskLogLine]) -> Option<&str> {
    lines
        .iter()
        .rev()
        .map(|l| l.line.as_str())
        .find(|l| l.contains("health check"))
}

fn log_tail(lines: &[TaskLogLine]) -> Markup {
    let skip = lines.len().saturating_sub(TAIL);
    html! {
        @if skip > 0 { div.small { "… " (skip) " earlier lines" } }
        pre.log { @for l in &lines[skip..] {
            span class={ "stream-" (l.stream) } { (l.line) } "\n"
        } }
    }
}

pub(super) async fn detail(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let api = &person.api;
    let (me, detail) = tokio::try_join!(api.whoami(), api.job(&id)).map_err(api_error)?;
    let job = &detail.job;
    let with_logs = logged(&detail.tasks);
    let logs =
        futures::future::try_join_all(with_logs.iter().map(|t| api.task_logs(&job.id, &t.id, 0)))
            .await
            .map_err(api_error)?;
    let log_of = |task: &str| {
        with_logs
            .iter()
            .position(|t| t.id == task)
            .map(|i| &logs[i])
    };
    let done = detail
        .tasks
        .iter()
        .filter(|t| matches!(t.state.as_str(), "succeeded" | "skipped"))
        .count();
    let failed = detail.tasks.iter().filter(|t| t.state == "failed").count();
    let live = !finished(&job.state);
    let can_roll_back = me.can_change
        && job.kind == "deploy"
        && matches!(job.state.as_str(), "completed" | "failed")
        && detail.rollback_job_id.is_none();
    let mut batches: Vec<i64> = detail.tasks.iter().map(|t| t.batch).collect();
    batches.dedup();
    let body = html! {
        dl.facts {
            dt { "State" } dd #job-state { (state_badge(&job.state)) @if live { " " span.small.live { "(live: this page follows the job)" } } }
            dt { "Progress" } dd #progress {
                progress max=(detail.tasks.len().max(1)) value=(done) { (done) " of " (detail.tasks.len()) }
                " " (done) " of " (detail.tasks.len()) " tasks done"
                @if failed > 0 { ", " span.error { (failed) " failed" } }
            }
            dt { "Kind" } dd { (job.kind) }
            dt { "Release" } dd { a href={ "/releases/" (path_segment(&job.release_id)) } { (job.release) } }
            dt { "Environment" } dd { (job.environment) }
            @if let Some(p) = &job.promotion_id { dt { "Promotion" } dd { a.promotion href={ "/promotions/" (path_segment(p)) } { (short_revision(p)) } } }
            @if let Some(parent) = &job.parent_job_id { dt { "Rolls back" } dd { a.parent href={ "/jobs/" (path_segment(parent)) } { "job " (short_revision(parent)) } } }
            @if let Some(r) = &detail.rollback_job_id { dt { "Rolled back by" } dd { a.rollback href={ "/jobs/" (path_segment(r)) } { "job " (short_revision(r)) } } }
            dt { "Created" } dd { "by " (job.created_by) " " (at(&job.created_at)) }
            @if let Some(f) = &job.finished_at { dt { "Finished" } dd { (at(f)) } }
            @if let Some(e) = &job.error { dt { "Error" } dd.error { (e) @if let Some(k) = &job.failure { " (" (words(k)) ")" } } }
            @if let Some(url) = &job.trace_url { dt { "Trace" } dd { a href=(url) { "trace" } } }
        }
        @if can_roll_back {
            div.actions { a.button.danger href={ "/actions/rollback?job=" (path_segment(&job.id)) } { "Roll back…" } }
        }
        @for batch in &batches {
            h2 { "Batch " (batch + 1) }
            div.scroll { table.tasks {
                thead { tr {
                    th scope="col" { "Target" } th scope="col" { "Component" } th scope="col" { "Digest" }
                    th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Started" } th scope="col" { "Result" }
                } }
                tbody { @for t in detail.tasks.iter().filter(|t| t.batch == *batch) {
                    tr data-task=(t.id) data-target=(t.target) {
                        td { a href={ "/hosts?target=" (path_segment(&t.target)) } { (t.target) } }
                        td { (t.component) @if t.kind != "deploy" { " (" (t.kind) ")" } }
                        td { (digest(&t.digest)) @if let Some(prev) = &t.previous_digest { span.small { " was " (digest(prev)) } } }
                        td { (state_badge(&t.state)) }
                        td { (t.attempts) " of " (t.max_attempts) }
                        td { @if let Some(s) = &t.started_at { (at(s)) } }
                        td {
                            @if let Some(e) = &t.error { span.error { (e) } @if let Some(k) = &t.error_type { " (" (words(k)) ")" } }
                            @else if t.state == "succeeded" { "deployed" }
                            @if let Some(h) = log_of(&t.id).and_then(|lines| health(lines)) { div.small.health { (h) } }
                            @if let Some(code) = t.exit_code { span.small { " exit " (code) } }
                        }
                    }
                    @if let Some(lines) = log_of(&t.id) { @if !lines.is_empty() {
                        tr.logrow { td colspan="7" { details open[!finished(&t.state) || t.state == "failed"] {
                            summary { "Log of " (t.target) " / " (t.component) }
                            (log_tail(lines))
                        } } }
                    } }
                } }
            } }
        }
        @if !detail.events.is_empty() {
            h2 { "Events" }
            ol.timeline.events { @for e in &detail.events {
                li { (at(&e.at)) " · " strong { (words(&e.to)) } " · by " (e.actor) @if let Some(d) = &e.detail { div.small { (d) } } }
            } }
        }
    };
    let title = format!(
        "Job {} · {} into {}",
        short_revision(&job.id),
        job.release,
        job.environment
    );
    Ok(if live {
        layout(&title, "/jobs", LIVE_MS, body)
    } else {
        page(&state, &title, "/jobs", body)
    })
}
