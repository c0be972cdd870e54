//! `sextant agents`: list and show agents, create a registration token,
//! revoke one.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sextant_orchestrator::domain::Span;

use super::{seg, span};
use crate::orchestrator::Output;
use crate::orchestrator::client::{Body, Client, print_json, s, short_time, table};

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Every agent (the default).
    List,
    /// One agent, by id or name.
    Show { agent: String },
    /// Create a one-time registration token (shown once).
    Token {
        /// How long it can be used.
        #[arg(long, value_parser = span, default_value = "1h")]
        ttl: Span,
    },
    /// Revoke an agent: its stream is closed and refused from now on.
    Revoke { agent: String },
}

pub async fn agents(client: &Client, args: AgentsArgs) -> anyhow::Result<i32> {
    match args.command.unwrap_or(AgentsCommand::List) {
        AgentsCommand::List => {
            let list = client.get("/api/v1/agents").await?;
            if client.output == Output::Json {
                print_json(&list)?;
                return Ok(0);
            }
            let mut t = table(&[
                "AGENT",
                "ID",
                "STATUS",
                "VERSION",
                "LABELS",
                "LAST HEARTBEAT",
                "CURRENT TASK",
            ]);
            for a in list.as_array().into_iter().flatten() {
                t.add_row(agent_row(a));
            }
            println!("{t}");
        }
        AgentsCommand::Show { agent } => {
            let a = client
                .get(&format!("/api/v1/agents/{}", seg(&agent)?))
                .await?;
            if client.output == Output::Json {
                print_json(&a)?;
            } else {
                let mut t = table(&[
                    "AGENT",
                    "ID",
                    "STATUS",
                    "VERSION",
                    "LABELS",
                    "LAST HEARTBEAT",
                    "CURRENT TASK",
                ]);
                t.add_row(agent_row(&a));
                println!("{t}");
            }
        }
        AgentsCommand::Token { ttl } => {
            let token = client
                .post(
                    "/api/v1/agents/tokens",
                    Body::Json(json!({ "ttl_seconds": ttl.0.as_secs().max(1) })),
                )
                .await?;
            if client.output == Output::Json {
                print_json(&token)?;
            } else {
                println!("{}", s(&token["token"]));
                eprintln!(
                    "One-time registration token, valid until {}: start the agent with \
                     --orchestrator URL --registration-token TOKEN",
                    s(&token["expires_at"])
                );
            }
        }
        AgentsCommand::Revoke { agent } => {
            let a = client
                .post(
                    &format!("/api/v1/agents/{}/revoke", seg(&agent)?),
                    Body::None,
                )
                .await?;
            if client.output == Output::Json {
                print_json(&a)?;
            } else {
                println!("revoked agent {} ({})", s(&a["name"]), s(&a["id"]));
            }
        }
    }
    Ok(0)
}

fn agent_row(a: &Value) -> Vec<String> {
    let labels = a["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let heartbeat = match a["heartbeat_age_seconds"].as_f64() {
        Some(age) => format!("{} ({age:.0}s ago)", short_time(&a["last_heartbeat"])),
        None => "never".to_owned(),
    };
    let current = a["current_tasks"]
        .as_array()
        .and_then(|t| t.first())
        .map(|t| {
            let n = a["current_tasks"].as_array().map_or(0, Vec::len);
            let more = if n > 1 {
                format!(" (+{})", n - 1)
            } else {
                String::new()
            };
            format!(
                "{} {} {}{more}",
                s(&t["kind"]),
                s(&t["run_key"]),
                s(&t["state"])
            )
        })
        .unwrap_or_else(|| "-".to_owned());
    vec![
        s(&a["name"]).to_owned(),
        s(&a["id"]).to_owned(),
        s(&a["status"]).to_owned(),
        s(&a["version"]).to_owned(),
        labels,
        heartbeat,
        current,
    ]
}
