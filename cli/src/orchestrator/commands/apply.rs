//! `sextant apply -f FILE`: environments, components and targets from YAML.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::orchestrator::Output;
use crate::orchestrator::client::{Body, Client, print_json, s};

/// `sextant apply -f FILE`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The YAML file (`-` for stdin); schema in docs/orchestrator.md.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
}

pub async fn apply(client: &Client, args: &ApplyArgs) -> anyhow::Result<i32> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the configuration from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let applied = client.post("/api/v1/apply", Body::Yaml(text)).await?;
    if client.output == Output::Json {
        print_json(&applied)?;
        return Ok(0);
    }
    let items = applied.as_array().cloned().unwrap_or_default();
    let mut counts = [0usize; 3];
    for a in &items {
        let change = s(&a["change"]);
        println!("{}/{} {change}", s(&a["kind"]), s(&a["name"]));
        match change {
            "created" => counts[0] += 1,
            "updated" => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    println!(
        "{} created, {} updated, {} unchanged",
        counts[0], counts[1], counts[2]
    );
    Ok(0)
}
