//! Promotions: `promote` (with `--wait`), `approve` and `reject`,
//! `promotions` (list, show) and `gate` (open or close a manual gate).

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sextant_orchestrator::domain::Span;

use super::{seg, span};
use crate::orchestrator::Output;
use crate::orchestrator::client::{Body, Client, print_json, s, short_time, table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyName {
    AllAtOnce,
    Rolling,
    Canary,
    BlueGreen,
}

/// `sextant promote RELEASE --to ENV`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Release name or id.
    pub release: String,
    /// Target environment.
    #[arg(long = "to", value_name = "ENV")]
    pub environment: String,
    /// Default: all-at-once.
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyName>,
    /// all-at-once: tasks at a time (0: no limit).
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// rolling: targets per batch.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// rolling: failed targets tolerated before the job fails.
    #[arg(long)]
    pub max_unavailable: Option<u32>,
    /// rolling: pause between batches (`30s`, `2m`).
    #[arg(long, value_parser = span)]
    pub pause: Option<Span>,
    /// canary: stage percentages, ascending to 100 (`10,50,100`).
    #[arg(long, value_delimiter = ',')]
    pub stages: Vec<u32>,
    /// canary: how long to watch each stage before deciding.
    #[arg(long, value_parser = span)]
    pub analysis_wait: Option<Span>,
    /// canary: require the hub to report each stage's hosts as succeeded.
    #[arg(long)]
    pub hub_rollout: bool,
    /// canary: Prometheus base URL for a threshold query.
    #[arg(long, requires_all = ["prometheus_query", "prometheus_max"])]
    pub prometheus_url: Option<String>,
    /// canary: the instant query whose value must stay at or below the max.
    #[arg(long, requires = "prometheus_url")]
    pub prometheus_query: Option<String>,
    #[arg(long, requires = "prometheus_url")]
    pub prometheus_max: Option<f64>,
    /// Why (kept with the promotion).
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait until the promotion ends; exit 0 only when it is deployed.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 2).
    #[arg(long, value_parser = span)]
    pub timeout: Option<Span>,
    /// With --wait: how often to ask.
    #[arg(long, value_parser = span, default_value = "2s")]
    pub interval: Span,
}

impl PromoteArgs {
    /// The strategy as the API takes it (internally tagged by `type`), or
    /// None for the server's default. Flags of another strategy are refused.
    pub fn strategy(&self) -> anyhow::Result<Option<Value>> {
        let rolling =
            self.batch_size.is_some() || self.max_unavailable.is_some() || self.pause.is_some();
        let canary = !self.stages.is_empty()
            || self.analysis_wait.is_some()
            || self.hub_rollout
            || self.prometheus_url.is_some();
        let name = match self.strategy {
            Some(n) => n,
            None if rolling => StrategyName::Rolling,
            None if canary => StrategyName::Canary,
            None if self.max_parallel.is_some() => StrategyName::AllAtOnce,
            None => return Ok(None),
        };
        let misplaced = match name {
            StrategyName::AllAtOnce => rolling || canary,
            StrategyName::Rolling => canary || self.max_parallel.is_some(),
            StrategyName::Canary => rolling || self.max_parallel.is_some(),
            StrategyName::BlueGreen => rolling || canary || self.max_parallel.is_some(),
        };
        if misplaced {
            bail!(
                "--max-parallel is for all-at-once; --batch-size, --max-unavailable and --pause \
                 for rolling; --stages, --analysis-wait, --hub-rollout and --prometheus-* for canary"
            );
        }
        let mut v = match name {
            StrategyName::AllAtOnce => {
                json!({ "type": "all_at_once", "max_parallel": self.max_parallel.unwrap_or(0) })
            }
            StrategyName::Rolling => json!({
                "type": "rolling",
                "batch_size": self.batch_size.unwrap_or(1),
                "max_unavailable": self.max_unavailable.unwrap_or(0),
            }),
            StrategyName::Canary => {
                if self.stages.is_empty() {
                    bail!("a canary needs --stages, e.g. --stages 10,50,100");
                }
                json!({ "type": "canary", "stages": self.stages })
            }
            StrategyName::BlueGreen => json!({ "type": "blue_green" }),
        };
        if let Some(p) = self.pause {
            v["pause"] = json!(p.to_string());
        }
        if name == StrategyName::Canary
            && (self.analysis_wait.is_some() || self.hub_rollout || self.prometheus_url.is_some())
        {
            let mut analysis = json!({ "hub_rollout": self.hub_rollout });
            if let Some(w) = self.analysis_wait {
                analysis["wait"] = json!(w.to_string());
            }
            if let (Some(url), Some(query), Some(max)) = (
                &self.prometheus_url,
                &self.prometheus_query,
                self.prometheus_max,
            ) {
                analysis["prometheus"] = json!({ "url": url, "query": query, "max": max });
            }
            v["analysis"] = analysis;
        }
        Ok(Some(v))
    }
}

pub async fn promote(client: &Client, args: &PromoteArgs) -> anyhow::Result<i32> {
    let mut body = json!({ "release": args.release, "environment": args.environment });
    if let Some(strategy) = args.strategy()? {
        body["strategy"] = strategy;
    }
    if let Some(r) = &args.reason {
        body["reason"] = json!(r);
    }
    let p = client.post("/api/v1/promotions", Body::Json(body)).await?;
    let json = client.output == Output::Json;
    if json && !args.wait {
        print_json(&p)?;
        return Ok(0);
    }
    if !json {
        println!(
            "promotion {} of {} to {} requested by {}",
            s(&p["id"]),
            s(&p["release"]),
            s(&p["environment"]),
            s(&p["requested_by"])
        );
        println!("state     {}", state_line(&p));
    }
    if !args.wait {
        return Ok(0);
    }
    let id = s(&p["id"]).to_owned();
    let deadline = args.timeout.map(|t| Instant::now() + t.0);
    let mut last = (s(&p["state"]).to_owned(), latest_detail(&p));
    let mut p = p;
    loop {
        let state = s(&p["state"]);
        if is_terminal_promotion(state) {
            if json {
                print_json(&p)?;
            }
            return Ok(if state == "deployed" { 0 } else { 1 });
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            if json {
                print_json(&p)?;
            }
            eprintln!("error: promotion {id} is still {state} (timed out)");
            return Ok(2);
        }
        tokio::time::sleep(args.interval.0.max(Duration::from_millis(100))).await;
        p = client
            .get(&format!("/api/v1/promotions/{}", seg(&id)?))
            .await?;
        let now = (s(&p["state"]).to_owned(), latest_detail(&p));
        if now != last && !json {
            println!("state     {}", state_line(&p));
            if let Some(job) = p["job_id"].as_str().filter(|_| now.0 == "deploying") {
                println!("          job {job} (sextant deployments watch {job})");
            }
        }
        last = now;
    }
}

fn is_terminal_promotion(state: &str) -> bool {
    matches!(
        state,
        "rejected" | "deployed" | "failed" | "rolled_back" | "cancelled"
    )
}

/// The detail of the promotion's newest event: why it waits, or why it
/// ended.
fn latest_detail(p: &Value) -> String {
    p["events"]
        .as_array()
        .and_then(|e| e.last())
        .map(|e| s(&e["detail"]).to_owned())
        .unwrap_or_default()
}

/// `awaiting_approval (waiting for 0/1 approvals)`.
fn state_line(p: &Value) -> String {
    let detail = latest_detail(p);
    if detail.is_empty() {
        s(&p["state"]).to_owned()
    } else {
        format!("{} ({detail})", s(&p["state"]))
    }
}

/// `sextant approve|reject PROMOTION`.
#[derive(Debug, Args)]
pub struct DecisionArgs {
    pub promotion: String,
    #[arg(long)]
    pub comment: Option<String>,
}

pub async fn decide(client: &Client, args: &DecisionArgs, approve: bool) -> anyhow::Result<i32> {
    let (verb, done) = if approve {
        ("approve", "approved")
    } else {
        ("reject", "rejected")
    };
    let path = format!("/api/v1/promotions/{}/{verb}", seg(&args.promotion)?);
    let p = client
        .post(&path, Body::Json(json!({ "comment": args.comment })))
        .await?;
    if client.output == Output::Json {
        print_json(&p)?;
        return Ok(0);
    }
    let approvals = p["approvals"].as_array().map_or(0, |a| {
        a.iter().filter(|a| s(&a["decision"]) == "approve").count()
    });
    println!(
        "promotion {} {done} ({approvals} approval{})",
        s(&p["id"]),
        if approvals == 1 { "" } else { "s" }
    );
    println!("state     {}", state_line(&p));
    Ok(0)
}

#[derive(Debug, Args)]
pub struct PromotionsArgs {
    #[command(subcommand)]
    pub command: PromotionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum PromotionsCommand {
    /// Promotions, newest first.
    List {
        /// Only these states (comma-separated: `awaiting_approval,deploying`).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A promotion with its events, approvals and decision record.
    Show { promotion: String },
    /// Cancel a promotion that has not started deploying.
    Cancel { promotion: String },
}

pub async fn promotions(client: &Client, args: PromotionsArgs) -> anyhow::Result<i32> {
    match args.command {
        PromotionsCommand::List { state, limit } => {
            let mut path = format!("/api/v1/promotions?limit={limit}");
            if let Some(state) = &state {
                path.push_str(&format!("&state={}", seg(state)?));
            }
            let list = client.get(&path).await?;
            if client.output == Output::Json {
                print_json(&list)?;
                return Ok(0);
            }
            let mut t = table(&[
                "PROMOTION",
                "RELEASE",
                "ENVIRONMENT",
                "STATE",
                "REQUESTED BY",
                "JOB",
                "CREATED",
            ]);
            for p in list.as_array().into_iter().flatten() {
                t.add_row(vec![
                    s(&p["id"]).to_owned(),
                    s(&p["release"]).to_owned(),
                    s(&p["environment"]).to_owned(),
                    s(&p["state"]).to_owned(),
                    s(&p["requested_by"]).to_owned(),
                    s(&p["job_id"]).to_owned(),
                    short_time(&p["created_at"]),
                ]);
            }
            println!("{t}");
        }
        PromotionsCommand::Cancel { promotion } => {
            let p = client
                .post(
                    &format!("/api/v1/promotions/{}/cancel", seg(&promotion)?),
                    Body::None,
                )
                .await?;
            if client.output == Output::Json {
                print_json(&p)?;
            } else {
                println!("promotion {} cancelled", s(&p["id"]));
                println!("state     {}", state_line(&p));
            }
        }
        PromotionsCommand::Show { promotion } => {
            let p = client
                .get(&format!("/api/v1/promotions/{}", seg(&promotion)?))
                .await?;
            if client.output == Output::Json {
                print_json(&p)?;
            } else {
                print_promotion(&p);
            }
        }
    }
    Ok(0)
}

fn print_promotion(p: &Value) {
    println!("promotion {}", s(&p["id"]));
    println!("release   {}", s(&p["release"]));
    println!("to        {}", s(&p["environment"]));
    println!("state     {}", s(&p["state"]));
    println!(
        "requested {} by {}",
        short_time(&p["created_at"]),
        s(&p["requested_by"])
    );
    println!(
        "strategy  {}",
        serde_json::to_string(&p["strategy"]).unwrap_or_default()
    );
    if let Some(r) = p["reason"].as_str() {
        println!("reason    {r}");
    }
    if let Some(j) = p["job_id"].as_str() {
        println!("job       {j}");
    }
    println!("\nEvents");
    let mut t = table(&["AT", "ACTOR", "FROM", "TO", "DETAIL"]);
    for e in p["events"].as_array().into_iter().flatten() {
        t.add_row(vec![
            short_time(&e["at"]),
            s(&e["actor"]).to_owned(),
            s(&e["from"]).to_owned(),
            s(&e["to"]).to_owned(),
            s(&e["detail"]).to_owned(),
        ]);
    }
    println!("{t}");
    let approvals = p["approvals"].as_array().cloned().unwrap_or_default();
    println!("\nApprovals");
    if approvals.is_empty() {
        println!("none");
    } else {
        let mut t = table(&["APPROVER", "DECISION", "COMMENT", "AT"]);
        for a in &approvals {
            t.add_row(vec![
                s(&a["approver"]).to_owned(),
                s(&a["decision"]).to_owned(),
                s(&a["comment"]).to_owned(),
                short_time(&a["at"]),
            ]);
        }
        println!("{t}");
    }
    println!("\nDecision");
    let d = &p["decision"];
    if d.is_null() {
        println!("not decided yet");
        return;
    }
    println!(
        "{} at {}: {}",
        s(&d["outcome"]),
        short_time(&d["decided_at"]),
        s(&d["record"]["detail"])
    );
    let gates = d["record"]["gates"].as_array().cloned().unwrap_or_default();
    if gates.is_empty() {
        println!("no gates");
    } else {
        let mut t = table(&["GATE", "DECISION", "REASON"]);
        for g in &gates {
            t.add_row(vec![s(&g["gate"]), s(&g["decision"]), s(&g["reason"])]);
        }
        println!("{t}");
    }
}

/// `sextant gate open|close PROMOTION GATE`.
#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(subcommand)]
    pub command: GateCommand,
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Open a manual gate: it allows the promotion.
    Open(GateTarget),
    /// Close a manual gate: it denies the promotion.
    Close(GateTarget),
}

#[derive(Debug, Args)]
pub struct GateTarget {
    pub promotion: String,
    /// The manual gate's name.
    pub gate: String,
    #[arg(long)]
    pub comment: Option<String>,
}

pub async fn gate(client: &Client, args: GateArgs) -> anyhow::Result<i32> {
    let (action, done, g) = match &args.command {
        GateCommand::Open(g) => ("open", "opened", g),
        GateCommand::Close(g) => ("close", "closed", g),
    };
    let path = format!(
        "/api/v1/promotions/{}/gates/{}",
        seg(&g.promotion)?,
        seg(&g.gate)?
    );
    let p = client
        .post(
            &path,
            Body::Json(json!({ "action": action, "comment": g.comment })),
        )
        .await?;
    if client.output == Output::Json {
        print_json(&p)?;
        return Ok(0);
    }
    println!("gate {} of promotion {} {done}", g.gate, s(&p["id"]));
    println!("state     {}", state_line(&p));
    Ok(0)
}
