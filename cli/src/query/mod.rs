//! The read commands: `status`, `compare`, `drift` (`state.rs`), `history`,
//! `hosts` (`hosts.rs`) and `rollout` (`rollout.rs`). Each asks the hub's
//! API (`/api/v1/…`) through `sextant-kit`'s `HubClient` and prints a
//! table, or the API's JSON with `--output json`. What they share, the hub
//! and its errors in the CLI's words, the output and the source filter, is
//! here.

mod dora;
mod hosts;
mod rollout;
mod state;

pub use dora::{DoraArgs, dora};
pub use hosts::{HistoryArgs, HostsArgs, history, hosts};
pub use rollout::{ROLLOUT_UNANSWERED, RolloutArgs, rollout};
pub use state::{CompareArgs, DriftArgs, StatusArgs, compare, drift, status};

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use comfy_table::Table;
use serde::Serialize;
use sextant_kit::Secret;
use sextant_kit::hub::{HubClient, HubError, RowFilter, SourceFilter};
use sextant_model::{Source, UnixNanos};

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
            HubError::Status {
                status,
                error: Some(e),
                ..
            } => anyhow::anyhow!("the hub answered {status} ({}): {}", e.code, e.message),
            // JSON, but not the error body the API documents.
            HubError::Status { status, body, .. } => {
                match serde_json::from_str::<serde::de::IgnoredAny>(&body) {
                    Ok(_) => anyhow::anyhow!("the hub answered {status} (error): "),
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

/// The filters `status`, `hosts` and `drift` share.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this environment.
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

impl FilterArgs {
    /// The hub's filter of these flags, for rows of `host` when named.
    pub(super) fn rows(&self, host: Option<&str>) -> RowFilter {
        RowFilter {
            environment: self.environment.clone(),
            application: self.application.clone(),
            workload: self.workload.clone(),
            target: self.target.clone(),
            host: host.map(str::to_owned),
            source: self.sources.filter(),
            workspace: None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_model::ErrorDetail;

    fn hub() -> Hub {
        Hub::new(&HubArgs {
            hub: "http://127.0.0.1:1".into(),
            token: None,
            output: Output::Table,
        })
        .expect("hub")
    }

    fn status(error: Option<ErrorDetail>, body: &str) -> HubError {
        HubError::Status {
            url: "http://127.0.0.1:1/api/v1/drift".into(),
            status: reqwest::StatusCode::BAD_REQUEST,
            error,
            body: body.into(),
        }
    }

    #[test]
    fn the_hubs_error_body_is_told_in_words() {
        let detail = ErrorDetail {
            code: "invalid_query".into(),
            message: "limit 0 is out of range".into(),
        };
        let said = hub().explain(status(Some(detail), "")).to_string();
        assert_eq!(
            said,
            "the hub answered 400 Bad Request (invalid_query): limit 0 is out of range"
        );
        let said = hub().explain(status(None, r#"{"oops": 1}"#)).to_string();
        assert_eq!(said, "the hub answered 400 Bad Request (error): ");
        let said = format!("{:#}", hub().explain(status(None, "<html>")));
        assert!(
            said.starts_with("the hub answered 400 Bad Request without JSON"),
            "{said}"
        );
    }
}
