//! The orchestrator from the command line: `sextant orchestrator` runs a
//! replica (`serve.rs`, also used by `sextant up`); the client commands
//! (`apply`, `release`, `promote`, `approve`, `reject`, `promotions`,
//! `gate`, `deployments`, `rollback`) talk to its REST API
//! (`commands.rs`, `watch.rs` for live progress).

mod client;
mod commands;
pub mod serve;
mod watch;

use clap::{Args, Subcommand, ValueEnum};

use client::{ApiError, Client};

/// How the orchestrator is reached; shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The orchestrator's API address.
    #[arg(
        long,
        env = "SEXTANT_ORCHESTRATOR_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub orchestrator: String,
    /// Bearer token (when the orchestrator has tokens, as `sextant up` has
    /// when the hub's config has `[[tokens]]`; it names the actor). Reading
    /// needs the `read`, `deploy` or `admin` scope; changes `deploy` or
    /// `admin`.
    #[arg(long, env = "SEXTANT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Who is acting, sent as `X-Sextant-Actor` (used only when the
    /// orchestrator has no tokens, as on a developer's machine).
    #[arg(
        long = "as",
        value_name = "ACTOR",
        env = "SEXTANT_ACTOR",
        global = true
    )]
    pub actor: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// A client command with the orchestrator it talks to.
#[derive(Debug, Args)]
pub struct WithClient<T: Args> {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub args: T,
}

/// The orchestrator's client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Apply environments, components and targets from a YAML file
    /// (`-f -` reads stdin); prints what was created, updated or unchanged.
    Apply(WithClient<commands::ApplyArgs>),
    /// Releases: immutable bundles of component digests.
    Release(WithClient<commands::ReleaseArgs>),
    /// Promote a release into an environment; with --wait, wait until it is
    /// deployed (exit 0) or not (exit 1).
    Promote(WithClient<commands::PromoteArgs>),
    /// Approve a promotion as yourself.
    Approve(WithClient<commands::DecisionArgs>),
    /// Reject a promotion as yourself.
    Reject(WithClient<commands::DecisionArgs>),
    /// Promotions: list, or show one with its events, approvals and gates.
    Promotions(WithClient<commands::PromotionsArgs>),
    /// Open or close a promotion's manual gate.
    Gate(WithClient<commands::GateArgs>),
    /// Deployment jobs: list them, or watch one with a progress bar per
    /// target (exit 0 completed, 1 failed or rolled back).
    Deployments(WithClient<commands::DeploymentsArgs>),
    /// Roll a deployment job back to the previous release.
    Rollback(WithClient<commands::RollbackArgs>),
    /// Agents: list them with status, version, labels, last heartbeat and
    /// current task; create a registration token; revoke one.
    Agents(WithClient<commands::AgentsArgs>),
}

/// Runs a client command; returns the exit code. An API error is printed
/// as `error: MESSAGE (CODE)` and exits with [`ApiError::exit_code`].
pub async fn run(command: ClientCommand) -> anyhow::Result<i32> {
    let result = match command {
        ClientCommand::Apply(c) => commands::apply(&Client::new(&c.client)?, &c.args).await,
        ClientCommand::Release(c) => commands::release(&Client::new(&c.client)?, c.args).await,
        ClientCommand::Promote(c) => commands::promote(&Client::new(&c.client)?, &c.args).await,
        ClientCommand::Approve(c) => {
            commands::decide(&Client::new(&c.client)?, &c.args, true).await
        }
        ClientCommand::Reject(c) => {
            commands::decide(&Client::new(&c.client)?, &c.args, false).await
        }
        ClientCommand::Promotions(c) => {
            commands::promotions(&Client::new(&c.client)?, c.args).await
        }
        ClientCommand::Gate(c) => commands::gate(&Client::new(&c.client)?, c.args).await,
        ClientCommand::Deployments(c) => {
            commands::deployments(&Client::new(&c.client)?, c.args).await
        }
        ClientCommand::Rollback(c) => commands::rollback(&Client::new(&c.client)?, &c.args).await,
        ClientCommand::Agents(c) => commands::agents(&Client::new(&c.client)?, c.args).await,
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<ApiError>() {
            Some(api) => {
                eprintln!("error: {api}");
                Ok(api.exit_code())
            }
            None => Err(e),
        },
    }
}
