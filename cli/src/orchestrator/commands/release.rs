//! `sextant release`: create, list and show releases, the immutable
//! bundles of component digests.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::seg;
use crate::orchestrator::Output;
use crate::orchestrator::client::{Body, Client, print_json, s, short_digest, short_time, table};

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Create a release; tags are resolved to digests now, once.
    Create {
        name: String,
        /// `COMPONENT=IMAGE`: `repo@sha256:…`, `repo:tag`, or `:tag` /
        /// `@sha256:…` appended to the component's repository. Repeatable.
        #[arg(
            long = "component",
            short = 'c',
            value_name = "COMPONENT=IMAGE",
            required = true
        )]
        components: Vec<String>,
        /// Keep it a draft (finalize later with `sextant release finalize`).
        #[arg(long)]
        draft: bool,
    },
    /// Releases, newest first.
    List,
    /// One release with its component digests.
    Show { release: String },
    /// Finalize a draft release so that it can be promoted.
    Finalize { release: String },
}

pub async fn release(client: &Client, args: ReleaseArgs) -> anyhow::Result<i32> {
    let release = match args.command {
        ReleaseCommand::Create {
            name,
            components,
            draft,
        } => {
            let mut list = Vec::new();
            for c in &components {
                let Some((component, image)) = c.split_once('=') else {
                    bail!("--component takes COMPONENT=IMAGE, got {c:?}");
                };
                list.push(json!({ "component": component.trim(), "image": image.trim() }));
            }
            let body = json!({ "name": name, "components": list, "draft": draft });
            client.post("/api/v1/releases", Body::Json(body)).await?
        }
        ReleaseCommand::List => {
            let releases = client.get("/api/v1/releases").await?;
            if client.output == Output::Json {
                print_json(&releases)?;
                return Ok(0);
            }
            let mut t = table(&["RELEASE", "STATUS", "COMPONENTS", "CREATED BY", "CREATED"]);
            for r in releases.as_array().into_iter().flatten() {
                let components: Vec<String> = r["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{} {}", s(&c["component"]), short_digest(s(&c["digest"]))))
                    .collect();
                t.add_row(vec![
                    s(&r["name"]).to_owned(),
                    s(&r["status"]).to_owned(),
                    components.join("\n"),
                    s(&r["created_by"]).to_owned(),
                    short_time(&r["created_at"]),
                ]);
            }
            println!("{t}");
            return Ok(0);
        }
        ReleaseCommand::Show { release } => {
            client
                .get(&format!("/api/v1/releases/{}", seg(&release)?))
                .await?
        }
        ReleaseCommand::Finalize { release } => {
            let path = format!("/api/v1/releases/{}/finalize", seg(&release)?);
            client.post(&path, Body::None).await?
        }
    };
    if client.output == Output::Json {
        print_json(&release)?;
    } else {
        print_release(&release);
    }
    Ok(0)
}

fn print_release(r: &Value) {
    println!("release   {} ({})", s(&r["name"]), s(&r["status"]));
    println!("id        {}", s(&r["id"]));
    println!(
        "created   {} by {}",
        short_time(&r["created_at"]),
        s(&r["created_by"])
    );
    if !r["finalized_at"].is_null() {
        println!("finalized {}", short_time(&r["finalized_at"]));
    }
    let mut t = table(&["COMPONENT", "IMAGE", "TAG"]);
    for c in r["components"].as_array().into_iter().flatten() {
        t.add_row(vec![s(&c["component"]), s(&c["image"]), s(&c["tag"])]);
    }
    println!("{t}");
}
