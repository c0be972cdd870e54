//! What runs where: `status` (per target, the desired version and what the
//! hosts run), `compare` (environments side by side) and `drift` (hosts
//! that differ from what was promoted).

use clap::Args;
use sextant_kit::hub::{CompareQuery, StateFilter};

use super::{
    FilterArgs, Hub, HubArgs, Output, print_json, short_time, source_label, table,
    version_or_revision,
};

/// `sextant status`: what runs where.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub async fn status(hub_args: &HubArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let args = &args.filter;
    let environments: Vec<String> = match &args.environment {
        Some(e) => vec![e.clone()],
        None => hub
            .ask(hub.client.all_environments())
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect(),
    };
    let filter = StateFilter {
        application: args.application.clone(),
        workload: args.workload.clone(),
        target: args.target.clone(),
        source: args.sources.filter(),
        ..StateFilter::default()
    };
    let mut rows = Vec::new();
    for env in &environments {
        rows.extend(hub.ask(hub.client.environment_state(env, &filter)).await?);
    }
    if hub_args.output == Output::Json {
        return print_json(&rows);
    }
    let mut t = table(&[
        "ENVIRONMENT",
        "APPLICATION",
        "WORKLOAD",
        "TARGET",
        "SOURCE",
        "DESIRED",
        "DEPLOYED",
        "IN SYNC",
    ]);
    for r in &rows {
        let deployed: Vec<String> = r
            .deployed
            .iter()
            .map(|g| {
                format!(
                    "{} {} ×{}",
                    version_or_revision(g.version.as_deref(), &g.revision),
                    g.status.as_str(),
                    g.hosts
                )
            })
            .collect();
        let sources: Vec<String> = r
            .sources
            .iter()
            .map(|x| {
                format!(
                    "{} ×{}",
                    source_label(x.source, x.reconciler.as_deref()),
                    x.hosts
                )
            })
            .collect();
        t.add_row(vec![
            r.at.environment.clone(),
            r.at.application.clone(),
            r.at.workload.clone(),
            r.at.target.clone(),
            sources.join("\n"),
            r.desired
                .as_ref()
                .map_or("-", |d| d.version.as_str())
                .to_owned(),
            deployed.join("\n"),
            format!("{}/{}", r.in_sync_hosts, r.total_hosts),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `sextant compare stage prod`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Two or more environments.
    #[arg(required = true, num_args = 2..)]
    pub environments: Vec<String>,
    #[arg(long)]
    pub application: Option<String>,
    #[arg(long)]
    pub workload: Option<String>,
    /// Only workloads that differ.
    #[arg(long)]
    pub differences: bool,
}

pub async fn compare(hub_args: &HubArgs, args: &CompareArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = CompareQuery {
        environments: args.environments.clone(),
        application: args.application.clone(),
        workload: args.workload.clone(),
        ..CompareQuery::default()
    };
    // The hub answers a page of workloads at a time: follow the pages.
    let mut c = hub.ask(hub.client.compare_all(&query)).await?;
    if args.differences {
        c.workloads.retain(|r| r.differs);
    }
    if hub_args.output == Output::Json {
        return print_json(&c);
    }
    let mut header = vec!["APPLICATION", "WORKLOAD"];
    header.extend(args.environments.iter().map(String::as_str));
    header.push("DIFFERS");
    let mut t = table(&header);
    for r in &c.workloads {
        let mut row = vec![r.application.clone(), r.workload.clone()];
        for env in &args.environments {
            row.push(match r.environments.get(env) {
                None => "-".to_owned(),
                Some(cell) => format!(
                    "desired {}\nrunning {}",
                    cell.desired_versions.join(","),
                    cell.deployed_versions.join(",")
                ),
            });
        }
        row.push(if r.differs { "yes" } else { "no" }.to_owned());
        t.add_row(row);
    }
    println!("{t}");
    Ok(())
}

/// `sextant drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub host: Option<String>,
}

pub async fn drift(hub_args: &HubArgs, args: &DriftArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = args.filter.rows(args.host.as_deref());
    let items = hub.ask(hub.client.all_drift(&query)).await?;
    if hub_args.output == Output::Json {
        return print_json(&items);
    }
    if items.is_empty() {
        println!("No drift: every host runs what was promoted.");
        return Ok(());
    }
    let mut t = table(&[
        "HOST",
        "SOURCE",
        "WORKLOAD",
        "ENVIRONMENT",
        "TARGET",
        "DESIRED",
        "RUNNING",
        "STATUS",
        "DRIFT",
        "REPORTED",
    ]);
    for d in &items {
        let reasons: Vec<&str> = d.drift.iter().map(|r| r.as_str()).collect();
        t.add_row(vec![
            d.host.clone(),
            source_label(d.source, d.reconciler.as_deref()),
            format!("{}/{}", d.at.application, d.at.workload),
            d.at.environment.clone(),
            d.at.target.clone(),
            d.desired
                .as_ref()
                .map_or("-", |d| d.version.as_str())
                .to_owned(),
            version_or_revision(d.version.as_deref(), &d.revision),
            d.status.as_str().to_owned(),
            reasons.join(", "),
            short_time(d.observed_at),
        ]);
    }
    println!("{t}");
    Ok(())
}
