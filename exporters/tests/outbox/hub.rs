//! The sender against the real hub: `sextant up` on SQLite, down when the
//! sender starts, up, killed, and restarted on the same ports and database;
//! one outbox fanned out to two hubs, one over OTLP/HTTP and one over
//! OTLP/gRPC. Every record must arrive exactly once.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sextant_e2e::{Backend, TestDb, sextant_binary};
use sextant_exporters::sender::{
    self, BackoffConfig, GrpcConfig, GrpcTransport, HttpConfig, HttpTransport, SenderConfig,
};
use sextant_exporters::{Outbox, OutboxConfig, RecordKind};
use tokio_util::sync::CancellationToken;

use crate::common::{eventually, init_tracing, observed_bytes, small_config};

/// Three free loopback ports (bound then released).
fn free_addrs() -> [SocketAddr; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    [0, 1, 2].map(|i| listeners[i].local_addr().unwrap())
}

/// A `sextant up` process on fixed ports, so it can be restarted there.
struct HubProcess {
    grpc: SocketAddr,
    http: SocketAddr,
    api: SocketAddr,
    child: Option<Child>,
}

impl HubProcess {
    fn new() -> Self {
        let [grpc, http, api] = free_addrs();
        Self {
            grpc,
            http,
            api,
            child: None,
        }
    }

    async fn start(&mut self, db: &TestDb, data_dir: &Path) {
        let show = std::env::var_os("TEST_LOG").is_some();
        let child = Command::new(sextant_binary())
            .arg("up")
            // The hub alone: two of them run at once, and the orchestrator's
            // default port would be taken by the first.
            .arg("--no-orchestrator")
            .args(["--otlp-grpc-addr", &self.grpc.to_string()])
            .args(["--otlp-http-addr", &self.http.to_string()])
            .args(["--api-addr", &self.api.to_string()])
            .arg("--database-url")
            .arg(&db.url)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("SEXTANT_CONFIG")
            .stdout(Stdio::null())
            .stderr(if show {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("http://{}/health/ready", self.api);
        eventually("the hub to be ready", Duration::from_secs(30), || async {
            reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Observed events the hub accepted since it started (its /metrics).
    async fn accepted(&self) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("sextant_receiver_records_total")
                    && l.contains("outcome=\"accepted\"")
                    && l.contains("signal=\"logs\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Every revision in `host`'s history, following the cursor.
    async fn history_revisions(&self, host: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!(
                "http://{}/api/v1/history?host={host}&limit=1000&since=3650d",
                self.api
            );
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            for item in page["items"].as_array().unwrap() {
                if let Some(rev) = item["revision"].as_str() {
                    out.push(rev.to_owned());
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn every_record_reaches_both_hubs_once_across_outages_and_restarts() {
    init_tracing();
    const N: u64 = 400;
    let host = "stage-eu-7";
    let dbs = [
        TestDb::new(Backend::Sqlite).await,
        TestDb::new(Backend::Sqlite).await,
    ];
    let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut hubs = [HubProcess::new(), HubProcess::new()];

    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(
        dir.path(),
        OutboxConfig {
            consumers: vec!["http".to_owned(), "grpc".to_owned()],
            ..small_config()
        },
    )
    .unwrap();
    let config = SenderConfig {
        max_batch_records: 64,
        backoff: BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
            ..BackoffConfig::default()
        },
        idle_refresh: Duration::from_millis(200),
        ..SenderConfig::default()
    };
    let cancel = CancellationToken::new();
    let http = HttpTransport::new(HttpConfig {
        gzip: true,
        ..HttpConfig::new(format!("http://{}", hubs[0].http))
    })
    .unwrap();
    let grpc = GrpcTransport::new(GrpcConfig {
        gzip: true,
        ..GrpcConfig::new(format!("http://{}", hubs[1].grpc))
    })
    .unwrap();
    let tasks = [
        tokio::spawn(sender::run(
            outbox.clone(),
            "http",
            http,
            config.clone(),
            cancel.clone(),
        )),
        tokio::spawn(sender::run(
            outbox.clone(),
            "grpc",
            grpc,
            config,
            cancel.clone(),
        )),
    ];

    // Hubs down: the first half waits in the outbox while sends fail.
    for i in 0..N / 2 {
        outbox
            .append(RecordKind::StateChange, &observed_bytes(host, i))
            .unwrap();
    }
    let m = outbox.metrics().clone();
    eventually("failed sends to both", Duration::from_secs(10), || async {
        m.failures("http", "connection") >= 2 && m.failures("grpc", "connection") >= 2
    })
    .await;
    assert_eq!(
        outbox
            .stats()
            .consumers
            .iter()
            .map(|c| c.pending)
            .sum::<u64>(),
        N
    );

    // Up: the backlog drains.
    for (hub, (db, data)) in hubs.iter_mut().zip(dbs.iter().zip(&data)) {
        hub.start(db, data.path()).await;
    }
    let o = outbox.clone();
    eventually(
        "the first half delivered",
        Duration::from_secs(30),
        || async { o.stats().consumers.iter().all(|c| c.pending == 0) },
    )
    .await;
    let first = [hubs[0].accepted().await, hubs[1].accepted().await];
    assert_eq!(first, [N / 2, N / 2]);

    // Down again (idle, so no request is cut), more reports, then restart
    // on the same ports and databases.
    for hub in &mut hubs {
        hub.kill();
    }
    for i in N / 2..N {
        outbox
            .append(RecordKind::StateChange, &observed_bytes(host, i))
            .unwrap();
    }
    // Real time: the sender's attempts fail on real sockets to the killed
    // hubs.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        outbox
            .stats()
            .consumers
            .iter()
            .map(|c| c.pending)
            .sum::<u64>(),
        N
    );
    for (hub, (db, data)) in hubs.iter_mut().zip(dbs.iter().zip(&data)) {
        hub.start(db, data.path()).await;
    }
    eventually(
        "the second half delivered",
        Duration::from_secs(30),
        || async { o.stats().consumers.iter().all(|c| c.pending == 0) },
    )
    .await;
    cancel.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    let expected: Vec<String> = (0..N).rev().map(|i| format!("rev-{i:06}")).collect();
    for hub in &hubs {
        // Nothing was sent twice: the restarted hub took exactly the rest.
        assert_eq!(hub.accepted().await, N / 2);
        // And the history holds every revision once, newest first.
        assert_eq!(hub.history_revisions(host).await, expected);
        let host_view: serde_json::Value =
            reqwest::get(format!("http://{}/api/v1/hosts/{host}", hub.api))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert!(
            host_view.to_string().contains(&format!("rev-{:06}", N - 1)),
            "{host_view}"
        );
    }
    assert_eq!(m.delivered("http"), N);
    assert_eq!(m.delivered("grpc"), N);
}
