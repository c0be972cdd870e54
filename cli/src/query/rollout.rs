//! `rollout`: whether a rollout is done, and with `--wait` waiting for it,
//! with exit codes a CD gate can act on.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use sextant_kit::hub::RolloutQuery;
use sextant_model::{Progress, Rollout};

use super::{Hub, HubArgs, Output, print_json};

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
    use sextant_model::{
        DeploymentStatus, DesiredView, HostView, HostsListed, RolloutHost, Source, UnixNanos,
    };

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
                origin: None,
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
