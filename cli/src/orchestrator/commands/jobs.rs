//! Deployment jobs: `deployments` (list, watch) and `rollback`.

use anyhow::bail;
use clap::{Args, Subcommand};
use sextant_orchestrator::domain::Span;

use super::{seg, span};
use crate::orchestrator::Output;
use crate::orchestrator::client::{Body, Client, print_json, s, short_time, table};

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    #[command(subcommand)]
    pub command: DeploymentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// Deployment jobs, newest first.
    List {
        /// Only unfinished jobs.
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Follow a job (default: the newest unfinished one) with a progress bar
    /// per target. Exit 0 completed, 1 failed, rolled back or cancelled.
    Watch {
        job: Option<String>,
        /// How often to ask.
        #[arg(long, value_parser = span, default_value = "1s")]
        interval: Span,
    },
}

pub async fn deployments(client: &Client, args: DeploymentsArgs) -> anyhow::Result<i32> {
    match args.command {
        DeploymentsCommand::List { active, limit } => {
            let jobs = client
                .get(&format!("/api/v1/jobs?active={active}&limit={limit}"))
                .await?;
            if client.output == Output::Json {
                print_json(&jobs)?;
                return Ok(0);
            }
            let mut t = table(&[
                "JOB",
                "KIND",
                "RELEASE",
                "ENVIRONMENT",
                "STRATEGY",
                "STATE",
                "CREATED",
                "ERROR",
            ]);
            for j in jobs.as_array().into_iter().flatten() {
                t.add_row(vec![
                    s(&j["id"]).to_owned(),
                    s(&j["kind"]).to_owned(),
                    s(&j["release"]).to_owned(),
                    s(&j["environment"]).to_owned(),
                    s(&j["strategy"]["type"]).to_owned(),
                    s(&j["state"]).to_owned(),
                    short_time(&j["created_at"]),
                    s(&j["error"]).to_owned(),
                ]);
            }
            println!("{t}");
            Ok(0)
        }
        DeploymentsCommand::Watch { job, interval } => {
            let id = match job {
                Some(id) => id,
                None => {
                    let jobs = client.get("/api/v1/jobs?active=true&limit=1").await?;
                    match jobs.as_array().and_then(|j| j.first()) {
                        Some(j) => s(&j["id"]).to_owned(),
                        None => bail!(
                            "no deployment job is running; name one: sextant deployments watch JOB"
                        ),
                    }
                }
            };
            crate::orchestrator::watch::watch(client, seg(&id)?, interval.0).await
        }
    }
}

/// `sextant rollback JOB`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The deploy job to roll back.
    pub job: String,
}

pub async fn rollback(client: &Client, args: &RollbackArgs) -> anyhow::Result<i32> {
    let path = format!("/api/v1/jobs/{}/rollback", seg(&args.job)?);
    let job = client.post(&path, Body::None).await?;
    if client.output == Output::Json {
        print_json(&job)?;
        return Ok(0);
    }
    println!(
        "job {} is {}: its targets go back to what ran before {} in {}",
        s(&job["id"]),
        s(&job["state"]),
        s(&job["release"]),
        s(&job["environment"])
    );
    println!(
        "follow it with: sextant deployments watch {}",
        s(&job["id"])
    );
    Ok(0)
}
