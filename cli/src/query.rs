//! The read commands: `status`, `compare`, `drift`, `history`, `hosts` and
//! `rollout`. Each asks the hub's API (`/api/v1/…`) and prints a table, or
//! the API's JSON with `--output json`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use comfy_table::Table;
use serde_json::Value;

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

/// A client of the hub's read API.
struct Hub {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Hub {
    fn new(args: &HubArgs) -> anyhow::Result<Self> {
        let base = args.hub.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--hub must be an http:// URL, got {base:?}");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base,
            token: args.token.clone(),
            http,
        })
    }

    /// GETs `path` (with `query` pairs whose value is set) and returns the JSON.
    async fn get(&self, path: &str, query: &[(&str, Option<&str>)]) -> anyhow::Result<Value> {
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let mut req = self.http.get(format!("{}{path}", self.base)).query(&pairs);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach the hub at {} (set --hub or SEXTANT_HUB_URL; is `sextant up` running?)",
                self.base
            )
        })?;
        let status = res.status();
        let body: Value = res
            .json()
            .await
            .with_context(|| format!("the hub answered {status} without JSON"))?;
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("error");
            let message = body["error"]["message"].as_str().unwrap_or("");
            bail!("the hub answered {status} ({code}): {message}");
        }
        Ok(body)
    }

    /// Follows `next_cursor` and returns every item of a paginated list.
    async fn all(&self, path: &str, query: &[(&str, Option<&str>)]) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            q.push(("limit", Some("1000")));
            q.push(("cursor", cursor.as_deref()));
            let page = self.get(path, &q).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.set_header(header.to_vec());
    t
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `2026-11-23T16:40:01.5Z` → `2026-11-23 16:40:01`.
fn short_time(v: &Value) -> String {
    let t = s(v);
    if t.len() >= 19 {
        format!("{} {}", &t[..10], &t[11..19])
    } else {
        t.to_owned()
    }
}

fn short_revision(r: &str) -> &str {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    &hex[..12.min(hex.len())]
}

/// A deployed group or host's version, or its short revision when unknown.
fn version_or_revision(v: &Value) -> String {
    v["version"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| short_revision(s(&v["revision"])).to_owned())
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
    /// The `source` query parameter: the sources, comma-separated.
    fn sources(&self) -> Option<String> {
        (!self.source.is_empty()).then(|| self.source.join(","))
    }
}

/// A row's source with its reconciler's name: `flux prod-eu`, `otlp`.
fn source_label(v: &Value) -> String {
    match v["reconciler"].as_str() {
        Some(r) if !r.is_empty() => format!("{} {r}", s(&v["source"])),
        _ => s(&v["source"]).to_owned(),
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
            .all("/api/v1/environments", &[])
            .await?
            .iter()
            .map(|e| s(&e["name"]).to_owned())
            .collect(),
    };
    let mut rows = Vec::new();
    let sources = args.sources.sources();
    for env in &environments {
        let state = hub
            .get(
                &format!("/api/v1/environments/{env}/state"),
                &[
                    ("application", args.application.as_deref()),
                    ("workload", args.workload.as_deref()),
                    ("source", sources.as_deref()),
                    ("reconciler", args.sources.reconciler.as_deref()),
                ],
            )
            .await?;
        rows.extend(state.as_array().cloned().unwrap_or_default());
    }
    if hub_args.output == Output::Json {
        return print_json(&Value::Array(rows));
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
        let deployed: Vec<String> = r["deployed"]
            .as_array()
            .map(|groups| {
                groups
                    .iter()
                    .map(|g| {
                        format!(
                            "{} {} ×{}",
                            version_or_revision(g),
                            s(&g["status"]),
                            n(&g["hosts"])
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sources: Vec<String> = r["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| format!("{} ×{}", source_label(x), n(&x["hosts"])))
            .collect();
        t.add_row(vec![
            s(&r["environment"]).to_owned(),
            s(&r["application"]).to_owned(),
            s(&r["workload"]).to_owned(),
            s(&r["target"]).to_owned(),
            sources.join("\n"),
            r["desired"]["version"].as_str().unwrap_or("-").to_owned(),
            deployed.join("\n"),
            format!("{}/{}", n(&r["in_sync_hosts"]), n(&r["total_hosts"])),
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
    let envs = args.environments.join(",");
    // The hub answers a page of workloads at a time: follow the pages.
    let mut c = Value::Null;
    let mut cursor: Option<String> = None;
    loop {
        let mut page = hub
            .get(
                "/api/v1/compare",
                &[
                    ("environments", Some(&envs)),
                    ("application", args.application.as_deref()),
                    ("workload", args.workload.as_deref()),
                    ("limit", Some("1000")),
                    ("cursor", cursor.as_deref()),
                ],
            )
            .await?;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if c.is_null() {
            c = page;
        } else if let (Some(all), Some(more)) = (
            c["workloads"].as_array_mut(),
            page["workloads"].as_array_mut(),
        ) {
            all.append(more);
        }
        if cursor.is_none() {
            break;
        }
    }
    c["next_cursor"] = Value::Null;
    if args.differences
        && let Some(rows) = c["workloads"].as_array_mut()
    {
        rows.retain(|r| r["differs"].as_bool().unwrap_or(false));
    }
    if hub_args.output == Output::Json {
        return print_json(&c);
    }
    let mut header = vec!["APPLICATION", "WORKLOAD"];
    header.extend(args.environments.iter().map(String::as_str));
    header.push("DIFFERS");
    let mut t = table(&header);
    for r in c["workloads"].as_array().into_iter().flatten() {
        let mut row = vec![
            s(&r["application"]).to_owned(),
            s(&r["workload"]).to_owned(),
        ];
        for env in &args.environments {
            let cell = &r["environments"][env];
            row.push(if cell.is_null() {
                "-".to_owned()
            } else {
                let join = |v: &Value| {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| s(x).to_owned())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                format!(
                    "desired {}\nrunning {}",
                    join(&cell["desired_versions"]),
                    join(&cell["deployed_versions"])
                )
            });
        }
        row.push(
            if r["differs"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        );
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
    let sources = args.sources.sources();
    let items = hub
        .all(
            "/api/v1/drift",
            &[
                ("environment", args.environment.as_deref()),
                ("application", args.application.as_deref()),
                ("workload", args.workload.as_deref()),
                ("target", args.target.as_deref()),
                ("host", args.host.as_deref()),
                ("source", sources.as_deref()),
                ("reconciler", args.sources.reconciler.as_deref()),
            ],
        )
        .await?;
    if hub_args.output == Output::Json {
        return print_json(&Value::Array(items));
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
        let reasons: Vec<&str> = d["drift"].as_array().into_iter().flatten().map(s).collect();
        t.add_row(vec![
            s(&d["host"]).to_owned(),
            source_label(d),
            format!("{}/{}", s(&d["application"]), s(&d["workload"])),
            s(&d["environment"]).to_owned(),
            s(&d["target"]).to_owned(),
            d["desired"]["version"].as_str().unwrap_or("-").to_owned(),
            version_or_revision(d),
            s(&d["status"]).to_owned(),
            reasons.join(", "),
            short_time(&d["observed_at"]),
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
    let limit = args.limit.clamp(1, 1000).to_string();
    let page = hub
        .get(
            "/api/v1/history",
            &[
                ("workload", Some(&args.workload)),
                ("environment", args.environment.as_deref()),
                ("application", args.application.as_deref()),
                ("target", args.target.as_deref()),
                ("host", args.host.as_deref()),
                ("since", args.since.as_deref()),
                ("until", args.until.as_deref()),
                ("limit", Some(&limit)),
            ],
        )
        .await?;
    if hub_args.output == Output::Json {
        return print_json(&page["items"]);
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
    for e in page["items"].as_array().into_iter().flatten() {
        let desired = s(&e["kind"]) == "desired";
        let status = if desired {
            let h = &e["hosts"];
            format!(
                "{} ok / {} in progress / {} failed",
                n(&h["succeeded"]),
                n(&h["in_progress"]),
                n(&h["failed"])
            )
        } else {
            s(&e["status"]).to_owned()
        };
        t.add_row(vec![
            short_time(&e["at"]),
            if desired { "promoted" } else { "observed" }.to_owned(),
            s(&e["environment"]).to_owned(),
            s(&e["target"]).to_owned(),
            s(&e["host"]).to_owned(),
            version_or_revision(e),
            status,
        ]);
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
    let sources = args.sources.sources();
    let items = hub
        .all(
            "/api/v1/hosts",
            &[
                ("environment", args.environment.as_deref()),
                ("application", args.application.as_deref()),
                ("workload", args.workload.as_deref()),
                ("target", args.target.as_deref()),
                ("source", sources.as_deref()),
                ("reconciler", args.sources.reconciler.as_deref()),
            ],
        )
        .await?;
    if hub_args.output == Output::Json {
        return print_json(&Value::Array(items));
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
        let sources: Vec<&str> = h["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        t.add_row(vec![
            s(&h["host"]).to_owned(),
            sources.join(","),
            n(&h["workloads"]).to_string(),
            n(&h["succeeded"]).to_string(),
            n(&h["failed"]).to_string(),
            n(&h["in_progress"]).to_string(),
            short_time(&h["last_seen_at"]),
            if h["stale"].as_bool().unwrap_or(false) {
                "stale"
            } else {
                ""
            }
            .to_owned(),
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

/// `90s`, `10m`, `1h`, `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 10m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?} is not a duration such as 90s, 10m or 1h")),
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

fn verdict(r: &Value, version: Option<&str>) -> Verdict {
    // `desired` is null when no target has one, or when the targets of the
    // environment disagree; each host is still measured against its own
    // target's desired revision.
    let desired = r["desired"]["version"].as_str();
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
    let failed: Vec<String> = r["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| s(&h["progress"]) == "failed")
        .map(|h| match h["message"].as_str() {
            Some(m) => format!("{} ({}): {m}", s(&h["host"]), s(&h["target"])),
            None => format!("{} ({})", s(&h["host"]), s(&h["target"])),
        })
        .collect();
    if !failed.is_empty() {
        // The hub lists at most a page of the hosts needing attention.
        let more = n(&r["failed"]).saturating_sub(failed.len() as u64);
        let more = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        return Verdict::Failed(format!("failed on {}{more}", failed.join("; ")));
    }
    let total = n(&r["total_hosts"]);
    let ok = n(&r["succeeded"]);
    if total > 0 && ok == total {
        Verdict::Done
    } else {
        let pending: Vec<&str> = r["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| s(&h["progress"]) != "succeeded")
            .map(|h| s(&h["host"]))
            .collect();
        Verdict::Waiting(format!(
            "{ok}/{total} hosts succeeded; {} in progress, {} pending{}",
            n(&r["in_progress"]),
            n(&r["pending"]),
            match (pending.is_empty(), n(&r["hosts_omitted"])) {
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
    let query = [
        ("workload", Some(args.workload.as_str())),
        ("environment", Some(args.environment.as_str())),
        ("target", args.target.as_deref()),
        ("application", args.application.as_deref()),
    ];
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
        let r = match hub.get("/api/v1/rollout", &query).await {
            Ok(r) => r,
            // Until the first report arrives the hub knows no such rollout.
            Err(e) if args.wait && e.to_string().contains("(not_found)") => Value::Null,
            Err(e) => return Err(e),
        };
        let v = if r.is_null() {
            Verdict::Waiting("no host has reported yet".into())
        } else {
            verdict(&r, args.version.as_deref())
        };
        if let Some(bar) = &bar {
            bar.set_length(n(&r["total_hosts"]));
            bar.set_position(n(&r["succeeded"]));
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
            let version = r["desired"]["version"].as_str().unwrap_or("?");
            let (code, summary) = match v {
                Verdict::Done => (
                    0,
                    format!(
                        "rollout of {what} to {version} is done: {} hosts succeeded",
                        n(&r["total_hosts"])
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
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }

    fn rollout(total: u64, ok: u64, hosts: Value) -> Value {
        json!({"desired": {"version": "1.2", "revision": "r2"}, "total_hosts": total, "succeeded": ok,
               "failed": 0, "in_progress": total - ok, "pending": 0, "hosts": hosts})
    }

    #[test]
    fn verdicts() {
        let done = rollout(
            2,
            2,
            json!([{"host": "a", "progress": "succeeded"}, {"host": "b", "progress": "succeeded"}]),
        );
        assert_eq!(verdict(&done, None), Verdict::Done);
        assert_eq!(verdict(&done, Some("1.2")), Verdict::Done);
        assert!(
            matches!(verdict(&done, Some("1.3")), Verdict::Waiting(w) if w.contains("not 1.3"))
        );
        let failed = rollout(
            2,
            1,
            json!([{"host": "a", "progress": "succeeded"},
            {"host": "b", "target": "eu", "progress": "failed", "message": "image pull backoff"}]),
        );
        assert_eq!(
            verdict(&failed, None),
            Verdict::Failed("failed on b (eu): image pull backoff".into())
        );
        let busy = rollout(
            2,
            1,
            json!([{"host": "a", "progress": "succeeded"}, {"host": "b", "progress": "in_progress"}]),
        );
        assert!(
            matches!(verdict(&busy, None), Verdict::Waiting(w) if w.contains("1/2") && w.contains("(b)"))
        );
        assert!(matches!(
            verdict(&rollout(0, 0, json!([])), None),
            Verdict::Waiting(_)
        ));
    }
}
