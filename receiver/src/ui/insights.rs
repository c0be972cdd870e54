//! `/insights`: delivery performance, DORA's five metrics from the hub's
//! history (`docs/insights.md`), with the window's buckets drawn as inline
//! SVG (no chart library, no CDN).

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::insights::{duration, percent};
use sextant_model::{Band, Bucket, DoraMetrics, DoraPoint, DoraReport, UnixNanos};

use crate::read::{ApiState, parse_time};
use crate::store::{DoraQuery, StateQuery};

use super::layout::{filter_form, given, page, when};
use super::{UiError, viewer};

/// The figures and charts of one report.
pub(super) fn report_body(report: &DoraReport) -> Markup {
    let m = &report.totals;
    html! {
        p.summary {
            (m.deployments) " deployments from " (when(report.since)) " to " (when(report.until))
            ", by " (report.bucket.as_str()) "."
        }
        @if report.rebuilding_targets > 0 {
            p.summary role="status" {
                "Still rebuilding deployments from history after an upgrade: "
                (report.rebuilding_targets) " targets are not counted yet."
            }
        }
        div.cards {
            (card("Deployment frequency", &format!("{:.2} / day", m.deployments_per_day),
                &format!("{} deployments", m.deployments), m.deployment_frequency_band, "frequency"))
            (card("Change lead time", &duration(m.lead_time_seconds),
                &format!("median of {} deployments", m.lead_time_deployments), m.lead_time_band, "lead-time"))
            (card("Change fail rate", &percent(m.change_fail_rate),
                &format!("{} failed", m.failed_deployments), m.change_fail_rate_band, "fail-rate"))
            (card("Failed deployment recovery time", &duration(m.recovery_time_seconds),
                &format!("median; {} recovered, {} not", m.recovered_failures, m.unrecovered_failures),
                m.recovery_time_band, "recovery"))
            (card("Deployment rework rate", &percent(m.rework_rate),
                &format!("{} rework deployments", m.rework_deployments), None, "rework"))
        }
        div.charts {
            (chart("Deployments", "deployments", &report.series, |m| Some(m.deployments as f64), |v| format!("{v:.0}")))
            (chart("Change lead time (median)", "lead-time", &report.series, |m| m.lead_time_seconds, |v| duration(Some(v))))
            (chart("Change fail rate", "fail-rate", &report.series, |m| m.change_fail_rate, |v| percent(Some(v))))
            (chart("Recovery time (median)", "recovery", &report.series, |m| m.recovery_time_seconds, |v| duration(Some(v))))
            (chart("Rework rate", "rework", &report.series, |m| m.rework_rate, |v| percent(Some(v))))
        }
        @if !report.groups.is_empty() {
            h2 { "By application, workload and environment" }
            div.scroll { table.list.groups {
                thead { tr {
                    th { "Application" } th { "Workload" } th { "Environment" } th { "Deploys / day" }
                    th { "Lead time" } th { "Fail rate" } th { "Recovery" } th { "Rework" }
                } }
                tbody {
                    @for g in &report.groups {
                        tr {
                            td { (g.application) } td { (g.workload) } td { (g.environment) }
                            td { (format!("{:.2}", g.metrics.deployments_per_day)) " " (badge(g.metrics.deployment_frequency_band)) }
                            td { (duration(g.metrics.lead_time_seconds)) " " (badge(g.metrics.lead_time_band)) }
                            td { (percent(g.metrics.change_fail_rate)) " " (badge(g.metrics.change_fail_rate_band)) }
                            td { (duration(g.metrics.recovery_time_seconds)) " " (badge(g.metrics.recovery_time_band)) }
                            td { (percent(g.metrics.rework_rate)) }
                        }
                    }
                }
            } }
        }
    }
}

fn card(title: &str, value: &str, over: &str, band: Option<Band>, id: &str) -> Markup {
    html! {
        div.card data-metric=(id) {
            div.small { (title) }
            div.figure { (value) }
            div.small { (over) " " (badge(band)) }
        }
    }
}

fn badge(band: Option<Band>) -> Markup {
    html! {
        @if let Some(b) = band { span class={ "band " (b.as_str()) } { (b.as_str()) } }
    }
}

/// A bar chart of one metric over the buckets; a bucket without a figure
/// has no bar. Each bar's `<title>` is its bucket and value.
fn chart(
    title: &str,
    id: &str,
    series: &[DoraPoint],
    value: impl Fn(&DoraMetrics) -> Option<f64>,
    label: impl Fn(f64) -> String,
) -> Markup {
    const W: f64 = 320.0;
    const H: f64 = 120.0;
    const BASE: f64 = 100.0;
    let values: Vec<Option<f64>> = series.iter().map(|p| value(&p.metrics)).collect();
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let step = W / series.len().max(1) as f64;
    // (x, y, width, height, tooltip) of each bar with a figure.
    let bars: Vec<(f64, f64, f64, f64, String)> = series
        .iter()
        .zip(&values)
        .enumerate()
        .filter_map(|(i, (p, v))| {
            let v = (*v)?;
            let h = if max > 0.0 {
                v / max * (BASE - 10.0)
            } else {
                0.0
            };
            let day = p.start.to_rfc3339().chars().take(10).collect::<String>();
            Some((
                step * i as f64 + 1.0,
                BASE - h,
                (step - 2.0).max(1.0),
                h,
                format!("{day}: {}", label(v)),
            ))
        })
        .collect();
    let day = |p: &DoraPoint| p.start.to_rfc3339().chars().take(10).collect::<String>();
    html! {
        figure.chart data-metric=(id) {
            figcaption { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) role="img" aria-label=(title) {
                line x1="0" y1=(BASE) x2=(W) y2=(BASE) {}
                @for (x, y, w, h, tip) in &bars {
                    rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{w:.1}")) height=(format!("{h:.1}")) { title { (tip) } }
                }
                text x="2" y="10" { (if max > 0.0 { label(max) } else { String::from("—") }) }
                @if let (Some(first), Some(last)) = (series.first(), series.last()) {
                    text x="2" y=(H - 4.0) { (day(first)) }
                    text x=(W - 2.0) y=(H - 4.0) text-anchor="end" { (day(last)) }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct InsightsParams {
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    since: Option<String>,
    until: Option<String>,
    bucket: Option<String>,
}

/// The insights page: the five metrics of the filtered deployments over
/// the window (30 days by default), by day or week.
pub(super) async fn insights(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(p): Query<InsightsParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let now = UnixNanos::now();
    let time = |name: &str, value: Option<&str>, default: Option<&str>| match value
        .filter(|v| !v.is_empty())
        .or(default)
    {
        Some(v) => parse_time(name, v, now)
            .map(Some)
            .map_err(|e| UiError::Status(StatusCode::BAD_REQUEST, e.to_string())),
        None => Ok(None),
    };
    let since = time("since", p.since.as_deref(), Some("30d"))?.unwrap_or(now);
    let until = time("until", p.until.as_deref(), None)?.unwrap_or(now);
    let bucket: Bucket = match p.bucket.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => b
            .parse()
            .map_err(|e: String| UiError::Status(StatusCode::BAD_REQUEST, e))?,
        None => Bucket::Day,
    };
    if since >= until || (until.0 - since.0) / bucket.nanos() >= 1000 {
        return Err(UiError::Status(
            StatusCode::BAD_REQUEST,
            "since must be before until, and the window at most 1000 buckets long".into(),
        ));
    }
    let report = state
        .store
        .dora(
            &principal.tenant,
            &DoraQuery {
                filter: StateQuery {
                    application: given(&p.application),
                    workload: given(&p.workload),
                    environment: given(&p.environment),
                    ..StateQuery::default()
                },
                since,
                until,
                bucket,
            },
        )
        .await?;
    let body = html! {
        (filter_form("/insights", &[
            ("application", "Application", p.application.as_deref()),
            ("workload", "Workload", p.workload.as_deref()),
            ("environment", "Environment", p.environment.as_deref()),
            ("since", "Since (e.g. 30d)", p.since.as_deref()),
            ("until", "Until", p.until.as_deref()),
            ("bucket", "By (day or week)", p.bucket.as_deref()),
        ]))
        (report_body(&report))
    };
    Ok(page(
        &state,
        "Delivery performance (DORA)",
        "/insights",
        body,
    ))
}
