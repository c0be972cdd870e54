//! `sextant report`: send deployment events to the hub over OTLP/HTTP, from
//! flags (`desired`, `observed`) or from Kalypso YAML (`-f FILE`). For CI
//! pipelines, scripts and tests.

pub(crate) mod event;
mod kalypso;
pub(crate) mod send;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use sextant_model::{DeploymentEvent, EventKind, UnixNanos, keys};

use event::Event;
use send::Secret;

/// Arguments of `sextant report`.
#[derive(Debug, Args)]
#[command(
    subcommand_required = false,
    after_help = "Examples:\n  \
        sextant report desired --application shop --workload checkout --environment stage \\\n      \
        --target eu-west --version 1.4.2 --revision sha256:89f1…\n  \
        sextant report observed --host web-1 --application shop --workload checkout \\\n      \
        --environment stage --target eu-west --revision sha256:89f1… --status succeeded\n  \
        sextant report -f kalypso.yaml    (DeploymentDescriptor and Reconciler documents)"
)]
pub struct ReportArgs {
    #[command(subcommand)]
    event: Option<ReportEvent>,
    /// Kalypso Observability Hub YAML (hub.kalypso.io/v1alpha1): each
    /// DeploymentDescriptor is sent as a desired event, each Reconciler as an
    /// observed event, all in one request. `-` reads standard input; repeat
    /// -f for more files. See docs/kalypso.md.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Subcommand)]
enum ReportEvent {
    /// Send `sextant.deployment.desired`: this version should run on this target.
    Desired(DesiredArgs),
    /// Send `sextant.deployment.observed`: this host runs this revision, with
    /// this status.
    Observed(ObservedArgs),
}

/// How and where to send; allowed before or after `desired`/`observed`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sending")]
struct CommonArgs {
    /// The hub's OTLP/HTTP endpoint; events are POSTed to URL/v1/logs.
    #[arg(
        long,
        env = "SEXTANT_OTLP_ENDPOINT",
        default_value = "http://127.0.0.1:4318",
        value_name = "URL",
        global = true
    )]
    otlp_endpoint: String,
    /// Bearer token with the `ingest` scope.
    #[arg(long, env = "SEXTANT_TOKEN", hide_env_values = true, global = true)]
    token: Option<Secret>,
    /// When the event happened (RFC 3339, e.g. 2026-11-20T10:00:00Z)
    /// [default: now; for a DeploymentDescriptor, its creationTimestamp].
    #[arg(long, value_name = "RFC3339", value_parser = parse_time, global = true)]
    time: Option<UnixNanos>,
    /// `text`: one line per event; `json`: what was sent and the counts.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    /// Give up on the hub after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, global = true)]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    #[value(alias = "table")]
    Text,
    Json,
}

/// Where the workload is deployed.
#[derive(Debug, Args)]
struct PlacementArgs {
    /// The application (sextant.application).
    #[arg(long)]
    application: String,
    /// The workload (sextant.workload).
    #[arg(long)]
    workload: String,
    /// The environment (deployment.environment.name).
    #[arg(long)]
    environment: String,
    /// The deployment target: a cluster, namespace or host group (sextant.target).
    #[arg(long)]
    target: String,
    /// The workspace (sextant.workspace) [default: default].
    #[arg(long)]
    workspace: Option<String>,
}

#[derive(Debug, Args)]
struct DesiredArgs {
    #[command(flatten)]
    placement: PlacementArgs,
    /// The workload version (service.version).
    #[arg(long)]
    version: String,
    /// What a reconciler reports once this is applied: a GitOps commit or an
    /// image digest sha256:… (sextant.revision).
    #[arg(long)]
    revision: String,
    /// The build commit (vcs.ref.head.revision).
    #[arg(long)]
    build_commit: Option<String>,
    /// The build (sextant.build.id).
    #[arg(long)]
    build_id: Option<String>,
    /// The source repository URL (vcs.repository.url.full).
    #[arg(long)]
    repository: Option<String>,
}

#[derive(Debug, Args)]
struct ObservedArgs {
    /// The host that runs it (host.name).
    #[arg(long, required_unless_present = "k8s_cluster")]
    host: Option<String>,
    /// The Kubernetes cluster, standing in for --host (k8s.cluster.name).
    #[arg(long)]
    k8s_cluster: Option<String>,
    /// The reconciler that reports (sextant.reconciler.name).
    #[arg(long)]
    reconciler_name: Option<String>,
    /// Its type, e.g. flux, argocd, agent (sextant.reconciler.type).
    #[arg(long)]
    reconciler_type: Option<String>,
    #[command(flatten)]
    placement: PlacementArgs,
    /// The revision found on the host (sextant.revision).
    #[arg(long)]
    revision: String,
    /// The deployment status (deployment.status).
    #[arg(long, value_parser = ["succeeded", "failed", "in_progress"])]
    status: String,
    /// A status message (sextant.status.message).
    #[arg(long)]
    message: Option<String>,
}

fn parse_time(s: &str) -> Result<UnixNanos, String> {
    UnixNanos::parse_rfc3339(s)
        .ok_or_else(|| format!("{s:?} is not an RFC 3339 time, e.g. 2026-11-20T10:00:00Z"))
}

/// The flag that sets an attribute, for error messages.
fn flag(key: &str) -> Option<String> {
    let flag = match key {
        keys::WORKSPACE => "--workspace",
        keys::APPLICATION => "--application",
        keys::WORKLOAD => "--workload",
        keys::ENVIRONMENT => "--environment",
        keys::TARGET => "--target",
        keys::VERSION => "--version",
        keys::REVISION => "--revision",
        keys::BUILD_COMMIT => "--build-commit",
        keys::BUILD_ID => "--build-id",
        keys::REPOSITORY_URL => "--repository",
        keys::HOST_NAME => "--host",
        keys::K8S_CLUSTER_NAME => "--k8s-cluster",
        keys::RECONCILER_NAME => "--reconciler-name",
        keys::RECONCILER_TYPE => "--reconciler-type",
        keys::STATUS => "--status",
        keys::STATUS_MESSAGE => "--message",
        _ => return None,
    };
    Some(flag.to_owned())
}

fn placement(event: &mut Event, p: PlacementArgs) {
    event
        .set(keys::WORKSPACE, p.workspace)
        .set(keys::APPLICATION, Some(p.application))
        .set(keys::WORKLOAD, Some(p.workload))
        .set(keys::ENVIRONMENT, Some(p.environment))
        .set(keys::TARGET, Some(p.target));
}

fn from_flags(kind: ReportEvent, time: UnixNanos) -> Event {
    match kind {
        ReportEvent::Desired(a) => {
            let mut e = Event::new(EventKind::Desired, "flags", time);
            placement(&mut e, a.placement);
            e.set(keys::VERSION, Some(a.version))
                .set(keys::REVISION, Some(a.revision))
                .set(keys::BUILD_COMMIT, a.build_commit)
                .set(keys::BUILD_ID, a.build_id)
                .set(keys::REPOSITORY_URL, a.repository);
            e
        }
        ReportEvent::Observed(a) => {
            let mut e = Event::new(EventKind::Observed, "flags", time);
            e.set(keys::HOST_NAME, a.host)
                .set(keys::K8S_CLUSTER_NAME, a.k8s_cluster)
                .set(keys::RECONCILER_NAME, a.reconciler_name)
                .set(keys::RECONCILER_TYPE, a.reconciler_type);
            placement(&mut e, a.placement);
            e.set(keys::REVISION, Some(a.revision))
                .set(keys::STATUS, Some(a.status))
                .set(keys::STATUS_MESSAGE, a.message);
            e
        }
    }
}

fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<kalypso::Input>> {
    files
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read YAML from standard input")?;
                Ok(kalypso::Input {
                    name: "stdin".into(),
                    text,
                })
            } else {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Ok(kalypso::Input {
                    name: path.display().to_string(),
                    text,
                })
            }
        })
        .collect()
}

/// Runs `sextant report`: builds and validates every event, sends them in
/// one request, and reports what the hub did with them.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let common = args.common;
    let now = UnixNanos::now();
    let hub = send::Hub::new(
        &common.otlp_endpoint,
        common.token,
        Duration::from_secs(common.timeout),
    )?;
    let (events, from_file) = match (args.event, args.files.is_empty()) {
        (Some(_), false) => bail!(
            "-f reads the event kinds from the YAML: use `sextant report -f FILE` without \
             `desired` or `observed`"
        ),
        (Some(kind), true) => (vec![from_flags(kind, common.time.unwrap_or(now))], false),
        (None, false) => {
            let inputs = read_inputs(&args.files)?;
            (kalypso::events(&inputs, common.time, now)?, true)
        }
        (None, true) => bail!(
            "say what to send: `sextant report desired …`, `sextant report observed …` or \
             `sextant report -f FILE` (see `sextant report --help`)"
        ),
    };
    let parsed = events
        .iter()
        .map(|e| {
            let field = match (from_file, e.kind) {
                (false, _) => flag,
                (true, EventKind::Desired) => kalypso::descriptor_field,
                (true, EventKind::Observed) => kalypso::reconciler_field,
            };
            e.validate(field)
        })
        .collect::<anyhow::Result<Vec<DeploymentEvent>>>()
        .context("nothing was sent")?;

    let request = event::request(&events, now);
    let outcome = hub.export(&request).await?;

    let total = events.len();
    let rejected = usize::try_from(outcome.rejected.max(0)).unwrap_or(total);
    match common.output {
        Output::Json => {
            let report = serde_json::json!({
                "endpoint": hub.url(),
                "sent": total,
                "accepted": total.saturating_sub(rejected),
                "rejected": rejected,
                "error": outcome.message,
                "events": events.iter().map(Event::json).collect::<Vec<_>>(),
            });
            println!("{report:#}");
        }
        Output::Text if rejected == 0 => {
            for event in &parsed {
                println!("{}", event::describe(event));
            }
        }
        Output::Text => {}
    }
    if rejected > 0 {
        bail!(
            "the hub rejected {rejected} of {total} event{}: {}",
            if total == 1 { "" } else { "s" },
            outcome.message.as_deref().unwrap_or("no reason given")
        );
    }
    if let Some(message) = outcome.message {
        eprintln!("warning: the hub accepted the events and said: {message}");
    }
    Ok(())
}
