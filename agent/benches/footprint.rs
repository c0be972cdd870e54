//! The agent's footprint (issue 4 §7): resident memory and CPU of a real
//! `sextant agent run` process (release build) watching N labelled
//! containers on the real Docker engine and reporting to a real hub.
//!
//! ```sh
//! cargo bench -p sextant-agent --bench footprint -- --containers 100 --heartbeat 2 --cycles 30
//! ```
//!
//! Phases, each read from `/proc/PID/status` (VmRSS, VmHWM) and
//! `/proc/PID/stat` (utime + stime, which keeps the time of threads that
//! have exited):
//! 1. idle: the agent with no labelled container, over `--cycles` heartbeats;
//! 2. N containers started with `docker run -d` (the kit's v1 image, the
//!    three placement labels and the scope label) while the agent watches;
//! 3. steady: N containers, nothing changing, over `--cycles` heartbeats;
//! 4. initial resync: a second agent started with the N containers already
//!    there, until it has delivered N records, against the first agent's
//!    start with none.
//!
//! The hub's `/api/v1/hosts/{host}` must list N deployments at the end.
//! Docker objects are removed by the kit's `DockerScope`; processes are
//! killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sextant_e2e::docker::{DockerScope, TEST_LABEL, test_images};
use sextant_e2e::{Backend, Hub, release_sextant};

/// Fresh agents started for the initial-resync figure, per variant.
const RESTARTS: usize = 3;

struct Args {
    containers: usize,
    heartbeat: u64,
    cycles: u64,
    /// Keep the image's 1 s HEALTHCHECK (every probe is a Docker event).
    healthcheck: bool,
}

impl Args {
    fn parse() -> Self {
        let mut args = Self {
            containers: 100,
            heartbeat: 2,
            cycles: 30,
            healthcheck: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = |name: &str| -> u64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} takes a number"))
            };
            match flag.as_str() {
                "--containers" => args.containers = value("--containers") as usize,
                "--heartbeat" => args.heartbeat = value("--heartbeat").max(1),
                "--cycles" => args.cycles = value("--cycles").max(1),
                "--healthcheck" => args.healthcheck = true,
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => panic!(
                    "unknown argument {other:?}; use --containers N --heartbeat SECS \
                     --cycles K [--healthcheck]"
                ),
            }
        }
        args
    }
}

/// A `sextant agent run` process; killed when dropped.
struct Agent {
    child: Child,
    listen: SocketAddr,
}

impl Agent {
    fn start(
        binary: &Path,
        data: &Path,
        hub: &Hub,
        host: &str,
        scope: &DockerScope,
        hb: u64,
    ) -> Self {
        let mut child = Command::new(binary)
            .args([
                "agent",
                "run",
                "--host-name",
                host,
                "--environment",
                "bench",
            ])
            .args(["--otlp-endpoint", &format!("http://{}", hub.grpc)])
            .args(["--heartbeat", &format!("{hb}s")])
            // No periodic resync inside the measured windows.
            .args(["--resync", "1h", "--listen", "127.0.0.1:0"])
            .args(["--watch-label", &scope.label_filter()])
            .arg("--data-dir")
            .arg(data)
            // The default log level (info), as deployed.
            .env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sextant agent run");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let listen = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("health and metrics on http://")
                    .nth(1)?
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("the agent printed its address");
        // Keep draining stderr (the agent logs every change at info).
        std::thread::spawn(move || for _ in lines {});
        Self { child, listen }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS, VmHWM, RssAnon (KiB) and the thread count from `/proc/PID/status`.
struct Memory {
    rss_kib: u64,
    /// The part of VmRSS that is the process's own memory; the rest is
    /// mostly pages of the `sextant` binary, shared and reclaimable.
    anon_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
    };
    Memory {
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time of the process so far, in ms, two ways.
#[derive(Clone, Copy)]
struct Cpu {
    /// utime + stime from `/proc/PID/stat`: every thread, exited ones too,
    /// but in whole clock ticks (10 ms).
    ticks_ms: f64,
    /// Sum of `/proc/PID/task/*/schedstat` (ns on CPU): precise, but only
    /// for threads alive now.
    sched_ms: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            ticks_ms: self.ticks_ms - o.ticks_ms,
            sched_ms: self.sched_ms - o.sched_ms,
        }
    }
}

impl Cpu {
    fn per(self, k: f64) -> String {
        format!(
            "{:.2} ms (schedstat {:.2} ms)",
            self.ticks_ms / k,
            self.sched_ms / k
        )
    }
}

fn cpu(pid: u32, ticks: u64) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // utime and stime are the 12th and 13th fields after the command name.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let used: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().expect("tick count"))
        .sum();
    let mut sched_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            sched_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Cpu {
        ticks_ms: used as f64 * 1000.0 / ticks as f64,
        sched_ms: sched_ns as f64 / 1e6,
    }
}

/// Bytes (apparent size, and allocated on disk) of the files under `dir`.
fn disk_use(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = disk_use(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

/// Sum of every sample of `name` in the agent's `/metrics`.
async fn metric(client: &reqwest::Client, agent: &Agent, name: &str) -> Option<f64> {
    let text = client
        .get(format!("http://{}/metrics", agent.listen))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.rsplit_once(' ')?;
        if key == name || key.starts_with(&format!("{name}{{")) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// Polls (every 100 ms) until the agent sees `n` containers and has
/// delivered at least `delivered` records; panics after `limit`.
async fn settle(
    client: &reqwest::Client,
    agent: &Agent,
    n: usize,
    delivered: f64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = metric(client, agent, "sextant_agent_observed_containers").await;
        let sent = metric(client, agent, "sextant_outbox_delivered_records_total")
            .await
            .unwrap_or(0.0);
        if seen == Some(n as f64) && sent >= delivered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent never settled: observed {seen:?} of {n}, delivered {sent} of {delivered}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deployments the hub lists for `host`, with how many are `succeeded`.
async fn hub_deployments(client: &reqwest::Client, hub: &Hub, host: &str) -> (usize, usize) {
    let Ok(res) = client
        .get(format!("http://{}/api/v1/hosts/{host}", hub.api))
        .send()
        .await
    else {
        return (0, 0);
    };
    let view: Value = res.json().await.unwrap_or(Value::Null);
    let all = view["deployments"].as_array().cloned().unwrap_or_default();
    let ok = all.iter().filter(|d| d["status"] == "succeeded").count();
    (all.len(), ok)
}

/// `docker run -d` of `n` labelled containers, four at a time.
fn start_containers(scope: &DockerScope, image: &str, n: usize, healthcheck: bool) {
    let run = |i: usize| {
        let workload = format!("w{i:03}");
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--name", &scope.name(&workload)]);
        if !healthcheck {
            cmd.arg("--no-healthcheck");
        }
        cmd.args(["--label", &format!("{TEST_LABEL}={}", scope.id())])
            .args(["--label", "sextant.application=footprint"])
            .args(["--label", &format!("sextant.workload={workload}")])
            .args(["--label", "sextant.target=bench"])
            .arg(image)
            .stdout(Stdio::null());
        let out = cmd.output().expect("docker run");
        assert!(
            out.status.success(),
            "docker run {workload}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::thread::scope(|s| {
        for lane in 0..4 {
            let run = &run;
            s.spawn(move || (lane..n).step_by(4).for_each(run));
        }
    });
}

/// VmRSS with its anonymous part.
fn rss(m: &Memory) -> String {
    format!("{} (anon {})", mib(m.rss_kib), mib(m.anon_kib))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let n = args.containers;
    let hb = args.heartbeat;
    let k = args.cycles;
    let binary = release_sextant(true);
    let ticks = clock_ticks();
    let images = test_images().await;
    let scope = DockerScope::new();
    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let window = Duration::from_secs(hb * k);
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Idle: no labelled container.
    let data = tempfile::tempdir().expect("dir");
    let host = format!("footprint-{}", scope.id());
    let agent = Agent::start(&binary, data.path(), &hub, &host, &scope, hb);
    let pid = agent.pid();
    settle(&client, &agent, 0, 0.0, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3 * hb)).await;
    let idle = memory(pid);
    let before = cpu(pid, ticks);
    tokio::time::sleep(window).await;
    let idle_cpu = cpu(pid, ticks) - before;
    eprintln!("footprint: idle done");

    // 2. N containers come up while the agent watches.
    let before = cpu(pid, ticks);
    let started = Instant::now();
    start_containers(&scope, &images.v1, n, args.healthcheck);
    let run_took = started.elapsed();
    settle(&client, &agent, n, n as f64, Duration::from_secs(120)).await;
    let come_up_cpu = cpu(pid, ticks) - before;
    eprintln!("footprint: {n} containers up in {run_took:.1?}");

    // 3. Steady: N containers, nothing changing.
    tokio::time::sleep(Duration::from_secs(3 * hb)).await;
    let delivered_before = metric(&client, &agent, "sextant_outbox_delivered_records_total")
        .await
        .unwrap_or(0.0);
    let before = cpu(pid, ticks);
    tokio::time::sleep(window).await;
    let steady_cpu = cpu(pid, ticks) - before;
    let steady = memory(pid);
    let delivered = metric(&client, &agent, "sextant_outbox_delivered_records_total")
        .await
        .unwrap_or(0.0)
        - delivered_before;
    let outbox = disk_use(&data.path().join("outbox"));
    let outbox_gauge = metric(&client, &agent, "sextant_outbox_bytes")
        .await
        .unwrap_or(0.0);

    let appended = metric(&client, &agent, "sextant_agent_reports_total")
        .await
        .unwrap_or(0.0);

    // 4. Initial resync: fresh agents (new data dir) start with the N
    // containers there, against fresh agents watching a scope with none;
    // three of each, averaged, since one start is a few clock ticks.
    let host2 = format!("footprint2-{}", scope.id());
    let empty_scope = DockerScope::new();
    let mut startup_empty = Vec::new();
    let mut startup_full = Vec::new();
    let mut resynced = None;
    for _ in 0..RESTARTS {
        for (watch, count, out) in [
            (&empty_scope, 0, &mut startup_empty),
            (&scope, n, &mut startup_full),
        ] {
            let dir = tempfile::tempdir().expect("dir");
            let fresh = Agent::start(&binary, dir.path(), &hub, &host2, watch, 3600);
            settle(
                &client,
                &fresh,
                count,
                count as f64,
                Duration::from_secs(120),
            )
            .await;
            out.push(cpu(fresh.pid(), ticks));
            if count > 0 {
                resynced = Some(memory(fresh.pid()));
            }
        }
    }
    let mean = |v: &[Cpu]| Cpu {
        ticks_ms: v.iter().map(|c| c.ticks_ms).sum::<f64>() / v.len() as f64,
        sched_ms: v.iter().map(|c| c.sched_ms).sum::<f64>() / v.len() as f64,
    };
    let (startup_empty, startup_full) = (mean(&startup_empty), mean(&startup_full));
    let resynced = resynced.expect("a fresh agent ran");

    // 5. The hub lists every container of both hosts.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (listed, ok) = loop {
        let got = hub_deployments(&client, &hub, &host).await;
        if got == (n, n) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (listed, ok),
        (n, n),
        "hub lists (deployments, succeeded) for {host}"
    );
    let (listed2, _) = hub_deployments(&client, &hub, &host2).await;
    assert_eq!(listed2, n, "hub lists deployments for {host2}");
    let end = memory(pid);
    drop(agent);
    scope.cleanup();

    rows.push(("VmRSS idle, 0 containers".into(), rss(&idle)));
    rows.push((
        format!("VmRSS with {n} containers, after {} heartbeats", 3 + k),
        rss(&steady),
    ));
    rows.push((
        "VmHWM (peak) of the run, incl. start-up of N".into(),
        mib(end.hwm_kib),
    ));
    rows.push((
        format!("VmRSS / VmHWM of a fresh agent after resyncing {n}"),
        format!("{} / {}", rss(&resynced), mib(resynced.hwm_kib)),
    ));
    rows.push((
        "threads (idle / N / fresh)".into(),
        format!(
            "{} / {} / {}",
            idle.threads, steady.threads, resynced.threads
        ),
    ));
    rows.push((
        format!("outbox on disk with {n} (size / allocated)"),
        format!(
            "{:.1} KiB / {:.1} KiB (gauge {:.1} KiB)",
            outbox.0 as f64 / 1024.0,
            outbox.1 as f64 / 1024.0,
            outbox_gauge / 1024.0
        ),
    ));
    rows.push((
        format!("outbox bytes per record ({appended} records appended)"),
        format!("{:.0} B", outbox.0 as f64 / appended.max(1.0)),
    ));
    rows.push((
        "CPU per heartbeat cycle, 0 containers".into(),
        idle_cpu.per(k as f64),
    ));
    rows.push((
        format!(
            "CPU per heartbeat cycle, {n} containers ({delivered} records delivered in the window)"
        ),
        steady_cpu.per(k as f64),
    ));
    rows.push((
        format!("CPU while {n} containers came up (docker run took {run_took:.1?})"),
        come_up_cpu.per(1.0),
    ));
    rows.push((
        format!("CPU from exec to ready, 0 containers (mean of {RESTARTS})"),
        startup_empty.per(1.0),
    ));
    rows.push((
        format!("CPU from exec to {n} reports delivered (mean of {RESTARTS})"),
        startup_full.per(1.0),
    ));
    rows.push((
        format!("initial resync of {n} (difference of the two)"),
        (startup_full - startup_empty).per(1.0),
    ));
    rows.push((
        "hub /api/v1/hosts/{host} at the end".to_owned(),
        format!("{listed} deployments, {ok} succeeded"),
    ));

    println!();
    println!(
        "sextant agent run (release), {n} containers, heartbeat {hb}s, {k} cycles per window, \
         healthcheck {}",
        if args.healthcheck { "on (1 s)" } else { "off" }
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
}
