//! `sextant deployments watch`: follows a job by polling
//! `GET /api/v1/jobs/{id}`, with one progress bar per target on a terminal
//! (tasks done of the target's tasks; the message is the current task's
//! state or the error), plain lines when stdout is not a terminal, and one
//! JSON object per change with `--output json`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use super::Output;
use super::client::{Client, s};

/// One target's share of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProgress {
    pub target: String,
    pub done: u64,
    pub total: u64,
    /// The current task's state, or the error of a failed one.
    pub message: String,
    /// `component: error` of the target's failed tasks.
    pub failures: Vec<String>,
}

/// Targets in the order of their first task.
pub fn progress(job: &Value) -> Vec<TargetProgress> {
    let mut order = Vec::new();
    let mut by_target: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for t in job["tasks"].as_array().into_iter().flatten() {
        let target = s(&t["target"]).to_owned();
        if !by_target.contains_key(&target) {
            order.push(target.clone());
        }
        by_target.entry(target).or_default().push(t);
    }
    order
        .into_iter()
        .map(|target| {
            let mut tasks = by_target.remove(&target).unwrap_or_default();
            tasks.sort_by_key(|t| t["position"].as_i64().unwrap_or(0));
            let terminal = |t: &Value| matches!(s(&t["state"]), "succeeded" | "failed" | "skipped");
            let done = tasks.iter().filter(|t| terminal(t)).count() as u64;
            let failures: Vec<String> = tasks
                .iter()
                .filter(|t| s(&t["state"]) == "failed")
                .map(|t| {
                    let error = t["error"].as_str().unwrap_or("failed");
                    format!("{} {}: {error}", s(&t["component"]), s(&t["kind"]))
                })
                .collect();
            let current = tasks
                .iter()
                .find(|t| !terminal(t) && s(&t["state"]) != "pending")
                .or_else(|| tasks.iter().find(|t| !terminal(t)));
            let message = if let Some(f) = failures.first() {
                format!("failed: {f}")
            } else if let Some(t) = current {
                let attempts = t["attempts"].as_i64().unwrap_or(0);
                let max = t["max_attempts"].as_i64().unwrap_or(0);
                let mut m = format!(
                    "{} {}: {}",
                    s(&t["component"]),
                    s(&t["kind"]),
                    s(&t["state"])
                );
                if attempts > 1 {
                    m.push_str(&format!(" (attempt {attempts}/{max})"));
                }
                m
            } else if tasks.iter().all(|t| s(&t["state"]) == "skipped") {
                "skipped".to_owned()
            } else {
                "succeeded".to_owned()
            };
            TargetProgress {
                target,
                done,
                total: tasks.len() as u64,
                message,
                failures,
            }
        })
        .collect()
}

/// `deploy shop-1.2 → prod (rolling): running`.
fn job_line(job: &Value) -> String {
    let mut line = format!(
        "job {} {} {} → {} ({}): {}",
        s(&job["id"]),
        s(&job["kind"]),
        s(&job["release"]),
        s(&job["environment"]),
        s(&job["strategy"]["type"]),
        s(&job["state"])
    );
    if let Some(e) = job["error"].as_str() {
        line.push_str(&format!(" — {e}"));
    }
    line
}

/// The exit code of a finished job, or None while it runs.
fn finished(state: &str) -> Option<i32> {
    match state {
        "completed" => Some(0),
        "failed" | "rolled_back" | "cancelled" => Some(1),
        _ => None,
    }
}

/// What changes are judged by (lease renewals do not count).
fn fingerprint(job: &Value) -> String {
    let tasks: Vec<String> = job["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}:{}:{}",
                s(&t["id"]),
                s(&t["state"]),
                t["attempts"],
                s(&t["error"])
            )
        })
        .collect();
    format!(
        "{}|{}|{}",
        s(&job["state"]),
        s(&job["error"]),
        tasks.join(",")
    )
}

/// Follows job `id` until it ends; returns the exit code.
pub async fn watch(client: &Client, id: &str, interval: Duration) -> anyhow::Result<i32> {
    let mode = if client.output == Output::Json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Bars(Bars::new())
    } else {
        Mode::Plain(BTreeMap::new())
    };
    let mut mode = mode;
    let mut last = String::new();
    let path = format!("/api/v1/jobs/{id}");
    loop {
        let job = client.get(&path).await?;
        let print = fingerprint(&job) != last;
        last = fingerprint(&job);
        let targets = progress(&job);
        match &mut mode {
            Mode::Json => {
                if print {
                    println!("{}", serde_json::to_string(&job)?);
                }
            }
            Mode::Bars(bars) => bars.update(&job, &targets),
            Mode::Plain(seen) => {
                if print {
                    plain(&job, &targets, seen);
                }
            }
        }
        if let Some(code) = finished(s(&job["state"])) {
            if let Mode::Bars(bars) = &mode {
                bars.finish();
            }
            if client.output != Output::Json {
                report(&job, &targets);
            }
            return Ok(code);
        }
        tokio::time::sleep(interval.max(Duration::from_millis(100))).await;
    }
}

enum Mode {
    Json,
    Bars(Bars),
    /// The last line printed per target (and `""` for the job).
    Plain(BTreeMap<String, String>),
}

/// Prints the lines that changed since the last poll.
fn plain(job: &Value, targets: &[TargetProgress], seen: &mut BTreeMap<String, String>) {
    let line = job_line(job);
    if seen.get("").is_none_or(|l| *l != line) {
        println!("{line}");
        seen.insert(String::new(), line);
    }
    let width = targets.iter().map(|t| t.target.len()).max().unwrap_or(0);
    for t in targets {
        let line = format!(
            "  {:<width$}  {}/{}  {}",
            t.target, t.done, t.total, t.message
        );
        if seen.get(&t.target).is_none_or(|l| *l != line) {
            println!("{line}");
            seen.insert(t.target.clone(), line);
        }
    }
}

/// The summary after a job ends: which targets failed and why.
fn report(job: &Value, targets: &[TargetProgress]) {
    let state = s(&job["state"]);
    match state {
        "completed" => println!(
            "job {} completed: {} target(s) deployed",
            s(&job["id"]),
            targets.len()
        ),
        _ => {
            let why = job["error"].as_str().unwrap_or("");
            println!("job {} {state}: {why}", s(&job["id"]));
            let failed: Vec<&TargetProgress> =
                targets.iter().filter(|t| !t.failures.is_empty()).collect();
            if !failed.is_empty() {
                println!("failed targets:");
                for t in failed {
                    for f in &t.failures {
                        println!("  {}: {f}", t.target);
                    }
                }
            }
            let stopped: Vec<&str> = targets
                .iter()
                .filter(|t| t.failures.is_empty() && t.done < t.total)
                .map(|t| t.target.as_str())
                .collect();
            if !stopped.is_empty() {
                println!(
                    "not deployed (the job stopped first): {}",
                    stopped.join(", ")
                );
            }
        }
    }
}

/// A spinner line for the job and one bar per target.
struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    targets: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template("  {prefix:<24} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Self {
            multi,
            header,
            targets: BTreeMap::new(),
            style,
        }
    }

    fn update(&mut self, job: &Value, targets: &[TargetProgress]) {
        self.header.set_message(job_line(job));
        for t in targets {
            let bar = self.targets.entry(t.target.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(t.total));
                bar.set_style(self.style.clone());
                bar.set_prefix(t.target.clone());
                bar
            });
            bar.set_length(t.total);
            bar.set_position(t.done);
            bar.set_message(t.message.clone());
        }
    }

    /// Leaves every bar where it stands (`finish` would fill them).
    fn finish(&self) {
        self.header.abandon();
        for bar in self.targets.values() {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_counts_tasks_per_target_and_names_failures() {
        let job = json!({"tasks": [
            {"id": "1", "position": 0, "target": "web-2", "component": "web", "kind": "deploy",
             "state": "failed", "error": "connection refused", "attempts": 2, "max_attempts": 2},
            {"id": "2", "position": 1, "target": "web-1", "component": "web", "kind": "deploy",
             "state": "succeeded", "attempts": 1, "max_attempts": 2},
            {"id": "3", "position": 2, "target": "web-1", "component": "api", "kind": "deploy",
             "state": "running", "attempts": 2, "max_attempts": 3},
        ]});
        let p = progress(&job);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].target.as_str(), p[0].done, p[0].total),
            ("web-2", 1, 1)
        );
        assert_eq!(p[0].message, "failed: web deploy: connection refused");
        assert_eq!(
            (p[1].target.as_str(), p[1].done, p[1].total),
            ("web-1", 1, 2)
        );
        assert_eq!(p[1].message, "api deploy: running (attempt 2/3)");
        assert!(p[1].failures.is_empty());
    }

    #[test]
    fn only_completed_jobs_exit_zero() {
        assert_eq!(finished("completed"), Some(0));
        assert_eq!(finished("rolled_back"), Some(1));
        assert_eq!(finished("failed"), Some(1));
        assert_eq!(finished("rolling_back"), None);
        assert_eq!(finished("running"), None);
    }
}
