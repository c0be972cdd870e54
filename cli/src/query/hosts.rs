//! Hosts and what happened on them: `history` (promotions and status
//! changes of a workload) and `hosts` (each host's last report).

use clap::Args;
use sextant_kit::hub::{HistoryQuery, PageRequest, RowFilter};
use sextant_model::HistoryEntry;

use super::{FilterArgs, Hub, HubArgs, Output, print_json, short_time, table, version_or_revision};

/// `sextant history --workload W`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(long, required = true)]
    pub workload: String,
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    #[arg(long)]
    pub application: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    /// RFC 3339 time or a duration back from now: 30m, 12h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// The end of the time range (inclusive), like --since.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

pub async fn history(hub_args: &HubArgs, args: &HistoryArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = HistoryQuery {
        filter: RowFilter {
            workload: Some(args.workload.clone()),
            environment: args.environment.clone(),
            application: args.application.clone(),
            target: args.target.clone(),
            host: args.host.clone(),
            ..RowFilter::default()
        },
        since: args.since.clone(),
        until: args.until.clone(),
    };
    let page = PageRequest::first(args.limit.clamp(1, PageRequest::MAX_LIMIT));
    let page = hub.ask(hub.client.history(&query, &page)).await?;
    if hub_args.output == Output::Json {
        return print_json(&page.items);
    }
    let mut t = table(&[
        "TIME",
        "EVENT",
        "ENVIRONMENT",
        "TARGET",
        "HOST",
        "VERSION",
        "STATUS",
    ]);
    for e in &page.items {
        let row = match e {
            HistoryEntry::Desired {
                at,
                target,
                version,
                revision,
                hosts,
                ..
            } => [
                short_time(*at),
                "promoted".to_owned(),
                target.environment.clone(),
                target.target.clone(),
                String::new(),
                version_or_revision(Some(version), revision),
                format!(
                    "{} ok / {} in progress / {} failed",
                    hosts.succeeded, hosts.in_progress, hosts.failed
                ),
            ],
            HistoryEntry::Observed {
                at,
                target,
                host,
                version,
                revision,
                status,
                ..
            } => [
                short_time(*at),
                "observed".to_owned(),
                target.environment.clone(),
                target.target.clone(),
                host.clone(),
                version_or_revision(version.as_deref(), revision),
                status.as_str().to_owned(),
            ],
        };
        t.add_row(row.to_vec());
    }
    println!("{t}");
    Ok(())
}

/// `sextant hosts`.
#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub async fn hosts(hub_args: &HubArgs, args: &HostsArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = args.filter.rows(None);
    let items = hub.ask(hub.client.all_hosts(&query)).await?;
    if hub_args.output == Output::Json {
        return print_json(&items);
    }
    let mut t = table(&[
        "HOST",
        "SOURCE",
        "WORKLOADS",
        "SUCCEEDED",
        "FAILED",
        "IN PROGRESS",
        "LAST REPORT",
        "STALE",
    ]);
    for h in &items {
        let sources: Vec<&str> = h.sources.iter().map(|s| s.as_str()).collect();
        t.add_row(vec![
            h.host.clone(),
            sources.join(","),
            h.workloads.to_string(),
            h.succeeded.to_string(),
            h.failed.to_string(),
            h.in_progress.to_string(),
            short_time(h.last_seen_at),
            if h.stale { "stale" } else { "" }.to_owned(),
        ]);
    }
    println!("{t}");
    Ok(())
}
