//! The frame every page shares (head, navigation, refresh) and the small
//! pieces pages are made of: times, status classes, filter forms, links.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use sextant_model::Source;
use sextant_model::{DeploymentStatus, DesiredView, DriftReason, UnixNanos};

use crate::read::{ApiState, source_filter};
use crate::store::SourceFilter;

use super::{CSS, JS, UiError};

/// "42s ago", "3h ago": how long before now.
fn ago(t: UnixNanos) -> String {
    let secs = (UnixNanos::now().0 - t.0) / 1_000_000_000;
    match secs {
        s if s < 0 => "just now".into(),
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// A time for people: `2026-11-23 16:40:01Z`, with the exact time on hover.
pub(super) fn when(t: UnixNanos) -> Markup {
    let exact = t.to_rfc3339();
    let short = format!("{} {}Z", &exact[..10], &exact[11..19.min(exact.len())]);
    html! { time datetime=(exact) title=(exact) { (short) " · " (ago(t)) } }
}

pub(super) fn status_class(s: DeploymentStatus) -> &'static str {
    match s {
        DeploymentStatus::Succeeded => "ok",
        DeploymentStatus::Failed => "bad",
        DeploymentStatus::InProgress => "busy",
    }
}

pub(super) fn reason_label(r: DriftReason) -> &'static str {
    match r {
        DriftReason::WrongRevision => "wrong revision",
        DriftReason::Failed => "failed",
        DriftReason::NoDesiredState => "no desired state",
        DriftReason::Stale => "stale",
    }
}

/// The first 12 characters (of the hex, for a `sha256:` digest). Reported
/// text may be any UTF-8, so this cuts at a character boundary.
pub(super) fn short_revision(r: &str) -> &str {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    hex.char_indices().nth(12).map_or(hex, |(i, _)| &hex[..i])
}

/// A filter field's value: an empty field (the filter form submits every
/// field) filters nothing.
pub(super) fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// A query string from the non-empty pairs.
pub(super) fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty()).map(|v| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub(super) fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The frame of every page.
/// A page of `state`'s UI, refreshing itself at the configured interval.
pub(super) fn page(state: &ApiState, title: &str, active: &str, body: Markup) -> Markup {
    let ms = u64::try_from(state.ui_refresh.as_millis()).unwrap_or(u64::MAX);
    layout(title, active, ms, body)
}

/// The frame of every page; `refresh_ms` 0 means no refresh.
pub(super) fn layout(title: &str, active: &str, refresh_ms: u64, body: Markup) -> Markup {
    let nav = [
        ("/", "Matrix"),
        ("/compare", "Compare"),
        ("/drift", "Drift"),
        ("/hosts", "Hosts"),
        ("/insights", "Insights"),
        ("/pipeline", "Pipeline"),
        ("/releases", "Releases"),
        ("/promotions", "Promotions"),
        ("/inbox", "Inbox"),
        ("/jobs", "Jobs"),
        ("/agents", "Agents"),
        ("/api/docs", "API"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="sextant-refresh-ms" content=(refresh_ms);
                title { (title) " · Sextant" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "Sextant" }
                    nav {
                        @for (href, label) in nav {
                            a href=(href) class=[(active == href).then_some("active")] { (label) }
                        }
                    }
                    span #updated { "Updated " (when(UnixNanos::now())) }
                }
                main #content data-title=(title) {
                    h1 { (title) }
                    (body)
                }
                script { (PreEscaped(JS)) }
            }
        }
    }
}

/// A filter form whose fields become the URL's query.
pub(super) fn filter_form(action: &str, fields: &[(&str, &str, Option<&str>)]) -> Markup {
    filter_form_with(action, fields, None)
}

/// A filter form with the source and reconciler filters after `fields`.
pub(super) fn filter_form_with(
    action: &str,
    fields: &[(&str, &str, Option<&str>)],
    source: Option<&SourceParams>,
) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            @for (name, label, value) in fields {
                label { (label) " " input type="text" name=(name) value=[value]; }
            }
            @if let Some(p) = source {
                @let current = p.source.as_deref().unwrap_or("");
                label { "Source "
                    select name="source" {
                        option value="" selected[current.is_empty()] { "any" }
                        @for s in Source::ALL {
                            option value=(s.as_str()) selected[current == s.as_str()] { (s.as_str()) }
                        }
                        @if !current.is_empty() && current.parse::<Source>().is_err() {
                            option value=(current) selected { (current) }
                        }
                    }
                }
                label { "Reconciler " input type="text" name="reconciler" value=[p.reconciler.as_deref()]; }
            }
            button type="submit" { "Filter" }
            a href=(action) { "Clear" }
        }
    }
}

/// The source filter of a page: `source` (comma-separated source names)
/// and `reconciler`, as the API takes them.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct SourceParams {
    pub(super) source: Option<String>,
    pub(super) reconciler: Option<String>,
}

impl SourceParams {
    /// The store's filter; an unknown source is a 400 page naming the
    /// allowed ones.
    pub(super) fn filter(&self) -> Result<SourceFilter, UiError> {
        source_filter(self.source.as_deref(), self.reconciler.clone()).map_err(|_| {
            UiError::Status(
                StatusCode::BAD_REQUEST,
                format!(
                    "source={:?} names no source: choose from {} (comma-separated)",
                    self.source.as_deref().unwrap_or_default(),
                    Source::names()
                ),
            )
        })
    }

    /// The pairs to carry into links.
    pub(super) fn pairs(&self) -> [(&'static str, Option<&str>); 2] {
        [
            ("source", self.source.as_deref()),
            ("reconciler", self.reconciler.as_deref()),
        ]
    }
}

/// A row's source as a small badge, with the reconciler's name.
pub(super) fn source_badge(source: Source, reconciler: Option<&str>) -> Markup {
    html! {
        span class={ "source src-" (source.as_str()) } data-source=(source.as_str())
            title={ "reported by " (source.as_str()) @if let Some(r) = reconciler { " reconciler " (r) } } {
            (source.as_str())
            @if let Some(r) = reconciler { " " span.rname { (r) } }
        }
    }
}

/// Why a target wants its desired version: the job and promotion that set
/// it (linked to their pages in this UI when the hub knows the
/// orchestrator), who approved it, when, and links to its trace and logs;
/// only when the sender said nothing more.
pub(super) fn origin_line(desired: &DesiredView) -> Markup {
    let Some(o) = &desired.origin else {
        return html! { div.small.origin { "set " (when(desired.at)) } };
    };
    html! {
        div.small.origin {
            "set "
            @if let Some(job) = &o.job {
                "by job "
                // With an orchestrator, the job's page in this UI (its
                // `job_url` is for API readers).
                @match &o.job_url {
                    Some(_) => { a.job href={ "/jobs/" (path_segment(job)) } title={ "job " (job) } { (short_revision(job)) } }
                    None => { span title=(job) { (short_revision(job)) } }
                }
                " "
            }
            @if let Some(promotion) = &o.promotion {
                "of promotion "
                @match &o.promotion_url {
                    Some(_) => { a.promotion href={ "/promotions/" (path_segment(promotion)) } title={ "promotion " (promotion) } { (short_revision(promotion)) } }
                    None => { span title=(promotion) { (short_revision(promotion)) } }
                }
                " "
            }
            @if let Some(who) = &o.approved_by { "approved by " span.approver { (who) } " " }
            (when(desired.at))
            @if let Some(url) = &o.trace_url { " · " a.trace href=(url) title=[o.trace_id.as_deref()] { "trace" } }
            @if let Some(url) = &o.logs_url { " · " a.logs href=(url) { "logs" } }
        }
    }
}
