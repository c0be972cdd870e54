//! The read commands: `status`, `compare`, `drift`, `history`, `hosts` and
//! `rollout`. Each asks the hub's API (`/api/v1/…`) and prints a table, or
//! the API's JSON with `--output json`.

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, ValueEnum};
use comfy_table::Table;
use serde::Serialize;
use sextant_kit::Secret;
use sextant_kit::hub::{
    CompareQuery, DriftQuery, HistoryQuery, HostsQuery, HubClient, HubError, PageRequest,
    RolloutQuery, SourceFilter, StateFilter,
};
use sextant_model::{HistoryEntry, Progress, Rollout, Source, UnixNanos};

/// How the hub is reached; shared by every read command.
#[derive(Debug, Clone, Args)]
pub struct HubArgs {
    /// The hub's API address.
    #[arg(
        long,
        env = "SEXTANT_HUB_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub hub: String,
    /// Bearer token with the `read` scope.
    #[arg(long, env = "SEXTANT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The hub's read API, through the typed client, with the CLI's words for
/// what went wrong.
struct Hub {
    client: HubClient,
    base: String,
}

impl Hub {
    fn new(args: &HubArgs) -> anyhow::Result<Self> {
        let base = args.hub.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--hub must be an http:// URL, got {base:?}");
        }
        let client = HubClient::builder(&base)
            .token(args.token.clone().map(Secret::new))
            .timeout(Duration::from_secs(30))
            .build();
        let client = match client {
            Ok(client) => client,
            Err(HubError::Client(e)) => {
                return Err(anyhow::Error::new(e).context("cannot build the HTTP client"));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self { client, base })
    }

    /// Waits for a request and words its error as the CLI always has.
    async fn ask<T>(
        &self,
        request: impl Future<Output = Result<T, HubError>>,
    ) -> anyhow::Result<T> {
        request.await.map_err(|e| self.explain(e))
    }

    fn explain(&self, error: HubError) -> anyhow::Error {
        match error {
            HubError::Transport { source, .. } => anyhow::Error::new(source).context(format!(
                "cannot reach the hub at {} (set --hub or SEXTANT_HUB_URL; is `sextant up` running?)",
                self.base
            )),
            HubError::Status { status, body, .. } => {
                match serde_json::from_str::<serde_json::Value>(&body) {
                    Ok(body) => {
                        let code = body["error"]["code"].as_str().unwrap_or("error");
                        let message = body["error"]["message"].as_str().unwrap_or("");
                        anyhow::anyhow!("the hub answered {status} ({code}): {message}")
                    }
                    Err(e) => without_json(status, e),
                }
            }
            HubError::Decode { status, source, .. } if !source.is_data() => {
                without_json(status, source)
            }
            other => other.into(),
        }
    }
}

/// An answer that is not JSON at all, in the words `reqwest` used when the
/// CLI read answers with it.
fn without_json(status: reqwest::StatusCode, error: serde_json::Error) -> anyhow::Error {
    anyhow::Error::new(error)
        .context("error decoding response body")
        .context(format!("the hub answered {status} without JSON"))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.set_header(header.to_vec());
    t
}

/// Prints an answer as JSON the way the CLI always has: through
/// `serde_json::Value`, whose objects keep their keys in order.
fn print_json(answer: &impl Serialize) -> anyhow::Result<()> {
    let value = serde_json::to_value(answer)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// `2026-11-23T16:40:01.5Z` → `2026-11-23 16:40:01`.
fn short_time(t: UnixNanos) -> String {
    let t = t.to_rfc3339();
    if t.len() >= 19 {
        format!("{} {}", &t[..10], &t[11..19])
    } else {
        t
    }
}

fn short_revision(r: &str) -> &str {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    &hex[..12.min(hex.len())]
}

/// A deployed group or host's version, or its short revision when unknown.
fn version_or_revision(version: Option<&str>, revision: &str) -> String {
    version
        .map(str::to_owned)
        .unwrap_or_else(|| short_revision(revision).to_owned())
}

/// The source filter of `status`, `drift` and `hosts`.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// Only what these sources report (repeat, or separate with commas).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(SOURCES)
    )]
    pub source: Vec<String>,
    /// Only what the reconciler of this name reports.
    #[arg(long)]
    pub reconciler: Option<String>,
}

/// The hub's sources (`source` in its answers).
const SOURCES: [&str; 5] = ["flux", "argocd", "agent", "kalypso", "otlp"];

impl SourceArgs {
    /// The hub's source filter. Clap has checked the names.
    fn filter(&self) -> SourceFilter {
        SourceFilter {
            sources: self.source.iter().filter_map(|s| s.parse().ok()).collect(),
            reconciler: self.reconciler.clone(),
        }
    }
}

/// A row's source with its reconciler's name: `flux prod-eu`, `otlp`.
fn source_label(source: Source, reconciler: Option<&str>) -> String {
    match reconciler {
        Some(r) if !r.is_empty() => format!("{source} {r}"),
        _ => source.to_string(),
    }
}

/// `sextant status`: what runs where.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this environment.
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    #[arg(long)]
    pub application: Option<String>,
    #[arg(long)]
    pub workload: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

pub async fn status(hub_args: &HubArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
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
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    #[arg(long)]
    pub application: Option<String>,
    #[arg(long)]
    pub workload: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

pub async fn drift(hub_args: &HubArgs, args: &DriftArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = DriftQuery {
        environment: args.environment.clone(),
        application: args.application.clone(),
        workload: args.workload.clone(),
        target: args.target.clone(),
        host: args.host.clone(),
        source: args.sources.filter(),
        ..DriftQuery::default()
    };
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
        workload: Some(args.workload.clone()),
        environment: args.environment.clone(),
        application: args.application.clone(),
        target: args.target.clone(),
        host: args.host.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        ..HistoryQuery::default()
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
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    #[arg(long)]
    pub application: Option<String>,
    #[arg(long)]
    pub workload: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

pub async fn hosts(hub_args: &HubArgs, args: &HostsArgs) -> anyhow::Result<()> {
    let hub = Hub::new(hub_args)?;
    let query = HostsQuery {
        environment: args.environment.clone(),
        application: args.application.clone(),
        workload: args.workload.clone(),
        target: args.target.clone(),
        source: args.sources.filter(),
        ..HostsQuery::default()
    };
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

/// `sextant rollout --workload W --env E [--version V] [--wait]`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[arg(long, required = true)]
    pub workload: String,
    #[arg(long = "env", short = 'e', required = true)]
    pub environment: String,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub application: Option<String>,
    /// The version that must be the desired one.
    #[arg(long)]
    pub version: Option<String>,
    /// Wait until the rollout is done, a host fails, or the timeout passes.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits: 90s, 10m, 1h.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often --wait asks the hub.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// A `--timeout` or `--interval` that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration such as 90s, 10m or 1h")]
pub struct DurationError(String);

/// `90s`, `10m`, `1h`, `500ms`.
fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| DurationError(s.to_owned()))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(DurationError(s.to_owned())),
    }
}

/// Where a rollout stands.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Done,
    Failed(String),
    Waiting(String),
}

/// Exit codes of `sextant rollout`.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_TIMEOUT: i32 = 2;
pub const EXIT_NOT_DONE: i32 = 3;

fn verdict(r: &Rollout, version: Option<&str>) -> Verdict {
    // `desired` is null when no target has one, or when the targets of the
    // environment disagree; each host is still measured against its own
    // target's desired revision.
    let desired = r.desired.as_ref().map(|d| d.version.as_str());
    if let Some(want) = version
        && desired != Some(want)
    {
        return Verdict::Waiting(match desired {
            Some(d) => format!("the desired version is {d}, not {want}"),
            None => format!(
                "the targets do not all have {want} as their desired version (narrow with --target)"
            ),
        });
    }
    let failed: Vec<String> = r
        .hosts
        .iter()
        .filter(|h| h.progress == Progress::Failed)
        .map(|h| match &h.host.message {
            Some(m) => format!("{} ({}): {m}", h.host.host, h.target),
            None => format!("{} ({})", h.host.host, h.target),
        })
        .collect();
    if !failed.is_empty() {
        // The hub lists at most a page of the hosts needing attention.
        let more = r.failed.saturating_sub(failed.len());
        let more = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        return Verdict::Failed(format!("failed on {}{more}", failed.join("; ")));
    }
    let total = r.total_hosts;
    let ok = r.succeeded;
    if total > 0 && ok == total {
        Verdict::Done
    } else {
        let pending: Vec<&str> = r
            .hosts
            .iter()
            .filter(|h| h.progress != Progress::Succeeded)
            .map(|h| h.host.host.as_str())
            .collect();
        Verdict::Waiting(format!(
            "{ok}/{total} hosts succeeded; {} in progress, {} pending{}",
            r.in_progress,
            r.pending,
            match (pending.is_empty(), r.hosts_omitted) {
                (true, _) => String::new(),
                (false, 0) => format!(" ({})", pending.join(", ")),
                (false, more) => format!(" ({}, and {more} more)", pending.join(", ")),
            }
        ))
    }
}

/// `sextant rollout`'s exit code when the hub could not answer
/// (unreachable, a refused token, a bad answer).
pub const ROLLOUT_UNANSWERED: i32 = 4;

/// Runs `sextant rollout`; returns the process exit code.
pub async fn rollout(hub_args: &HubArgs, args: &RolloutArgs) -> anyhow::Result<i32> {
    let hub = Hub::new(hub_args)?;
    let query = RolloutQuery {
        target: args.target.clone(),
        application: args.application.clone(),
        ..RolloutQuery::new(&args.workload, &args.environment)
    };
    let started = Instant::now();
    let bar = (args.wait && hub_args.output == Output::Table && std::io::stderr().is_terminal())
        .then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} hosts succeeded  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    loop {
        let r = match hub.client.rollout(&query).await {
            Ok(r) => Some(r),
            // Until the first report arrives the hub knows no such rollout.
            Err(e) if args.wait && e.is_not_found() => None,
            Err(e) => return Err(hub.explain(e)),
        };
        let v = match &r {
            None => Verdict::Waiting("no host has reported yet".into()),
            Some(r) => verdict(r, args.version.as_deref()),
        };
        if let Some(bar) = &bar {
            let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            bar.set_length(r.as_ref().map_or(0, |r| count(r.total_hosts)));
            bar.set_position(r.as_ref().map_or(0, |r| count(r.succeeded)));
            if let Verdict::Waiting(why) = &v {
                bar.set_message(why.clone());
            }
        }
        let finished = !matches!(v, Verdict::Waiting(_));
        let timed_out = started.elapsed() >= args.timeout;
        if finished || !args.wait || timed_out {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let what = format!("{} in {}", args.workload, args.environment);
            let version = r
                .as_ref()
                .and_then(|r| r.desired.as_ref())
                .map_or("?", |d| d.version.as_str());
            let (code, summary) = match v {
                Verdict::Done => (
                    0,
                    format!(
                        "rollout of {what} to {version} is done: {} hosts succeeded",
                        r.as_ref().map_or(0, |r| r.total_hosts)
                    ),
                ),
                Verdict::Failed(why) => (
                    EXIT_FAILED,
                    format!("rollout of {what} to {version} failed: {why}"),
                ),
                Verdict::Waiting(why) if timed_out && args.wait => (
                    EXIT_TIMEOUT,
                    format!(
                        "rollout of {what} timed out after {:?}: {why}",
                        args.timeout
                    ),
                ),
                Verdict::Waiting(why) => (
                    EXIT_NOT_DONE,
                    format!("rollout of {what} is not done: {why}"),
                ),
            };
            if hub_args.output == Output::Json {
                print_json(
                    &serde_json::json!({"exit_code": code, "summary": summary, "rollout": r}),
                )?;
            } else if code == 0 {
                println!("{summary}");
            } else {
                eprintln!("{summary}");
            }
            return Ok(code);
        }
        tokio::time::sleep(args.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_model::{DeploymentStatus, DesiredView, HostView, HostsListed, RolloutHost};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(
            parse_duration("5y").map_err(|e| e.to_string()),
            Err("\"5y\" is not a duration such as 90s, 10m or 1h".to_owned())
        );
    }

    /// A rollout of version 1.2 with these hosts: (host, target,
    /// progress, message).
    fn rollout(total: usize, ok: usize, hosts: &[(&str, &str, Progress, Option<&str>)]) -> Rollout {
        let hosts = hosts
            .iter()
            .map(|&(host, target, progress, message)| RolloutHost {
                target: target.into(),
                host: HostView {
                    host: host.into(),
                    reconciler: None,
                    source: Source::Otlp,
                    revision: "r2".into(),
                    version: None,
                    status: DeploymentStatus::Succeeded,
                    message: message.map(str::to_owned),
                    observed_at: UnixNanos(0),
                    in_sync: false,
                },
                progress,
            })
            .collect();
        Rollout {
            desired: Some(DesiredView {
                version: "1.2".into(),
                revision: "r2".into(),
                at: UnixNanos(0),
            }),
            total_hosts: total,
            succeeded: ok,
            failed: 0,
            in_progress: total - ok,
            pending: 0,
            hosts_listed: HostsListed::All,
            hosts_omitted: 0,
            hosts,
        }
    }

    #[test]
    fn verdicts() {
        use Progress::*;
        let done = rollout(
            2,
            2,
            &[("a", "", Succeeded, None), ("b", "", Succeeded, None)],
        );
        assert_eq!(verdict(&done, None), Verdict::Done);
        assert_eq!(verdict(&done, Some("1.2")), Verdict::Done);
        assert!(
            matches!(verdict(&done, Some("1.3")), Verdict::Waiting(w) if w.contains("not 1.3"))
        );
        let failed = rollout(
            2,
            1,
            &[
                ("a", "", Succeeded, None),
                ("b", "eu", Failed, Some("image pull backoff")),
            ],
        );
        assert_eq!(
            verdict(&failed, None),
            Verdict::Failed("failed on b (eu): image pull backoff".into())
        );
        let busy = rollout(
            2,
            1,
            &[("a", "", Succeeded, None), ("b", "", InProgress, None)],
        );
        assert!(
            matches!(verdict(&busy, None), Verdict::Waiting(w) if w.contains("1/2") && w.contains("(b)"))
        );
        assert!(matches!(
            verdict(&rollout(0, 0, &[]), None),
            Verdict::Waiting(_)
        ));
    }
}
