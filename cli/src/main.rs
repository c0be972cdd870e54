//! `sextant`: the command-line entry point. Thin: the work lives in the
//! library crates.

mod agent;
mod demo;
mod orchestrator;

/// Appends one formatted line to a banner string.
macro_rules! banner_line {
    ($b:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($b, $($arg)*);
    }};
}
pub(crate) use banner_line;
mod query;
mod report;
mod up;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sextant_exporters::telemetry::{LogFormat, Telemetry};
use tokio_util::sync::CancellationToken;

/// jemalloc, not glibc's malloc: after a burst of large OTLP requests glibc
/// keeps the freed memory in its per-thread arenas and the process stays
/// near its peak; jemalloc gives it back within seconds
/// (docs/performance.md, "Under hostile load").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Sextant: which version of every workload runs on every host in every
/// environment.
#[derive(Debug, Parser)]
#[command(name = "sextant", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A read command with the hub it asks.
#[derive(Debug, Args)]
struct Read<T: Args> {
    #[command(flatten)]
    hub: query::HubArgs,
    #[command(flatten)]
    args: T,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the local stack: the hub (OTLP receiver and read API) on an
    /// embedded SQLite database in the data directory, and the orchestrator
    /// next to it.
    Up(Box<up::UpArgs>),
    /// Run one orchestrator replica: promotions, approvals, gates and
    /// deployment jobs, with its REST API.
    Orchestrator(Box<orchestrator::serve::ServeArgs>),
    #[command(flatten)]
    Deploy(orchestrator::ClientCommand),
    /// Send one deployment event to the hub over OTLP (or Kalypso YAML with -f).
    Report(Box<report::ReportArgs>),
    /// What runs where: per target, the desired version and the deployed
    /// versions with host counts.
    Status(Read<query::StatusArgs>),
    /// Compare environments side by side: `sextant compare stage prod`.
    Compare(Read<query::CompareArgs>),
    /// Hosts whose state differs from what was promoted, and why.
    Drift(Read<query::DriftArgs>),
    /// Promotions and observed status changes of a workload, newest first.
    History(Read<query::HistoryArgs>),
    /// Hosts with their last report and status counts.
    Hosts(Read<query::HostsArgs>),
    /// Delivery performance: DORA's five metrics from the hub's history
    /// (deployment frequency, change lead time, change fail rate, failed
    /// deployment recovery time, deployment rework rate).
    Dora(Read<query::DoraArgs>),
    /// Whether a rollout is done; with --wait, wait for it (a CD gate).
    /// Exit codes: 0 done, 1 a host failed, 2 timeout, 3 not done yet.
    Rollout(Read<query::RolloutArgs>),
    /// The host agent: `sextant agent deploy --spec FILE` runs one deployment
    /// through the local Docker engine.
    Agent {
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Print shell completions: `sextant completions bash > /etc/bash_completion.d/sextant`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Traces and logs (docs/telemetry.md): `service.name` by role, unless
    // OTEL_SERVICE_NAME says otherwise.
    let service = match &cli.command {
        Command::Up(_) => "sextant",
        Command::Orchestrator(_) => "sextant-orchestrator",
        Command::Agent { .. } => "sextant-agent",
        _ => "sextant-cli",
    };
    let telemetry = Telemetry::init(service, LogFormat::from_env());
    if matches!(
        cli.command,
        Command::Up(_) | Command::Orchestrator(_) | Command::Agent { .. }
    ) {
        // Servers hold a descriptor per connection: take what the system
        // allows, and size the connection caps to it (docs/security.md).
        let limit = sextant_kit::serve::raise_open_files_limit();
        tracing::debug!(open_files_limit = ?limit, "Open files limit");
    }
    let code = match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            // The cause chain on one line; no backtrace for people.
            eprintln!("Error: {error:#}");
            1
        }
    };
    // `exit` runs no destructors: flush the last spans and logs first.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    std::process::exit(code)
}

/// Runs a command; returns the process exit code.
async fn run(command: Command) -> anyhow::Result<i32> {
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    match command {
        Command::Up(args) => done(up::run(*args).await),
        Command::Orchestrator(args) => done(orchestrator::serve::run(*args).await),
        Command::Deploy(command) => orchestrator::run(command).await,
        Command::Report(args) => done(report::run(*args).await),
        Command::Status(r) => done(query::status(&r.hub, &r.args).await),
        Command::Compare(r) => done(query::compare(&r.hub, &r.args).await),
        Command::Drift(r) => done(query::drift(&r.hub, &r.args).await),
        Command::History(r) => done(query::history(&r.hub, &r.args).await),
        Command::Hosts(r) => done(query::hosts(&r.hub, &r.args).await),
        Command::Dora(r) => done(query::dora(&r.hub, &r.args).await),
        // A CD gate must tell "a host failed" (1) from "the hub could not
        // be asked" (unreachable, refused token, bad answer): the latter is
        // 4, not the general error code 1.
        Command::Rollout(r) => Ok(query::rollout(&r.hub, &r.args)
            .await
            .unwrap_or_else(|error| {
                eprintln!("Error: {error:#}");
                query::ROLLOUT_UNANSWERED
            })),
        Command::Agent { command } => agent::run(command).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "sextant",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM. The handlers are registered
/// before this returns, so a signal sent right after the banner is printed
/// is not missed (it would otherwise kill the process).
fn stop_on_signal(shutdown: CancellationToken) -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Shutting down");
        shutdown.cancel();
    })
}

/// Prints a long-running command's banner. A server must not die because
/// whoever started it closed its stdout (a broken pipe would make
/// `println!` panic), so a failed write is ignored.
pub(crate) fn banner(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "cannot print the banner");
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use sextant_kit::config::EnvVar;

    use super::Cli;

    /// `sextant ARGS --help`, long form.
    fn help(path: &[&str]) -> String {
        let mut command = Cli::command();
        for name in path {
            command = command
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"))
                .clone();
        }
        command.render_long_help().to_string()
    }

    fn assert_named(help: &str, vars: &[EnvVar]) {
        for var in vars {
            assert!(
                help.contains(&format!("[env: {}]", var.name)),
                "{} missing from:\n{help}",
                var.name
            );
        }
    }

    /// Each variable a service reads is named in its `--help`, from the
    /// list its settings are read with.
    #[test]
    fn help_names_every_environment_variable() {
        use sextant_orchestrator::config::{AGENT_TLS_ENV, ENV};

        let orchestrator = help(&["orchestrator"]);
        assert_named(&orchestrator, ENV);
        assert_named(&orchestrator, AGENT_TLS_ENV);
        assert_named(&help(&["agent", "run"]), sextant_agent::config::ENV);
        let up = help(&["up"]);
        assert_named(&up, crate::up::ENV);
        assert_named(&up, AGENT_TLS_ENV);
        assert!(help(&["agent", "deploy"]).contains("[env: SEXTANT_DATA_DIR]"));
    }
}
