//! `sextant dora`: DORA's five delivery metrics from the hub's history
//! (`GET /api/v1/insights/dora`; definitions in docs/insights.md).

use clap::{Args, ValueEnum};
use sextant_kit::hub::DoraQuery;
use sextant_model::insights::{duration, percent};
use sextant_model::{Band, DoraMetrics, DoraReport};

use super::{FilterArgs, Hub, HubArgs, Output, print_json, short_time, table};

/// How the window is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BucketArg {
    Day,
    Week,
}

#[derive(Debug, Args)]
pub struct DoraArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Start of the window: RFC 3339 or a duration back from now (the
    /// hub's default: 30d).
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window, like --since (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Cut the window into days or weeks.
    #[arg(long, value_enum)]
    pub bucket: Option<BucketArg>,
    /// Also list the metrics per (application, workload, environment).
    #[arg(long)]
    pub groups: bool,
}

pub async fn dora(hub_args: &HubArgs, args: &DoraArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = DoraQuery {
        filter: args.filter.rows(None),
        since: args.since.clone(),
        until: args.until.clone(),
        bucket: args.bucket.map(|b| match b {
            BucketArg::Day => "day".to_owned(),
            BucketArg::Week => "week".to_owned(),
        }),
    };
    let report = hub.ask(hub.client.dora(&query)).await?;
    if hub_args.output == Output::Json {
        return print_json(&report);
    }
    print!("{}", render(&report, args.groups));
    Ok(())
}

/// The table `sextant dora` prints.
fn render(report: &DoraReport, groups: bool) -> String {
    let m = &report.totals;
    let mut out = format!(
        "Delivery from {} to {}: {} deployments\n",
        short_time(report.since),
        short_time(report.until),
        m.deployments
    );
    if report.rebuilding_targets > 0 {
        out.push_str(&format!(
            "Still rebuilding deployments from history after an upgrade: {} targets not counted yet\n",
            report.rebuilding_targets
        ));
    }
    let mut t = table(&["METRIC", "VALUE", "OVER", "BAND"]);
    for row in metric_rows(m) {
        t.add_row(row.to_vec());
    }
    out.push_str(&format!("{t}\n"));
    if groups && !report.groups.is_empty() {
        let mut t = table(&[
            "APPLICATION",
            "WORKLOAD",
            "ENVIRONMENT",
            "DEPLOYS/DAY",
            "LEAD TIME",
            "FAIL RATE",
            "RECOVERY",
            "REWORK",
        ]);
        for g in &report.groups {
            let m = &g.metrics;
            t.add_row(vec![
                g.application.clone(),
                g.workload.clone(),
                g.environment.clone(),
                format!("{:.2}", m.deployments_per_day),
                duration(m.lead_time_seconds),
                percent(m.change_fail_rate),
                duration(m.recovery_time_seconds),
                percent(m.rework_rate),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

/// The five metrics as (metric, value, over what, band) rows.
fn metric_rows(m: &DoraMetrics) -> [[String; 4]; 5] {
    [
        [
            "deployment frequency".into(),
            format!("{:.2}/day", m.deployments_per_day),
            format!("{} deployments", m.deployments),
            band(m.deployment_frequency_band),
        ],
        [
            "change lead time (median)".into(),
            duration(m.lead_time_seconds),
            format!("{} deployments", m.lead_time_deployments),
            band(m.lead_time_band),
        ],
        [
            "change fail rate".into(),
            percent(m.change_fail_rate),
            format!("{} failed", m.failed_deployments),
            band(m.change_fail_rate_band),
        ],
        [
            "failed deployment recovery time (median)".into(),
            duration(m.recovery_time_seconds),
            format!(
                "{} recovered, {} not",
                m.recovered_failures, m.unrecovered_failures
            ),
            band(m.recovery_time_band),
        ],
        [
            "deployment rework rate".into(),
            percent(m.rework_rate),
            format!("{} rework deployments", m.rework_deployments),
            "—".into(),
        ],
    ]
}

fn band(b: Option<Band>) -> String {
    b.map_or_else(|| "—".to_owned(), |b| b.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_metric_with_its_band() {
        let report = DoraReport {
            since: sextant_model::UnixNanos(0),
            until: sextant_model::UnixNanos(86_400 * 1_000_000_000),
            bucket: sextant_model::Bucket::Day,
            totals: DoraMetrics {
                deployments: 4,
                deployments_per_day: 4.0,
                deployment_frequency_band: Some(Band::Elite),
                lead_time_seconds: Some(7200.0),
                lead_time_deployments: 3,
                lead_time_band: Some(Band::Elite),
                failed_deployments: 1,
                change_fail_rate: Some(0.25),
                change_fail_rate_band: Some(Band::Low),
                recovery_time_seconds: Some(600.0),
                recovered_failures: 1,
                unrecovered_failures: 0,
                recovery_time_band: Some(Band::Elite),
                rework_deployments: 1,
                rework_rate: Some(0.25),
            },
            series: Vec::new(),
            groups: Vec::new(),
            rebuilding_targets: 0,
        };
        let text = render(&report, true);
        assert!(!text.contains("rebuilding"), "{text}");
        let rebuilding = render(
            &DoraReport {
                rebuilding_targets: 12,
                ..report.clone()
            },
            true,
        );
        assert!(
            rebuilding.contains("12 targets not counted yet"),
            "{rebuilding}"
        );
        for needle in [
            "4 deployments",
            "4.00/day",
            "2h 0m",
            "25.0%",
            "1 recovered, 0 not",
            "10m 0s",
            "low",
            "elite",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
