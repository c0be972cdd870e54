//! `sextant up --demo` seeds a realistic estate through OTLP, on SQLite and
//! PostgreSQL: environments, hosts, a rollout in progress, a drifted host,
//! a failed deployment, a stale host and days of history; and through the
//! orchestrator's API the flow behind it: releases, a promotion awaiting
//! approval, a running job, a rolled-back job and two dry-run agents.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sextant_e2e::{Backend, TestDb, wait};

/// `sextant up --demo`, the hub on the test's database and the
/// orchestrator beside it, every listener on port 0.
struct Up {
    /// The hub's API.
    api: SocketAddr,
    /// The orchestrator's API.
    orchestrator: SocketAddr,
    child: Child,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl Up {
    async fn start(backend: Backend) -> Self {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sextant"))
            .arg("up")
            .args([
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ])
            .args(["--api-addr", "127.0.0.1:0", "--database-url", &db.url])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--demo")
            .env_remove("SEXTANT_CONFIG")
            .env_remove("SEXTANT_ORCHESTRATOR_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sextant up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the banner, then keeps draining so the demo never blocks.
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("Press Ctrl-C") {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("sextant up printed its banner");
        Self {
            api: addr(&banner, "API"),
            orchestrator: addr(&banner, "orchestrator"),
            child,
            _db: db,
            _dir: dir,
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address printed after `label` in the banner.
fn addr(banner: &str, label: &str) -> SocketAddr {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {label} address in:\n{banner}"))
}

async fn get_at(addr: SocketAddr, path: &str) -> Value {
    let res = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("API request");
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.expect("JSON")
}

async fn get(hub: &Up, path: &str) -> Value {
    get_at(hub.api, path).await
}

/// The flow, read through the orchestrator's API: releases, a promotion
/// awaiting approval that the default viewer may give, a job running (or
/// that ran: it pauses an hour between its targets), a job rolled back,
/// and both dry-run agents online.
async fn the_flow_is_there(up: &Up) {
    let o = up.orchestrator;
    wait::until(
        Duration::from_secs(180),
        Duration::from_millis(500),
        || async move {
            let releases = get_at(o, "/api/v1/releases").await;
            let waiting = get_at(o, "/api/v1/promotions?state=awaiting_approval").await;
            let rolled_back = get_at(o, "/api/v1/promotions?state=rolled_back").await;
            let jobs = get_at(o, "/api/v1/jobs?limit=1000").await;
            let agents = get_at(o, "/api/v1/agents").await;
            let count = |v: &Value, f: &dyn Fn(&Value) -> bool| {
                v.as_array().into_iter().flatten().filter(|x| f(x)).count()
            };
            let state = |s: &'static str| move |j: &Value| j["state"] == s;
            let checks = [
                ("releases", count(&releases, &|_| true) >= 2),
                (
                    "a promotion awaiting approval, not the viewer's own",
                    count(&waiting, &|p| p["requested_by"] != "local") >= 1,
                ),
                (
                    "a promotion rolled back",
                    count(&rolled_back, &|_| true) >= 1,
                ),
                ("a job running", count(&jobs, &state("running")) >= 1),
                (
                    "a job rolled back",
                    count(&jobs, &state("rolled_back")) >= 1,
                ),
                (
                    "a rollback job done",
                    count(&jobs, &|j| {
                        j["kind"] == "rollback" && j["state"] == "completed"
                    }) >= 1,
                ),
                (
                    "a prod job done",
                    count(&jobs, &|j| {
                        j["environment"] == "prod"
                            && j["state"] == "completed"
                            && j["kind"] == "deploy"
                    }) >= 1,
                ),
                (
                    "2 agents online",
                    count(&agents, &|a| a["status"] == "online") == 2,
                ),
            ];
            let missing: Vec<&str> = checks
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(w, _)| *w)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            Err(format!(
                "the demo flow lacks {missing:?}: jobs {jobs:#}, agents {agents:#}"
            ))
        },
    )
    .await;
    // The page the UI would start from: the orchestrator's `/` sends a
    // browser to the hub's pipeline.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://{o}/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        format!("http://{}/pipeline", up.api).as_str()
    );
}

async fn the_demo_shows_a_real_picture(backend: Backend) {
    let started = sextant_model::UnixNanos::now();
    let hub = Up::start(backend).await;
    let environments = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let envs = get(&hub, "/api/v1/environments").await;
            if envs["items"].as_array().map(Vec::len) == Some(4) {
                return Ok(envs);
            }
            Err(format!("the demo estate never arrived: {envs}"))
        },
    )
    .await;
    let names: Vec<&str> = environments["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["dev", "qa", "stage", "prod"], "promotion order");

    // The demo sends history first and current state after it. History
    // alone already lists all 13 hosts, so wait for the current state: every
    // host but the quiet qa-1 reports at a time after this test started.
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let hosts = get(&hub, "/api/v1/hosts").await;
            let items = hosts["items"].as_array().cloned().unwrap_or_default();
            let reporting = items
                .iter()
                .filter(|h| {
                    h["last_seen_at"]
                        .as_str()
                        .and_then(sextant_model::UnixNanos::parse_rfc3339)
                        .is_some_and(|at| at >= started)
                })
                .count();
            if items.len() == 13 && reporting == 12 {
                return Ok(());
            }
            Err(format!(
                "{reporting} of 12 hosts sent current state: {hosts}"
            ))
        },
    )
    .await;

    let drift = get(&hub, "/api/v1/drift").await;
    let has = |host: &str, workload: &str, reason: &str| {
        drift["items"].as_array().into_iter().flatten().any(|d| {
            d["host"] == host
                && d["workload"] == workload
                && d["drift"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x == reason))
        })
    };
    assert!(
        has("prod-us-3", "indexer", "wrong_revision"),
        "a drifted host: {drift}"
    );
    assert!(
        has("stage-us-1", "gateway", "failed"),
        "a failed deployment: {drift}"
    );
    assert!(has("qa-1", "checkout", "stale"), "a stale host: {drift}");
    // The demo's history gives every DORA metric a figure: commit times
    // for lead time, cart's failure in prod-eu (rolled back, then fixed)
    // for the fail rate, recovery and rework, gateway's failure on
    // stage-us-1 never recovered.
    let dora = get(&hub, "/api/v1/insights/dora?since=7d").await;
    let t = &dora["totals"];
    assert!(t["deployments"].as_u64().unwrap_or(0) > 50, "{t}");
    assert!(
        t["deployments_per_day"].as_f64().unwrap_or(0.0) > 1.0,
        "{t}"
    );
    assert!(
        t["lead_time_seconds"].as_f64().unwrap_or(0.0) > 3600.0,
        "{t}"
    );
    let fail_rate = t["change_fail_rate"].as_f64().unwrap_or(0.0);
    assert!(fail_rate > 0.0 && fail_rate < 0.5, "{t}");
    assert!(t["recovered_failures"].as_u64().unwrap_or(0) >= 1, "{t}");
    assert!(t["unrecovered_failures"].as_u64().unwrap_or(0) >= 1, "{t}");
    assert!(
        t["recovery_time_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{t}"
    );
    assert!(t["rework_rate"].as_f64().unwrap_or(0.0) > 0.0, "{t}");
    for band in [
        "deployment_frequency_band",
        "lead_time_band",
        "change_fail_rate_band",
        "recovery_time_band",
    ] {
        assert!(t[band].is_string(), "{band}: {t}");
    }

    // The drifted host says what set its desired state.
    let drifted = drift["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["host"] == "prod-us-3" && d["workload"] == "indexer")
        .expect("prod-us-3's indexer");
    let origin = &drifted["desired"]["origin"];
    assert_eq!(origin["approved_by"], "alice, bob", "{drifted}");
    assert_eq!(
        origin["promotion"], "demo-promotion-indexer-0.21.0-prod",
        "{drifted}"
    );

    let rollout = get(
        &hub,
        "/api/v1/rollout?workload=checkout&environment=prod&target=prod-eu",
    )
    .await;
    assert_eq!(rollout["desired"]["version"], "1.5.0", "{rollout}");
    assert_eq!(
        (
            &rollout["succeeded"],
            &rollout["in_progress"],
            &rollout["pending"]
        ),
        (&2.into(), &1.into(), &1.into()),
        "a rollout in progress: {rollout}"
    );

    let history = get(
        &hub,
        "/api/v1/history?workload=checkout&environment=prod&limit=1000",
    )
    .await;
    let oldest = history["items"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|e| e["at"].as_str())
        .expect("history")
        .to_owned();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let two_days_ago =
        sextant_model::UnixNanos(i64::try_from((now - 2 * 86_400) * 1_000_000_000).expect("fits"));
    assert!(
        oldest < two_days_ago.to_rfc3339(),
        "a few days of history: oldest {oldest}"
    );

    the_flow_is_there(&hub).await;
}

#[tokio::test]
async fn sqlite() {
    the_demo_shows_a_real_picture(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres() {
    the_demo_shows_a_real_picture(Backend::Postgres).await;
}
