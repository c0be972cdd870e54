//! Flux fleet load: `clusters` Kubernetes clusters report Flux's
//! `gotk_resource_info` (one OTLP/gRPC metrics request per cluster, a
//! collector's batch of one kube-state-metrics scrape) to an in-process hub
//! every `interval`, paced as a fleet does; during steady state a burst of
//! Flux notification-controller events arrives on `POST
//! /v1/reconcilers/flux`, and the read API is queried under the load and
//! after it. Then the same fleet sends the same series as plain
//! `sextant.deployment.observed` gauges to a second hub on a fresh database
//! (the reference: the same rows without the Flux mapping and desired
//! state), and each hub takes one round as fast as it can (capacity).
//!
//! Printed per round: series/s against the target, request latency, how
//! many requests were still in flight when the next round began (backlog),
//! the CPU of the hub's threads, of this database's PostgreSQL backends and
//! of every PostgreSQL process, and the rows each round added.
//!
//! ```text
//! cargo bench -p sextant-receiver --bench flux_load -- --backend postgres
//! cargo bench -p sextant-receiver --bench flux_load -- --backend postgres --warm --rounds 4
//! cargo bench -p sextant-receiver --bench flux_load -- --clusters 100 --rounds 2 --events 1000   # smoke
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sextant_receiver::{Application, HubConfig};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const ENVIRONMENTS: [&str; 4] = ["dev", "qa", "stage", "prod"];
/// The name this bench gives the hub's runtime threads, to tell the hub's
/// CPU from the load generator's in `/proc/self/task`.
const HUB_THREAD: &str = "hub";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
struct Args {
    /// Store backend (CPU of the database is measured on PostgreSQL only).
    #[arg(long, value_enum, default_value = "postgres")]
    backend: Backend,
    /// PostgreSQL admin URL; a fresh database is created and dropped per hub.
    #[arg(long, env = "SEXTANT_TEST_DATABASE_URL")]
    admin_url: Option<String>,
    /// Simulated clusters, each sending one request per round.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Kustomizations per cluster, spread over `repositories` namespaces,
    /// each applying its namespace's repository.
    #[arg(long, default_value_t = 140)]
    kustomizations: usize,
    /// HelmReleases per cluster, each with its HelmChart.
    #[arg(long, default_value_t = 25)]
    helmreleases: usize,
    /// GitRepositories and OCIRepositories (every fifth) per cluster.
    #[arg(long, default_value_t = 10)]
    repositories: usize,
    /// Clusters with `wide_factor` times every kind of object (shared
    /// platform clusters), all in prod.
    #[arg(long, default_value_t = 10)]
    wide: usize,
    #[arg(long, default_value_t = 5)]
    wide_factor: usize,
    /// Among clusters outside dev, every n-th is broken: objects failed,
    /// stuck behind their source, suspended, reconciling.
    #[arg(long, default_value_t = 10)]
    broken_every: usize,
    /// Seconds between a cluster's reports (the collector's scrape interval).
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Steady rounds after the cold one.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Fraction of sources (repositories and charts) that move to a new
    /// revision each steady round; their objects apply it a round later.
    #[arg(long, default_value_t = 0.05)]
    moving: f64,
    /// HTTP/2 connections the fleet's requests share (a gateway's).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Flux events in the burst.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// The burst's length; events are sent evenly over it, each on its own.
    #[arg(long, default_value_t = 60)]
    burst_seconds: u64,
    /// Steady round in which the burst starts.
    #[arg(long, default_value_t = 2)]
    burst_round: usize,
    /// Requests per endpoint measured after the load.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// Requests in flight in the capacity round (unpaced).
    #[arg(long, default_value_t = 8)]
    capacity_concurrency: usize,
    /// Send the cold round unpaced (`capacity_concurrency` in flight)
    /// before the paced rounds, so that these measure steady state only.
    #[arg(long)]
    warm: bool,
    /// Skip the reference hub.
    #[arg(long)]
    no_reference: bool,
    /// Accepted (and ignored) for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------- the fleet

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Healthy,
    Broken,
    Wide,
}

#[derive(Debug, Clone)]
struct Cluster {
    name: String,
    env: &'static str,
    shape: Shape,
    kustomizations: usize,
    helmreleases: usize,
    repositories: usize,
}

/// One Flux object as kube-state-metrics exposes it.
#[derive(Debug, Clone)]
struct Obj {
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    namespace: String,
    name: String,
    ready: &'static str,
    suspended: bool,
    revision: String,
    /// Extra labels of the kind (`source_name`, `url`, `chart_name`, …).
    extra: Vec<(&'static str, String)>,
}

impl Obj {
    fn is_workload(&self) -> bool {
        matches!(self.kind, "Kustomization" | "HelmRelease")
    }
    fn controller(&self) -> &'static str {
        if self.kind == "HelmRelease" {
            "helm-controller"
        } else {
            "kustomize-controller"
        }
    }
}

/// splitmix64: a stable hash for revisions and choices.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x05ec_7a47u64, |h, p| mix(h ^ mix(*p)))
}

fn hex(seed: u64, digits: usize) -> String {
    let mut s = String::with_capacity(digits + 16);
    let mut i = 0;
    while s.len() < digits {
        s.push_str(&format!("{:016x}", mix(seed.wrapping_add(i))));
        i += 1;
    }
    s.truncate(digits);
    s
}

struct Fleet {
    clusters: Vec<Cluster>,
    moving: f64,
}

/// Salts of the two kinds of moving sources.
const REPO: u64 = 1;
const CHART: u64 = 2;

impl Fleet {
    fn new(args: &Args) -> Self {
        let wide_every = args
            .clusters
            .checked_div(args.wide)
            .map_or(usize::MAX, |n| n.max(1));
        let clusters = (0..args.clusters)
            .map(|i| {
                let wide = i % wide_every == wide_every / 2 && i / wide_every < args.wide;
                let env = if wide { "prod" } else { ENVIRONMENTS[i % 4] };
                let broken = !wide
                    && env != "dev"
                    && args.broken_every > 0
                    && (i / 4) % args.broken_every == 1;
                let (shape, factor) = if wide {
                    (Shape::Wide, args.wide_factor)
                } else if broken {
                    (Shape::Broken, 1)
                } else {
                    (Shape::Healthy, 1)
                };
                Cluster {
                    name: format!("{env}-cluster-{i:04}"),
                    env,
                    shape,
                    kustomizations: args.kustomizations * factor,
                    helmreleases: args.helmreleases * factor,
                    repositories: (args.repositories * factor).max(1),
                }
            })
            .collect();
        Self {
            clusters,
            moving: args.moving,
        }
    }

    /// Whether source `n` of `kind` in cluster `c` moves in `round`.
    fn moved(&self, c: usize, kind: u64, n: usize, round: usize) -> bool {
        let draw = (hash(&[c as u64, kind, n as u64, round as u64]) % 1_000_000) as f64;
        round > 0 && draw < self.moving * 1e6
    }

    /// How many times the source has moved up to `round`.
    fn generation(&self, c: usize, kind: u64, n: usize, round: usize) -> u64 {
        (1..=round).filter(|r| self.moved(c, kind, n, *r)).count() as u64
    }

    fn repo_revision(n: usize, generation: u64) -> String {
        if n % 5 == 4 {
            format!(
                "latest@sha256:{}",
                hex(hash(&[REPO, n as u64, generation]), 64)
            )
        } else {
            format!("main@sha1:{}", hex(hash(&[REPO, n as u64, generation]), 40))
        }
    }

    fn chart_version(j: usize, generation: u64) -> String {
        format!("{}.{}.{}", 1 + j % 5, 3 + generation, j % 3)
    }

    /// Kustomization `j` of cluster `c` in `round`.
    fn kustomization(&self, c: usize, j: usize, round: usize) -> Obj {
        let cluster = &self.clusters[c];
        let n = j % cluster.repositories;
        let generation = self.generation(c, REPO, n, round);
        // Fetched this round, applied next round (the scrape catches it in
        // between): drift by revision for one round.
        let mut applied = if self.moved(c, REPO, n, round) {
            Self::repo_revision(n, generation - 1)
        } else {
            Self::repo_revision(n, generation)
        };
        let (mut ready, mut suspended) = ("True", false);
        if cluster.shape == Shape::Broken {
            let stuck = Self::repo_revision(n, u64::MAX);
            match j % 13 {
                // Failed, stuck on an old revision (a bad manifest).
                0 | 7 => (ready, applied) = ("False", stuck),
                // Failed at the current revision (health check).
                3 => ready = "False",
                // Reconciling.
                5 => ready = "Unknown",
                // Suspended on an old revision.
                11 => (suspended, applied) = (true, stuck),
                _ => {}
            }
        }
        Obj {
            kind: "Kustomization",
            group: "kustomize.toolkit.fluxcd.io",
            version: "v1",
            namespace: format!("team-{n:02}"),
            name: format!("svc-{j:03}"),
            ready,
            suspended,
            revision: applied,
            extra: vec![("source_name", format!("team-{n:02}"))],
        }
    }

    /// HelmRelease `j` of cluster `c` in `round`.
    fn helmrelease(&self, c: usize, j: usize, round: usize) -> Obj {
        let cluster = &self.clusters[c];
        let generation = self.generation(c, CHART, j, round);
        let lag = self.moved(c, CHART, j, round);
        let mut applied = Self::chart_version(j, generation - u64::from(lag));
        let mut ready = "True";
        if cluster.shape == Shape::Broken && j.is_multiple_of(5) {
            // Upgrade failed and rolled back to the chart before.
            ready = "False";
            applied = format!("{}.2.{}", 1 + j % 5, j % 3);
        }
        Obj {
            kind: "HelmRelease",
            group: "helm.toolkit.fluxcd.io",
            version: "v2",
            namespace: format!("apps-{}", j % 5),
            name: format!("chart-{j:03}"),
            ready,
            suspended: false,
            revision: applied.clone(),
            extra: vec![
                ("chart_name", format!("chart-{j:03}")),
                ("chart_app_version", applied),
                ("chart_source_name", "charts".into()),
            ],
        }
    }

    /// Every object of cluster `c` in `round`: the sources first, as
    /// kube-state-metrics lists kinds.
    fn objects(&self, c: usize, round: usize) -> Vec<Obj> {
        let cluster = &self.clusters[c];
        let mut out = Vec::with_capacity(
            cluster.repositories + 2 * cluster.helmreleases + cluster.kustomizations,
        );
        for n in 0..cluster.repositories {
            let generation = self.generation(c, REPO, n, round);
            let oci = n % 5 == 4;
            out.push(Obj {
                kind: if oci {
                    "OCIRepository"
                } else {
                    "GitRepository"
                },
                group: "source.toolkit.fluxcd.io",
                version: "v1",
                namespace: format!("team-{n:02}"),
                name: format!("team-{n:02}"),
                ready: "True",
                suspended: false,
                revision: Self::repo_revision(n, generation),
                extra: vec![(
                    "url",
                    if oci {
                        format!("oci://registry.example.com/team-{n:02}/manifests")
                    } else {
                        format!("https://git.example.com/team-{n:02}/deploy")
                    },
                )],
            });
        }
        for j in 0..cluster.helmreleases {
            let generation = self.generation(c, CHART, j, round);
            out.push(Obj {
                kind: "HelmChart",
                group: "source.toolkit.fluxcd.io",
                version: "v1",
                namespace: "flux-system".into(),
                name: format!("apps-{}-chart-{j:03}", j % 5),
                ready: "True",
                suspended: false,
                revision: Self::chart_version(j, generation),
                extra: vec![
                    ("chart_name", format!("chart-{j:03}")),
                    ("chart_version", format!("{}.x", 1 + j % 5)),
                ],
            });
        }
        for j in 0..cluster.kustomizations {
            out.push(self.kustomization(c, j, round));
        }
        for j in 0..cluster.helmreleases {
            out.push(self.helmrelease(c, j, round));
        }
        out
    }

    /// Desired assignments a round should add: one per workload whose
    /// source moved (all of them in the cold round).
    fn expected_desired(&self, round: usize) -> usize {
        let mut n = 0;
        for (c, cluster) in self.clusters.iter().enumerate() {
            for j in 0..cluster.kustomizations {
                let r = j % cluster.repositories;
                if round == 0 || self.moved(c, REPO, r, round) {
                    n += 1;
                }
            }
            for j in 0..cluster.helmreleases {
                if round == 0 || self.moved(c, CHART, j, round) {
                    n += 1;
                }
            }
        }
        n
    }

    fn series(&self) -> usize {
        self.clusters
            .iter()
            .map(|c| c.repositories + 2 * c.helmreleases + c.kustomizations)
            .sum()
    }
}

/// How a cluster's scrape is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `gotk_resource_info`, as the collector's prometheus receiver hands it on.
    Flux,
    /// The reference: each workload as a `sextant.deployment.observed`
    /// point with the attributes the Flux mapping derives, each source as a
    /// metric the hub ignores. Same requests, same series, same current
    /// rows; no mapping, no source index, no desired state.
    Plain,
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn point(attributes: Vec<KeyValue>, time: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: time,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(1.0)),
        ..Default::default()
    }
}

fn gauge(name: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// One cluster's scrape as one OTLP request.
fn request(
    fleet: &Fleet,
    c: usize,
    round: usize,
    form: Form,
    time: u64,
) -> ExportMetricsServiceRequest {
    let cluster = &fleet.clusters[c];
    let objects = fleet.objects(c, round);
    let metrics = match form {
        Form::Flux => {
            let points = objects
                .iter()
                .map(|o| {
                    let mut a = vec![
                        kv("customresource_group", o.group),
                        kv("customresource_kind", o.kind),
                        kv("customresource_version", o.version),
                        kv("exported_namespace", o.namespace.clone()),
                        kv("name", o.name.clone()),
                        kv("ready", o.ready),
                        kv("suspended", if o.suspended { "true" } else { "false" }),
                        kv("revision", o.revision.clone()),
                    ];
                    a.extend(o.extra.iter().map(|(k, v)| kv(k, v.clone())));
                    point(a, time)
                })
                .collect();
            vec![gauge(
                "gotk_resource_info",
                "The current state of a Flux resource.",
                points,
            )]
        }
        Form::Plain => {
            let (workloads, sources): (Vec<&Obj>, Vec<&Obj>) =
                objects.iter().partition(|o| o.is_workload());
            let observed = workloads
                .iter()
                .map(|o| {
                    let status = match o.ready {
                        "True" => "succeeded",
                        "False" => "failed",
                        _ => "in_progress",
                    };
                    let mut a = vec![
                        kv("sextant.application", o.namespace.clone()),
                        kv("sextant.workload", o.name.clone()),
                        kv("sextant.target", cluster.name.clone()),
                        kv("sextant.revision", o.revision.clone()),
                        kv("deployment.status", status),
                        kv("sextant.reconciler.type", "flux"),
                        kv("sextant.reconciler.name", o.controller()),
                    ];
                    if o.suspended {
                        a.push(kv(
                            "sextant.status.message",
                            "suspended (spec.suspend: true)",
                        ));
                    }
                    point(a, time)
                })
                .collect();
            let ignored = sources
                .iter()
                .map(|o| {
                    point(
                        vec![
                            kv("kind", o.kind),
                            kv("name", o.name.clone()),
                            kv("revision", o.revision.clone()),
                        ],
                        time,
                    )
                })
                .collect();
            vec![
                gauge("sextant.deployment.observed", "", observed),
                gauge("flux_source_info", "", ignored),
            ]
        }
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "flux-kube-state-metrics"),
                    kv("service.instance.id", format!("10.42.{}.17:8080", c % 250)),
                    kv("server.address", format!("10.42.{}.17", c % 250)),
                    kv("server.port", "8080"),
                    kv("url.scheme", "http"),
                    kv("k8s.cluster.name", cluster.name.clone()),
                    kv("deployment.environment.name", cluster.env),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver".into(),
                    version: "0.159.0".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A notification-controller event for workload `k` of the burst, as a
/// Provider posts it (metadata with the Alert's `cluster` and `env`).
fn flux_event(fleet: &Fleet, k: usize, round: usize) -> (usize, String) {
    let c = (k.wrapping_mul(7919)) % fleet.clusters.len();
    let cluster = &fleet.clusters[c];
    let workloads = cluster.kustomizations + cluster.helmreleases;
    let j = hash(&[k as u64, 17]) as usize % workloads;
    let helm = j >= cluster.kustomizations;
    let o = if helm {
        fleet.helmrelease(c, j - cluster.kustomizations, round)
    } else {
        fleet.kustomization(c, j, round)
    };
    let (severity, reason, message) = match k % 20 {
        0 if helm => (
            "error",
            "UpgradeFailed",
            "Helm upgrade failed for release apps/chart: context deadline exceeded".to_owned(),
        ),
        0 => (
            "error",
            "HealthCheckFailed",
            "health check failed after 5m0s: timeout waiting for: [Deployment/app status: 'InProgress']"
                .to_owned(),
        ),
        1 | 2 => (
            "info",
            "Progressing",
            "Deployment/app configured\nService/app unchanged".to_owned(),
        ),
        _ if helm => (
            "info",
            "UpgradeSucceeded",
            format!("Helm upgrade succeeded for release {}/{}.v{}", o.namespace, o.name, 3 + k % 7),
        ),
        _ => (
            "info",
            "ReconciliationSucceeded",
            format!("Reconciliation finished in {}.{:03}s, next run in 10m0s", 1 + k % 4, k % 1000),
        ),
    };
    let (api_version, controller) = if helm {
        ("helm.toolkit.fluxcd.io/v2", "helm-controller")
    } else {
        ("kustomize.toolkit.fluxcd.io/v1", "kustomize-controller")
    };
    let timestamp = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = serde_json::json!({
        "involvedObject": {
            "kind": o.kind,
            "namespace": o.namespace,
            "name": o.name,
            "uid": format!("{:08x}-5a43-4bd6-8f0c-{:012x}", k, c),
            "apiVersion": api_version,
            "resourceVersion": format!("{}", 180_000 + k),
        },
        "severity": severity,
        "timestamp": timestamp,
        "message": message,
        "reason": reason,
        "metadata": {
            "cluster": cluster.name,
            "env": cluster.env,
            "revision": o.revision,
            "commit_status": "update",
        },
        "reportingController": controller,
        "reportingInstance": format!("{controller}-5b7f6c9c9d-x2v8q"),
    });
    (c, body.to_string())
}

// ------------------------------------------------------------- measurement

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// utime, stime, cutime, cstime of a `/proc/…/stat` line, and its command.
fn stat_ticks(path: &str) -> Option<(String, [u64; 4])> {
    let line = std::fs::read_to_string(path).ok()?;
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line[open + 1..close].to_owned();
    let fields: Vec<&str> = line[close + 1..].split_whitespace().collect();
    // Field 14 (utime) is the 12th after the command.
    let t = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
    Some((comm, [t(11), t(12), t(13), t(14)]))
}

/// CPU seconds so far: this process, the hub's threads, every PostgreSQL
/// process (with the backends that have exited, through the postmaster's
/// children times), and per PostgreSQL backend pid.
#[derive(Debug, Clone, Default)]
struct Cpu {
    process: f64,
    hub: f64,
    postgres: f64,
}

const TICK: f64 = 0.01; // CLK_TCK is 100 on Linux x86_64.

fn cpu_now() -> Cpu {
    let mut cpu = Cpu::default();
    if let Some((_, t)) = stat_ticks("/proc/self/stat") {
        cpu.process = (t[0] + t[1]) as f64 * TICK;
    }
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = format!("{}/stat", task.path().display());
            if let Some((comm, t)) = stat_ticks(&path)
                && comm.starts_with(HUB_THREAD)
            {
                cpu.hub += (t[0] + t[1]) as f64 * TICK;
            }
        }
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let name = p.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some((comm, t)) = stat_ticks(&format!("/proc/{name}/stat"))
                && comm == "postgres"
            {
                cpu.postgres += t.iter().sum::<u64>() as f64 * TICK;
            }
        }
    }
    cpu
}

/// CPU seconds of the PostgreSQL backends serving one database, followed
/// across samples (a backend seen for the first time counts from zero).
struct Backends {
    admin: Option<(PgPool, String)>,
    seen: HashMap<i32, f64>,
}

impl Backends {
    /// Seconds used since the last call.
    async fn delta(&mut self) -> f64 {
        let Some((pool, name)) = &self.admin else {
            return 0.0;
        };
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .fetch_all(pool)
                .await
                .unwrap_or_default();
        let mut used = 0.0;
        for pid in pids {
            if let Some((_, t)) = stat_ticks(&format!("/proc/{pid}/stat")) {
                let now = (t[0] + t[1]) as f64 * TICK;
                let before = self.seen.insert(pid, now).unwrap_or(0.0);
                used += now - before;
            }
        }
        used
    }
}

/// What this database's active backends wait on, by phase: (phase, wait
/// event, statement) → samples, one sample a second.
type Waits = Arc<Mutex<HashMap<(String, String, String), usize>>>;

async fn sample_waits(
    admin: Option<(PgPool, String)>,
    phase: Arc<Mutex<String>>,
    waits: Waits,
    stop: CancellationToken,
) {
    let Some((pool, name)) = admin else { return };
    while !stop.is_cancelled() {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT COALESCE(wait_event_type || ':' || wait_event, 'CPU'), \
               regexp_replace(left(query, 60), '\\s+', ' ', 'g') \
             FROM pg_stat_activity WHERE datname = $1 AND state = 'active'",
        )
        .bind(&name)
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        let label = phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
        {
            let mut w = waits.lock().unwrap_or_else(|p| p.into_inner());
            for (wait, query) in rows {
                *w.entry((label.clone(), wait, query)).or_default() += 1;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn print_waits(waits: &Waits) {
    let w = waits.lock().unwrap_or_else(|p| p.into_inner());
    let mut phases: Vec<&String> = w.keys().map(|k| &k.0).collect();
    phases.sort();
    phases.dedup();
    println!(
        "\nPostgreSQL: active backends of this database, sampled once a second (top 6 per round)"
    );
    println!("| round | samples | wait | statement | share |");
    println!("|---|---|---|---|---|");
    for phase in phases {
        let mut rows: Vec<(&(String, String, String), &usize)> =
            w.iter().filter(|(k, _)| &k.0 == phase).collect();
        let total: usize = rows.iter().map(|(_, n)| **n).sum();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        for ((_, wait, query), n) in rows.into_iter().take(6) {
            println!(
                "| {phase} | {total} | {wait} | `{query}` | {:.0} % |",
                *n as f64 * 100.0 / total as f64
            );
        }
    }
}

/// Rows in the tables a round writes.
#[derive(Debug, Clone, Copy, Default)]
struct Rows {
    current: i64,
    history: i64,
    desired: i64,
    versions: i64,
    targets: i64,
}

async fn rows(pool: &PgPool) -> Rows {
    let r: Result<(i64, i64, i64, i64, i64), _> = sqlx::query_as(
        "SELECT (SELECT count(*) FROM observed_deployments), (SELECT count(*) FROM observed_history), \
           (SELECT count(*) FROM desired_assignments), (SELECT count(*) FROM workload_versions), \
           (SELECT count(*) FROM deployment_targets)",
    )
    .fetch_one(pool)
    .await;
    r.map(|(current, history, desired, versions, targets)| Rows {
        current,
        history,
        desired,
        versions,
        targets,
    })
    .unwrap_or_default()
}

/// What one request's answer was.
#[derive(Debug, Default)]
struct Outcomes {
    latencies: Vec<Duration>,
    /// Series of the requests answered OK.
    accepted_series: usize,
    errors: usize,
    /// Errors by gRPC code.
    codes: HashMap<String, usize>,
    rejected_points: i64,
    first_error: Option<String>,
    /// When the last answer came, since the round's start.
    last: Duration,
}

// -------------------------------------------------------------------- hubs

struct Hub {
    grpc: String,
    http: String,
    api: String,
    db: Option<PgPool>,
    admin: Option<(PgPool, String)>,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), sextant_receiver::app::AppError>>,
    _dir: tempfile::TempDir,
}

async fn start_hub(args: &Args, hub_rt: &Handle) -> anyhow::Result<Hub> {
    let dir = tempfile::tempdir()?;
    let (url, admin) = match args.backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("hub.db").display()),
            None,
        ),
        Backend::Postgres => {
            let admin = args
                .admin_url
                .clone()
                .context("--admin-url or SEXTANT_TEST_DATABASE_URL is required for postgres")?;
            let name = format!("sextant_bench_{}", uuid::Uuid::new_v4().simple());
            let pool = PgPool::connect(&admin).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await?;
            let mut url = url::Url::parse(&admin)?;
            url.set_path(&name);
            (url.to_string(), Some((pool, name)))
        }
    };
    let any = "127.0.0.1:0".parse()?;
    let config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(url.clone()),
        ..HubConfig::default()
    };
    // The hub runs on its own runtime, whose threads are named, so that
    // its CPU can be told from the load generator's.
    let app = hub_rt
        .spawn(async move { Application::build(&config).await })
        .await??;
    let (grpc, http, api) = (
        format!("http://{}", app.otlp_grpc_addr()),
        format!("http://{}", app.otlp_http_addr()),
        format!("http://{}", app.api_addr()),
    );
    let shutdown = CancellationToken::new();
    let server = hub_rt.spawn(app.run_until_stopped(shutdown.clone()));
    let db = match args.backend {
        Backend::Postgres => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?,
        ),
        Backend::Sqlite => None,
    };
    Ok(Hub {
        grpc,
        http,
        api,
        db,
        admin,
        shutdown,
        server,
        _dir: dir,
    })
}

impl Hub {
    async fn rows(&self) -> Rows {
        match &self.db {
            Some(pool) => rows(pool).await,
            None => Rows::default(),
        }
    }

    async fn clients(&self, n: usize) -> anyhow::Result<Vec<MetricsServiceClient<Channel>>> {
        let mut clients = Vec::new();
        for _ in 0..n.max(1) {
            let channel = tonic::transport::Endpoint::from_shared(self.grpc.clone())?
                .connect()
                .await?;
            clients.push(MetricsServiceClient::new(channel).max_encoding_message_size(64 << 20));
        }
        Ok(clients)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        if let Some(pool) = self.db {
            pool.close().await;
        }
        if let Some((pool, name)) = self.admin {
            sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
                .execute(&pool)
                .await?;
        }
        Ok(())
    }
}

/// Sends one request and records the answer.
async fn export(
    mut client: MetricsServiceClient<Channel>,
    request: ExportMetricsServiceRequest,
    start: Instant,
    outcomes: Arc<Mutex<Outcomes>>,
) {
    let series: usize = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            _ => 0,
        })
        .sum();
    let t = Instant::now();
    let answer = client.export(request).await;
    let elapsed = t.elapsed();
    let mut o = outcomes.lock().unwrap_or_else(|p| p.into_inner());
    match answer {
        Ok(answer) => {
            o.latencies.push(elapsed);
            o.accepted_series += series;
            if let Some(partial) = answer.into_inner().partial_success {
                o.rejected_points += partial.rejected_data_points;
                if o.first_error.is_none() && !partial.error_message.is_empty() {
                    o.first_error = Some(partial.error_message);
                }
            }
        }
        Err(status) => {
            o.errors += 1;
            *o.codes.entry(format!("{:?}", status.code())).or_default() += 1;
            o.first_error
                .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
        }
    }
    o.last = o.last.max(start.elapsed());
}

/// Figures of one paced round, taken at the start of the next.
struct Round {
    label: String,
    series: usize,
    outcomes: Arc<Mutex<Outcomes>>,
    /// Requests of this round still unanswered when the next began.
    backlog: usize,
    max_inflight: usize,
    /// How late the generator sent its last request, against its schedule.
    slip: Duration,
    cpu: Cpu,
    db_backends: f64,
    rows: Rows,
    expected_desired: usize,
    wall: Duration,
}

/// Queries answered during a phase, by endpoint.
type Samples = Arc<Mutex<HashMap<(String, &'static str), Vec<Duration>>>>;

struct Endpoints {
    list: Vec<(&'static str, Vec<String>)>,
}

impl Endpoints {
    fn new(fleet: &Fleet) -> Self {
        let pick = |shape: Shape| -> Vec<String> {
            fleet
                .clusters
                .iter()
                .filter(|c| c.shape == shape)
                .take(8)
                .map(|c| format!("/api/v1/hosts/{}", c.name))
                .collect()
        };
        let list = vec![
            (
                "drift, first page, dev (healthy clusters only)",
                vec!["/api/v1/drift?environment=dev".to_owned()],
            ),
            (
                "drift, first page, qa/stage/prod (broken clusters present)",
                ["qa", "stage", "prod"]
                    .iter()
                    .map(|e| format!("/api/v1/drift?environment={e}"))
                    .collect(),
            ),
            (
                "environment state",
                ENVIRONMENTS
                    .iter()
                    .map(|e| format!("/api/v1/environments/{e}/state"))
                    .collect(),
            ),
            ("host view, healthy cluster", pick(Shape::Healthy)),
            ("host view, broken cluster", pick(Shape::Broken)),
            ("host view, wide cluster", pick(Shape::Wide)),
        ];
        Self {
            list: list
                .into_iter()
                .filter(|(_, urls)| !urls.is_empty())
                .collect(),
        }
    }
}

/// Sends every endpoint's requests in turn, `pause` apart, labelling each
/// answer with the phase current when it was sent, until `stop`.
async fn query_loop(
    api: String,
    endpoints: Arc<Endpoints>,
    phase: Arc<Mutex<String>>,
    samples: Samples,
    pause: Duration,
    stop: CancellationToken,
) -> usize {
    let client = reqwest::Client::new();
    let mut errors = 0;
    let mut i = 0usize;
    while !stop.is_cancelled() {
        for (name, urls) in &endpoints.list {
            let url = format!("{api}{}", urls[i % urls.len()]);
            let label = phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let t = Instant::now();
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry((label, name))
                        .or_default()
                        .push(t.elapsed());
                }
                _ => errors += 1,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return errors,
            }
        }
        i += 1;
    }
    errors
}

fn print_samples(samples: &Samples) {
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner());
    let mut keys: Vec<_> = samples.keys().cloned().collect();
    keys.sort();
    println!("| phase | endpoint | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for key in keys {
        let mut v = samples[&key].clone();
        v.sort();
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            key.0,
            key.1,
            v.len(),
            ms(percentile(&v, 0.5)),
            ms(percentile(&v, 0.99)),
            ms(*v.last().unwrap_or(&Duration::ZERO)),
        );
    }
}

/// Flux events posted evenly over the burst, each on its own request.
#[derive(Debug, Default)]
struct Burst {
    latencies: Vec<Duration>,
    accepted: usize,
    statuses: HashMap<u16, usize>,
    transport_errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    max_inflight: usize,
}

async fn burst(
    http: String,
    fleet: Arc<Fleet>,
    events: usize,
    over: Duration,
    first_round: usize,
    interval: Duration,
) -> Burst {
    let client = reqwest::Client::new();
    let url = format!("{http}/v1/reconcilers/flux");
    let result = Arc::new(Mutex::new(Burst::default()));
    let inflight = Arc::new(AtomicUsize::new(0));
    let max_inflight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(events);
    for k in 0..events {
        let at = start + over.mul_f64(k as f64 / events as f64);
        tokio::time::sleep_until(at.into()).await;
        // The revision each object runs in the round the event is sent.
        let round = first_round + (start.elapsed().as_secs_f64() / interval.as_secs_f64()) as usize;
        let (_, body) = flux_event(&fleet, k, round);
        let (client, url, result) = (client.clone(), url.clone(), result.clone());
        let (inflight, max_inflight) = (inflight.clone(), max_inflight.clone());
        max_inflight.fetch_max(
            inflight.fetch_add(1, Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let answer = match answer {
                Ok(r) => {
                    let status = r.status().as_u16();
                    Ok((status, r.text().await.unwrap_or_default()))
                }
                Err(e) => Err(e.to_string()),
            };
            let elapsed = t.elapsed();
            inflight.fetch_sub(1, Ordering::Relaxed);
            let mut b = result.lock().unwrap_or_else(|p| p.into_inner());
            match answer {
                Ok((status, text)) => {
                    *b.statuses.entry(status).or_default() += 1;
                    if status == 200 {
                        b.latencies.push(elapsed);
                        b.accepted += 1;
                    } else {
                        b.first_error.get_or_insert(format!("{status}: {text}"));
                    }
                }
                Err(e) => {
                    b.transport_errors += 1;
                    b.first_error.get_or_insert(e);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut b = std::mem::take(&mut *result.lock().unwrap_or_else(|p| p.into_inner()));
    b.elapsed = start.elapsed();
    b.max_inflight = max_inflight.load(Ordering::Relaxed);
    b.latencies.sort();
    b
}

/// Runs the cold round and `rounds` steady rounds at the fleet's pace,
/// calling `at_round` at the start of each steady round (to start the
/// burst or the queries), and returns their figures.
async fn paced(
    hub: &Hub,
    fleet: &Arc<Fleet>,
    args: &Args,
    form: Form,
    first: usize,
    rounds: usize,
    mut at_round: impl FnMut(usize),
) -> anyhow::Result<Vec<Round>> {
    let clients = hub.clients(args.connections).await?;
    let round_label = Arc::new(Mutex::new(String::new()));
    let waits: Waits = Arc::default();
    let stop_waits = CancellationToken::new();
    let sampler = tokio::spawn(sample_waits(
        hub.admin.clone(),
        round_label.clone(),
        waits.clone(),
        stop_waits.clone(),
    ));
    let interval = Duration::from_secs(args.interval);
    let n = fleet.clusters.len();
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut backends = Backends {
        admin: hub.admin.clone(),
        seen: HashMap::new(),
    };
    backends.delta().await;
    let mut cpu = cpu_now();
    let mut before = hub.rows().await;
    let mut figures = Vec::new();
    let t0 = Instant::now();
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    for round in first..=rounds {
        at_round(round);
        *round_label.lock().unwrap_or_else(|p| p.into_inner()) = format!("{form:?} {round}");
        let start = t0 + interval * (round - first) as u32;
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let max_inflight = Arc::new(AtomicUsize::new(0));
        let mut slip = Duration::ZERO;
        let mut round_handles = Vec::with_capacity(n);
        for c in 0..n {
            let at = start + interval.mul_f64(c as f64 / n as f64);
            tokio::time::sleep_until(at.into()).await;
            let request = request(fleet, c, round, form, now_nanos());
            slip = slip.max(at.elapsed());
            let client = clients[c % clients.len()].clone();
            let (outcomes, inflight, max_inflight) =
                (outcomes.clone(), inflight.clone(), max_inflight.clone());
            max_inflight.fetch_max(
                inflight.fetch_add(1, Ordering::Relaxed) + 1,
                Ordering::Relaxed,
            );
            round_handles.push(tokio::spawn(async move {
                export(client, request, start, outcomes).await;
                inflight.fetch_sub(1, Ordering::Relaxed);
            }));
        }
        // The figures of this round are taken when the next one begins;
        // after the last round, once every answer is in.
        if round < rounds {
            tokio::time::sleep_until((start + interval).into()).await;
        } else {
            for h in round_handles.drain(..) {
                h.await?;
            }
        }
        let backlog = round_handles.iter().filter(|h| !h.is_finished()).count();
        handles.extend(round_handles);
        let cpu_after = cpu_now();
        let after = hub.rows().await;
        figures.push(Round {
            label: if round == 0 {
                "cold".into()
            } else {
                format!("steady {round}")
            },
            series: (0..n)
                .map(|c| {
                    let cl = &fleet.clusters[c];
                    cl.repositories + 2 * cl.helmreleases + cl.kustomizations
                })
                .sum(),
            outcomes,
            backlog,
            max_inflight: max_inflight.load(Ordering::Relaxed),
            slip,
            cpu: Cpu {
                process: cpu_after.process - cpu.process,
                hub: cpu_after.hub - cpu.hub,
                postgres: cpu_after.postgres - cpu.postgres,
            },
            db_backends: backends.delta().await,
            rows: Rows {
                current: after.current - before.current,
                history: after.history - before.history,
                desired: after.desired - before.desired,
                versions: after.versions - before.versions,
                targets: after.targets - before.targets,
            },
            expected_desired: if form == Form::Flux {
                fleet.expected_desired(round)
            } else {
                0
            },
            wall: start.elapsed(),
        });
        cpu = cpu_after;
        before = after;
    }
    for h in handles {
        h.await?;
    }
    stop_waits.cancel();
    sampler.await?;
    print_waits(&waits);
    Ok(figures)
}

fn print_rounds(title: &str, rounds: &[Round], interval: Duration) {
    println!("\n{title}");
    println!(
        "| round | series sent | requests OK / failed (by code) | stored series/s | p50 / p99 / max ms (OK) | rejected points | in flight at next round | max in flight | last answer | hub CPU s (cores) | PG backends CPU s | all PG CPU s | generator CPU s | rows added: current / history / desired (expected) / versions / targets |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rounds {
        let o = r.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let mut lat = o.latencies.clone();
        lat.sort();
        let mut codes: Vec<String> = o.codes.iter().map(|(c, n)| format!("{n} {c}")).collect();
        codes.sort();
        let span = interval.as_secs_f64();
        let last = o.last.as_secs_f64();
        println!(
            "| {} | {} | {} / {}{} | {:.0} | {:.1} / {:.1} / {:.1} | {} | {} | {} | {:.1} s | {:.1} ({:.2}) | {:.1} | {:.1} | {:.1} | {} / {} / {} ({}) / {} / {} |",
            r.label,
            r.series,
            o.latencies.len(),
            o.errors,
            if codes.is_empty() {
                String::new()
            } else {
                format!(" ({})", codes.join(", "))
            },
            o.accepted_series as f64 / last.max(span),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(*lat.last().unwrap_or(&Duration::ZERO)),
            o.rejected_points,
            r.backlog,
            r.max_inflight,
            last,
            r.cpu.hub,
            r.cpu.hub / r.wall.as_secs_f64(),
            r.db_backends,
            r.cpu.postgres,
            r.cpu.process - r.cpu.hub,
            r.rows.current,
            r.rows.history,
            r.rows.desired,
            r.expected_desired,
            r.rows.versions,
            r.rows.targets,
        );
        if r.slip > Duration::from_millis(100) {
            println!(
                "  (the generator sent its last request {:.0} ms late)",
                ms(r.slip)
            );
        }
        if let Some(e) = &o.first_error {
            println!("  first error: {e}");
        }
    }
}

/// One more steady round, unpaced: every cluster's request with
/// `concurrency` in flight, as fast as the hub answers.
async fn capacity(
    hub: &Hub,
    fleet: &Arc<Fleet>,
    args: &Args,
    form: Form,
    round: usize,
) -> anyhow::Result<()> {
    let clients = hub.clients(args.capacity_concurrency).await?;
    let n = fleet.clusters.len();
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut backends = Backends {
        admin: hub.admin.clone(),
        seen: HashMap::new(),
    };
    backends.delta().await;
    let cpu = cpu_now();
    let before = hub.rows().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let (next, outcomes, fleet) = (next.clone(), outcomes.clone(), fleet.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= n {
                    break;
                }
                let request = request(&fleet, c, round, form, now_nanos());
                export(client.clone(), request, start, outcomes.clone()).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = cpu_now();
    let db = backends.delta().await;
    let o = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    let mut lat = o.latencies.clone();
    lat.sort();
    let series = o.accepted_series;
    let hub_cpu = after.hub - cpu.hub;
    println!(
        "capacity ({form:?}, round {round}, {} in flight): {series} of {} series stored in {elapsed:.1} s = {:.0} series/s \
         ({:.2}× the target {:.0}/s); p50 / p99 {:.1} / {:.1} ms; hub CPU {hub_cpu:.1} s \
         ({:.1} µs per series), PG backends {db:.1} s ({:.1} µs per series), all PG {:.1} s, generator {:.1} s; \
         failed requests {} {:?}",
        args.capacity_concurrency,
        fleet.series(),
        series as f64 / elapsed,
        series as f64 / elapsed / target(fleet, args),
        target(fleet, args),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        hub_cpu / series as f64 * 1e6,
        db / series as f64 * 1e6,
        after.postgres - cpu.postgres,
        (after.process - cpu.process) - hub_cpu,
        o.errors,
        o.codes,
    );
    let rows = hub.rows().await;
    println!(
        "  rows added: current {} history {} desired {} (expected {}) versions {} targets {}",
        rows.current - before.current,
        rows.history - before.history,
        rows.desired - before.desired,
        if form == Form::Flux {
            fleet.expected_desired(round)
        } else {
            0
        },
        rows.versions - before.versions,
        rows.targets - before.targets,
    );
    if let Some(e) = &o.first_error {
        println!("  first error: {e}");
    }
    Ok(())
}

/// Series per second the fleet sends at its pace.
fn target(fleet: &Fleet, args: &Args) -> f64 {
    fleet.series() as f64 / args.interval as f64
}

async fn run(args: Args, hub_rt: Handle) -> anyhow::Result<()> {
    let fleet = Arc::new(Fleet::new(&args));
    let count = |s: Shape| fleet.clusters.iter().filter(|c| c.shape == s).count();
    println!(
        "backend={:?} clusters={} (healthy {}, broken {}, wide {}) series per round={} \
         ({:.0}/s at a {} s interval) moving={} rounds=cold+{} events={} over {} s from steady round {}",
        args.backend,
        fleet.clusters.len(),
        count(Shape::Healthy),
        count(Shape::Broken),
        count(Shape::Wide),
        fleet.series(),
        target(&fleet, &args),
        args.interval,
        args.moving,
        args.rounds,
        args.events,
        args.burst_seconds,
        args.burst_round,
    );
    let interval = Duration::from_secs(args.interval);

    // The Flux fleet, with the burst and queries under load.
    let hub = start_hub(&args, &hub_rt).await?;
    let endpoints = Arc::new(Endpoints::new(&fleet));
    let samples: Samples = Arc::default();
    let phase = Arc::new(Mutex::new(String::new()));
    let stop_queries = CancellationToken::new();
    let mut burst_task: Option<JoinHandle<Burst>> = None;
    let mut query_task: Option<JoinHandle<usize>> = None;
    let burst_rounds = (args.burst_seconds as f64 / args.interval as f64).ceil() as usize;
    let first = if args.warm {
        println!("\ncold round unpaced (--warm):");
        capacity(&hub, &fleet, &args, Form::Flux, 0).await?;
        1
    } else {
        0
    };
    let rounds = paced(
        &hub,
        &fleet,
        &args,
        Form::Flux,
        first,
        args.rounds,
        |round| {
            let label = if round >= args.burst_round && round < args.burst_round + burst_rounds {
                "under load: gauge + event burst"
            } else {
                "under load: gauge only"
            };
            *phase.lock().unwrap_or_else(|p| p.into_inner()) = label.to_owned();
            if round == args.burst_round && args.events > 0 {
                burst_task = Some(tokio::spawn(burst(
                    hub.http.clone(),
                    fleet.clone(),
                    args.events,
                    Duration::from_secs(args.burst_seconds),
                    round,
                    interval,
                )));
            }
            // Queries from the burst on (the first steady round is left
            // alone, to compare with the reference).
            if round == args.burst_round.max(1) {
                query_task = Some(tokio::spawn(query_loop(
                    hub.api.clone(),
                    endpoints.clone(),
                    phase.clone(),
                    samples.clone(),
                    Duration::from_millis(100),
                    stop_queries.clone(),
                )));
            }
        },
    )
    .await?;
    stop_queries.cancel();
    let query_errors = match query_task {
        Some(t) => t.await?,
        None => 0,
    };
    print_rounds("Flux gauge (gotk_resource_info), paced", &rounds, interval);
    if let Some(t) = burst_task {
        let b = t.await?;
        println!(
            "\nFlux event burst: {} events in {:.1} s: {} accepted = {:.0}/s; latency p50 / p99 / max {:.1} / {:.1} / {:.1} ms; \
             max in flight {}; answers {:?}; transport errors {}",
            args.events,
            b.elapsed.as_secs_f64(),
            b.accepted,
            b.accepted as f64 / b.elapsed.as_secs_f64(),
            ms(percentile(&b.latencies, 0.5)),
            ms(percentile(&b.latencies, 0.99)),
            ms(*b.latencies.last().unwrap_or(&Duration::ZERO)),
            b.max_inflight,
            b.statuses,
            b.transport_errors,
        );
        if let Some(e) = b.first_error {
            println!("  first error: {e}");
        }
    }

    // After the load: the same endpoints on a quiet hub.
    *phase.lock().unwrap_or_else(|p| p.into_inner()) = "after the load".into();
    let after = CancellationToken::new();
    let quiet = tokio::spawn(query_loop(
        hub.api.clone(),
        endpoints.clone(),
        phase.clone(),
        samples.clone(),
        Duration::ZERO,
        after.clone(),
    ));
    let quiet_start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if quiet_start.elapsed() > Duration::from_secs(180) {
            println!("\n(the queries after the load stopped after 180 s)");
            break;
        }
        let done = samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((label, _), v)| label == "after the load" && v.len() >= args.queries)
            .count()
            == endpoints.list.len();
        if done {
            break;
        }
    }
    after.cancel();
    let quiet_errors = quiet.await?;
    println!("\nRead API (errors under load {query_errors}, after {quiet_errors})");
    print_samples(&samples);
    let total = hub.rows().await;
    println!(
        "\nrows at the end: current {} history {} desired {} versions {} targets {}",
        total.current, total.history, total.desired, total.versions, total.targets
    );
    capacity(&hub, &fleet, &args, Form::Flux, args.rounds + 1).await?;
    hub.stop().await?;

    if args.no_reference {
        return Ok(());
    }
    // The reference: the same fleet as plain observed gauges.
    let hub = start_hub(&args, &hub_rt).await?;
    let steady = args.rounds.clamp(1, 3);
    let first = if args.warm {
        println!("\ncold round unpaced (--warm):");
        capacity(&hub, &fleet, &args, Form::Plain, 0).await?;
        1
    } else {
        0
    };
    let rounds = paced(&hub, &fleet, &args, Form::Plain, first, steady, |_| {}).await?;
    print_rounds(
        "Reference: the same series as sextant.deployment.observed gauges, paced",
        &rounds,
        interval,
    );
    capacity(&hub, &fleet, &args, Form::Plain, steady + 1).await?;
    hub.stop().await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(HUB_THREAD)
        // Blocking threads that exit take their CPU time with them; keep
        // them for the run.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("load")
        .enable_all()
        .build()?;
    let result = load_rt.block_on(run(args, hub_rt.handle().clone()));
    load_rt.shutdown_timeout(Duration::from_secs(5));
    hub_rt.shutdown_timeout(Duration::from_secs(5));
    result
}
