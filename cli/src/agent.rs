//! `sextant agent …`: the agent's commands. Today `deploy`, which runs one
//! task through the local Docker engine with the agent's executor.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde::{Deserialize, Serialize};
use sextant_agent::executor::{Executor, ExecutorConfig, TaskEvent, TaskOutcome, TaskStatus};
use sextant_kit::config::{EnvVar, Layers, env_help, process_env};
use sextant_protocol::deploy::{ComposeLock, DeploySpec};

/// The `sextant agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent: watch the Docker engine for containers with Sextant
    /// labels and report them over OTLP through a durable outbox, with
    /// `/metrics` and `/health/*` on --listen. Stops on Ctrl-C or SIGTERM.
    Run(Box<sextant_agent::config::AgentArgs>),
    /// Deploy a container spec (or a compose-lock) pinned by digest through
    /// the local Docker engine, verify its health and roll back on failure.
    /// Exit code 0 when it succeeded, 1 otherwise.
    Deploy(DeployArgs),
}

/// The variable of `sextant agent deploy`: the data directory, as the
/// agent's. (`DOCKER_HOST` is read where Docker is dialled, as Docker's
/// own clients read it.)
const DEPLOY_ENV: &[EnvVar] = &[EnvVar::text("SEXTANT_DATA_DIR", "data_dir")];

/// Settings of `sextant agent deploy`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("task").required(true).args(["spec", "compose_lock"])))]
#[command(mut_args = env_help(DEPLOY_ENV))]
pub struct DeployArgs {
    /// A deploy spec, YAML or JSON (see docs/agent.md).
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// A compose-lock file, YAML (see docs/agent.md).
    #[arg(long, value_name = "FILE")]
    compose_lock: Option<PathBuf>,
    /// Data directory; the task journal is DATA_DIR/tasks [default: .sextant]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Docker endpoint (unix://…, tcp://…); default DOCKER_HOST, else the local socket.
    #[arg(long)]
    docker_host: Option<String>,
    /// Print events and the outcome as JSON lines.
    #[arg(long)]
    json: bool,
}

/// The settings of `sextant agent deploy` that have a variable.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploySettings {
    data_dir: PathBuf,
}

/// The flags of [`DeploySettings`]; one left out leaves the variable's.
#[derive(Serialize)]
struct DeployFlags<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<&'a Path>,
}

impl DeployArgs {
    /// The data directory: the flag, else `SEXTANT_DATA_DIR`, else `.sextant`.
    fn data_dir(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> anyhow::Result<PathBuf> {
        let defaults = DeploySettings {
            data_dir: PathBuf::from(".sextant"),
        };
        let flags = DeployFlags {
            data_dir: self.data_dir.as_deref(),
        };
        let settings: DeploySettings = Layers::new(defaults)
            .env_vars(DEPLOY_ENV, env)
            .flags(&flags)
            .load()
            .context("invalid settings")?;
        Ok(settings.data_dir)
    }
}

/// Runs an agent command; returns the exit code.
pub async fn run(command: AgentCommand) -> anyhow::Result<i32> {
    match command {
        AgentCommand::Run(args) => run_agent(&args).await,
        AgentCommand::Deploy(args) => deploy(args).await,
    }
}

async fn run_agent(args: &sextant_agent::config::AgentArgs) -> anyhow::Result<i32> {
    let config = args.resolve()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::stop_on_signal(shutdown.clone())?);
    let app = sextant_agent::app::Application::build(config).await?;
    eprintln!("sextant agent: health and metrics on http://{}", app.addr());
    app.run_until_stopped(shutdown).await?;
    Ok(0)
}

enum Task {
    Deploy(Box<DeploySpec>),
    Compose(Box<ComposeLock>),
}

async fn deploy(args: DeployArgs) -> anyhow::Result<i32> {
    let task = match (&args.spec, &args.compose_lock) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Task::Deploy(Box::new(
                DeploySpec::from_yaml(&text).with_context(|| format!("{}", path.display()))?,
            ))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Task::Compose(Box::new(
                ComposeLock::from_yaml(&text).with_context(|| format!("{}", path.display()))?,
            ))
        }
        (None, None) => anyhow::bail!("give --spec FILE or --compose-lock FILE"),
    };
    let executor = Executor::connect(ExecutorConfig {
        data_dir: args.data_dir(process_env)?,
        docker_host: args.docker_host.clone(),
    })
    .await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let json = args.json;
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            print_event(&event, json);
        }
    });
    let result = match &task {
        Task::Deploy(spec) => executor.deploy(spec, tx).await,
        Task::Compose(lock) => executor.apply_compose(lock, tx).await,
    };
    // The sender is gone with the task; the printer drains and ends.
    let _ = printer.await;
    let outcome = result?;
    Ok(if outcome.status == TaskStatus::Succeeded {
        0
    } else {
        1
    })
}

fn print_event(event: &TaskEvent, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
        return;
    }
    match event {
        TaskEvent::Status {
            container,
            phase,
            message,
            ..
        } => println!("[{phase}] {container}: {message}"),
        TaskEvent::Log {
            container, line, ..
        } => println!("  {container} | {line}"),
        TaskEvent::Finished { outcome } => print_outcome(outcome),
    }
}

fn print_outcome(o: &TaskOutcome) {
    println!();
    println!(
        "task {}: {}{}",
        o.task_id,
        o.status,
        if o.replayed {
            " (recorded result of an earlier run; nothing done)"
        } else {
            ""
        }
    );
    println!("  {}", o.message);
    if let Some(d) = &o.deployed_digest {
        println!("  deployed   {d}");
    }
    if let Some(id) = &o.container_id {
        println!("  container  {id}");
    }
    if let Some(p) = &o.previous {
        println!("  previous   {} ({})", p.id, p.image);
    }
    for s in &o.services {
        println!("  service {}: {} — {}", s.service, s.status, s.message);
    }
    if !o.logs.is_empty() {
        println!("  last log lines of the failed container:");
        for l in &o.logs {
            println!("    {l}");
        }
    }
}
