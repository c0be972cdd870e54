//! `sextant up --demo`: a realistic estate, sent to the hub's own OTLP/HTTP
//! receiver — the real ingest path, never the database directly — and,
//! when the orchestrator runs beside the hub, the flow behind it, built
//! through the orchestrator's REST API ([`flow`]): releases, a promotion
//! awaiting approval, a running job, a rolled-back job and two dry-run
//! agents.
//!
//! Four environments (dev, qa, stage, prod), thirteen hosts, three
//! applications with six workloads, and three days of history: every
//! workload promoted through the environments twice, then a third release
//! on its way. Right now:
//! - `shop/checkout` is rolling out to prod-eu: two hosts done, one in
//!   progress, one still on the previous version;
//! - `payments/gateway` failed on stage-us-1 (readiness probe);
//! - prod-us-3 runs an older `search/indexer` than was promoted (drift);
//! - qa-1 stopped reporting two hours ago (stale);
//! - yesterday `shop/cart` 2.1.0 crash-looped on prod-eu-1, was rolled back
//!   to 2.0.1 and fixed forward with 2.1.1 (with the commit times on every
//!   release, the insights page has all five DORA metrics to show).
//!
//! After the history, every host but qa-1 reports its current state every
//! 30 s, as agents do, so nothing goes stale while the demo runs. The
//! history's promotion and job ids are made up; the flow's desired state
//! (sent by the orchestrator itself) names real ones.

pub mod flow;

use std::net::SocketAddr;
use std::time::Duration;

use sextant_model::{EventKind, UnixNanos, keys};

use crate::report::event::{Event, request};
use crate::report::send::{Hub, Secret};

const MINUTE: i64 = 60 * 1_000_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// (application, workload, versions oldest first).
const WORKLOADS: [(&str, &str, [&str; 3]); 6] = [
    ("shop", "checkout", ["1.3.0", "1.4.0", "1.5.0"]),
    ("shop", "cart", ["2.0.1", "2.1.0", "2.2.0"]),
    ("shop", "catalog", ["0.9.4", "0.9.5", "1.0.0"]),
    ("payments", "gateway", ["3.1.0", "3.2.0", "3.3.0"]),
    ("payments", "ledger", ["5.0.0", "5.0.1", "5.1.0"]),
    ("search", "indexer", ["0.20.0", "0.21.0", "0.22.0"]),
];

/// (environment, target, hosts).
const TARGETS: [(&str, &str, &[&str]); 6] = [
    ("dev", "dev", &["dev-1"]),
    ("qa", "qa", &["qa-1"]),
    ("stage", "stage-eu", &["stage-eu-1", "stage-eu-2"]),
    ("stage", "stage-us", &["stage-us-1"]),
    (
        "prod",
        "prod-eu",
        &["prod-eu-1", "prod-eu-2", "prod-eu-3", "prod-eu-4"],
    ),
    (
        "prod",
        "prod-us",
        &["prod-us-1", "prod-us-2", "prod-us-3", "prod-us-4"],
    ),
];

/// The environments in promotion order, for the hub's configuration.
pub const ENVIRONMENTS: [&str; 4] = ["dev", "qa", "stage", "prod"];

/// A digest-like revision for a workload's version.
fn revision(workload: &str, version: &str) -> String {
    // FNV-1a, widened: stable across runs, distinct per (workload, version).
    let mut digest = String::from("sha256:");
    for salt in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for b in workload.bytes().chain([b'@']).chain(version.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        digest.push_str(&format!("{h:016x}"));
    }
    digest
}

/// How far into the rollout of a release each environment was, as an
/// offset back from now: release 0 reached everything three days ago.
fn promoted_at(release: usize, environment: &str, now: i64) -> Option<i64> {
    let ago = match (release, environment) {
        (0, "dev") => 3 * DAY,
        (0, "qa") => 3 * DAY - 2 * HOUR,
        (0, "stage") => 3 * DAY - 4 * HOUR,
        (0, _) => 3 * DAY - 8 * HOUR,
        (1, "dev") => 2 * DAY + 12 * HOUR,
        (1, "qa") => 2 * DAY,
        (1, "stage") => DAY + 12 * HOUR,
        (1, _) => DAY,
        (2, "dev") => 10 * HOUR,
        (2, "qa") => 6 * HOUR,
        (2, "stage") => 2 * HOUR,
        _ => return None,
    };
    Some(now - ago)
}

struct Estate {
    /// History, oldest first.
    history: Vec<Event>,
    /// What each reporting host runs now: (time-less) observed events.
    current: Vec<Event>,
}

/// When the commit behind a workload's release was made: some hours before
/// the release reached dev (where DORA's change lead time starts).
fn committed_at(workload: &str, version: &str, now: i64) -> i64 {
    let Some((index, release)) = WORKLOADS
        .iter()
        .enumerate()
        .find_map(|(i, (_, w, versions))| {
            (*w == workload)
                .then(|| versions.iter().position(|v| *v == version).map(|r| (i, r)))
                .flatten()
        })
    else {
        // The hotfix: committed an hour before it shipped.
        return now - DAY + 3 * HOUR;
    };
    let dev = promoted_at(release, "dev", now).unwrap_or(now - 11 * HOUR);
    dev - 2 * HOUR - index as i64 * 40 * MINUTE
}

/// A desired event at `at` in an estate seeded at `now`.
#[allow(clippy::too_many_arguments)]
fn desired(
    app: &str,
    workload: &str,
    env: &str,
    target: &str,
    version: &str,
    at: i64,
    now: i64,
) -> Event {
    let mut e = Event::new(EventKind::Desired, "demo", UnixNanos(at));
    e.set(
        keys::COMMIT_TIME,
        Some(UnixNanos(committed_at(workload, version, now)).to_rfc3339()),
    );
    e.set(keys::APPLICATION, Some(app))
        .set(keys::WORKLOAD, Some(workload))
        .set(keys::ENVIRONMENT, Some(env))
        .set(keys::TARGET, Some(target))
        .set(keys::VERSION, Some(version))
        .set(keys::REVISION, Some(revision(workload, version)))
        .set(
            keys::BUILD_ID,
            Some(format!("{}", 1000 + version.len() * 37)),
        );
    // Stage and prod are promoted by the orchestrator, with approvals: the
    // hub's rows say which promotion, job and approvers set them.
    let approvers = match env {
        "stage" => Some("alice"),
        "prod" => Some("alice, bob"),
        _ => None,
    };
    if let Some(approvers) = approvers {
        let id = format!("{workload}-{version}-{env}");
        e.set(keys::PROMOTION_ID, Some(format!("demo-promotion-{id}")))
            .set(keys::JOB_ID, Some(format!("demo-job-{id}-{target}")))
            .set(keys::APPROVER, Some(approvers));
    }
    e
}

#[allow(clippy::too_many_arguments)]
fn observed(
    host: &str,
    app: &str,
    workload: &str,
    env: &str,
    target: &str,
    version: &str,
    status: &str,
    message: &str,
    at: i64,
) -> Event {
    let mut e = Event::new(EventKind::Observed, "demo", UnixNanos(at));
    e.set(keys::HOST_NAME, Some(host))
        .set(keys::RECONCILER_NAME, Some("sextant-agent"))
        .set(keys::RECONCILER_TYPE, Some("agent"))
        .set(keys::APPLICATION, Some(app))
        .set(keys::WORKLOAD, Some(workload))
        .set(keys::ENVIRONMENT, Some(env))
        .set(keys::TARGET, Some(target))
        .set(keys::REVISION, Some(revision(workload, version)))
        .set(keys::STATUS, Some(status))
        .set(keys::STATUS_MESSAGE, Some(message));
    e
}

/// `cart` 2.1.0 to prod-eu at `at`: the first host crash-loops and the
/// rollout halts; half an hour later 2.0.1 is restored there (a rollback);
/// four hours later the hotfix 2.1.1 reaches every host. DORA sees a failed
/// deployment, a rework deployment, a recovery and a fix.
#[allow(clippy::too_many_arguments)]
fn cart_incident(
    app: &str,
    workload: &str,
    env: &str,
    target: &str,
    hosts: &[&str],
    at: i64,
    now: i64,
) -> Vec<Event> {
    let ev = |host: &str, version: &str, status: &str, message: &str, t: i64| {
        observed(
            host, app, workload, env, target, version, status, message, t,
        )
    };
    let first = hosts[0];
    let mut events = vec![
        desired(app, workload, env, target, "2.1.0", at, now),
        ev(first, "2.1.0", "in_progress", "pulling image", at + MINUTE),
        ev(
            first,
            "2.1.0",
            "failed",
            "CrashLoopBackOff: CART_REDIS_URL is not set",
            at + 4 * MINUTE,
        ),
        desired(app, workload, env, target, "2.0.1", at + 30 * MINUTE, now),
        ev(first, "2.0.1", "succeeded", "rolled back", at + 32 * MINUTE),
    ];
    let fix = at + 4 * HOUR;
    events.push(desired(app, workload, env, target, "2.1.1", fix, now));
    for (i, host) in hosts.iter().enumerate() {
        let started = fix + MINUTE + i as i64 * 30_000_000_000;
        events.push(ev(host, "2.1.1", "in_progress", "pulling image", started));
        events.push(ev(
            host,
            "2.1.1",
            "succeeded",
            "rollout complete",
            started + 2 * MINUTE,
        ));
    }
    events
}

fn estate(now: i64) -> Estate {
    let mut history = Vec::new();
    let mut current = Vec::new();
    for (app, workload, versions) in WORKLOADS {
        for (env, target, hosts) in TARGETS {
            // What each host ends up running, and how.
            let mut last: Vec<(&str, &str, &str)> = hosts
                .iter()
                .map(|_| (versions[0], "succeeded", ""))
                .collect();
            for (release, version) in versions.iter().enumerate() {
                let rollout_now = release == 2 && env == "prod" && workload == "checkout";
                let at = match promoted_at(release, env, now) {
                    Some(at) => at,
                    // The release in flight: checkout to prod-eu only.
                    None if rollout_now && target == "prod-eu" => now - 20 * MINUTE,
                    None => continue,
                };
                if workload == "cart" && target == "prod-eu" && release == 1 {
                    // A failed release, rolled back, then fixed forward.
                    history.extend(cart_incident(app, workload, env, target, hosts, at, now));
                    last.fill(("2.1.1", "succeeded", "rollout complete"));
                    continue;
                }
                history.push(desired(app, workload, env, target, version, at, now));
                for (i, host) in hosts.iter().enumerate() {
                    let started = at + MINUTE + i as i64 * 30_000_000_000;
                    let done = started + 2 * MINUTE;
                    history.push(observed(
                        host,
                        app,
                        workload,
                        env,
                        target,
                        version,
                        "in_progress",
                        "pulling image",
                        started,
                    ));
                    let (status, message) = match (workload, *host, release, rollout_now) {
                        ("gateway", "stage-us-1", 2, _) => {
                            ("failed", "readiness probe failed: HTTP 503 from /healthz")
                        }
                        (_, "prod-eu-3", _, true) => ("in_progress", "waiting for 2/3 replicas"),
                        (_, "prod-eu-4", _, true) => continue,
                        _ => ("succeeded", "rollout complete"),
                    };
                    if status != "in_progress" {
                        history.push(observed(
                            host, app, workload, env, target, version, status, message, done,
                        ));
                    }
                    last[i] = (version, status, message);
                }
            }
            for (i, host) in hosts.iter().enumerate() {
                let (mut version, status, message) = last[i];
                if workload == "indexer" && *host == "prod-us-3" {
                    // Someone rolled this host back by hand.
                    version = versions[0];
                    history.push(observed(
                        host,
                        app,
                        workload,
                        env,
                        target,
                        version,
                        status,
                        "manual rollback",
                        now - 3 * HOUR,
                    ));
                }
                if *host == "qa-1" {
                    // Went quiet two hours ago.
                    history.push(observed(
                        host,
                        app,
                        workload,
                        env,
                        target,
                        version,
                        status,
                        message,
                        now - 2 * HOUR,
                    ));
                    continue;
                }
                current.push(observed(
                    host, app, workload, env, target, version, status, message, now,
                ));
            }
        }
    }
    history.sort_by_key(|e| e.time.0);
    Estate { history, current }
}

/// Sends `events` in requests of at most 500.
async fn send(hub: &Hub, events: &[Event]) -> anyhow::Result<()> {
    for chunk in events.chunks(500) {
        let outcome = hub.export(&request(chunk, UnixNanos::now())).await?;
        if outcome.rejected > 0 {
            anyhow::bail!(
                "the hub rejected {} demo events: {}",
                outcome.rejected,
                outcome.message.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Seeds the estate through `otlp_http`, prints where to look, starts the
/// orchestrator's flow when there is one (`flow`, its agents stop with
/// `cancel`), then keeps the hosts reporting every 30 s until the process
/// ends.
pub async fn run(
    otlp_http: SocketAddr,
    api: SocketAddr,
    token: Option<String>,
    flow: Option<flow::FlowConfig>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let token: Option<Secret> = token.and_then(|t| t.parse().ok());
    let endpoint = format!("http://{otlp_http}");
    let hub = match Hub::new(&endpoint, token, Duration::from_secs(30)) {
        Ok(hub) => hub,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Cannot seed the demo estate");
            return;
        }
    };
    let estate = estate(UnixNanos::now().0);
    if let Err(error) = send(&hub, &estate.history).await {
        tracing::error!(error = format!("{error:#}"), "Cannot seed the demo estate");
        return;
    }
    crate::banner(&format!(
        "Demo estate sent over OTLP: {} events, 4 environments, 13 hosts, 6 workloads. Open http://{api}/\n",
        estate.history.len() + estate.current.len()
    ));
    // After the history, so that the flow's desired state is the latest.
    if let Some(flow) = flow {
        tokio::spawn(flow::run(flow, cancel));
    }
    let mut beat = tokio::time::interval(Duration::from_secs(30));
    loop {
        beat.tick().await;
        let now = UnixNanos::now();
        let mut current = estate.current.clone();
        for e in &mut current {
            e.time = now;
        }
        if let Err(error) = send(&hub, &current).await {
            tracing::warn!(error = format!("{error:#}"), "Demo heartbeat failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estate_has_what_the_demo_promises() {
        let now = 10 * DAY;
        let e = estate(now);
        let hosts: std::collections::BTreeSet<String> = e
            .history
            .iter()
            .filter_map(|ev| {
                ev.resource()
                    .find(|(k, _)| *k == keys::HOST_NAME)
                    .map(|(_, v)| v.to_owned())
            })
            .collect();
        assert_eq!(hosts.len(), 13);
        assert!(e.history.iter().all(|ev| ev.validate(|_| None).is_ok()));
        assert!(e.current.iter().all(|ev| ev.validate(|_| None).is_ok()));
        assert!(
            e.history
                .first()
                .is_some_and(|ev| ev.time.0 <= now - 3 * DAY)
        );
        assert!(
            !e.current
                .iter()
                .any(|ev| ev.resource().any(|(_, v)| v == "qa-1"))
        );
        assert_ne!(revision("a", "1"), revision("a", "2"));
        assert_eq!(revision("a", "1").len(), "sha256:".len() + 64);
    }
}
