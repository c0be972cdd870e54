//! The orchestrator's ordered shutdown (`Application::run_until_stopped`):
//! the listeners stop accepting first, then the engine, the promotion
//! loop and the dispatcher, then the outbox's sender delivers what the
//! outbox holds, each stage under its deadline.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use sextant_e2e::{Backend, TestDb, wait};
use sextant_model::keys;
use sextant_orchestrator::app::{Application, RuntimeConfig};
use sextant_orchestrator::domain::ComponentSpec;
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::jobs::desired::{self, Desired};
use sextant_orchestrator::service::Settings;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A hub's OTLP/HTTP endpoint that keeps each request it receives and
/// answers only once the test lets it.
struct HeldHub {
    addr: SocketAddr,
    /// The `event_name` and revision of every log record received.
    received: Arc<Mutex<Vec<(String, String)>>>,
    release: watch::Sender<bool>,
}

impl HeldHub {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = watch::channel(false);
        let keep = received.clone();
        let app = Router::new().route(
            "/v1/logs",
            post(move |body: Bytes| {
                let (keep, mut released) = (keep.clone(), released.clone());
                async move {
                    let request = ExportLogsServiceRequest::decode(body).unwrap();
                    for record in request
                        .resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .flat_map(|s| &s.log_records)
                    {
                        let revision = record
                            .attributes
                            .iter()
                            .find(|kv| kv.key == keys::REVISION)
                            .and_then(|kv| kv.value.as_ref())
                            .and_then(|v| match &v.value {
                                Some(Value::StringValue(s)) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        keep.lock()
                            .unwrap()
                            .push((record.event_name.clone(), revision));
                    }
                    let _ = released.wait_for(|r| *r).await;
                    ExportLogsServiceResponse::default().encode_to_vec()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            received,
            release,
        }
    }

    fn received(&self) -> Vec<(String, String)> {
        self.received.lock().unwrap().clone()
    }
}

fn config(db: &TestDb, data: &std::path::Path, hub: SocketAddr) -> RuntimeConfig {
    RuntimeConfig {
        listeners: Default::default(),
        metrics_require_token: false,
        links: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        data_dir: data.to_owned(),
        hub_api: None,
        hub_otlp: Some(format!("http://{hub}")),
        hub_token: None,
        tokens: Vec::new(),
        insecure_registries: Vec::new(),
        agent_listen: Some("127.0.0.1:0".parse().unwrap()),
        agent_tls: Default::default(),
        agent_heartbeat: Duration::from_secs(30),
        registry_auth: Default::default(),
        api_rate_limit: Default::default(),
        settings: Settings {
            replica: "replica-a".into(),
            lease: Duration::from_secs(2),
            poll: Duration::from_millis(200),
            task_timeout: Duration::from_secs(60),
            task_attempts: 2,
        },
    }
}

/// Whether something accepts connections on `addr`.
async fn accepts(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

/// A desired event appended just before the token is cancelled reaches the
/// hub before `run_until_stopped` returns, and is acknowledged (not cut off
/// mid-request); by the time the sender is delivering it, the API and the
/// agent listener no longer accept connections.
#[tokio::test]
async fn shutdown_stops_accepting_then_delivers_the_outbox() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("sextant_orchestrator=debug,sextant_exporters=debug,info")
            .with_test_writer()
            .try_init();
    }
    let hub = HeldHub::start().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let app = Application::build(
        config(&db, data.path(), hub.addr),
        Arc::new(SshExecutor::new()),
    )
    .await
    .unwrap();
    let (api, agents) = (app.addr(), app.agent_addr().unwrap());
    let orchestrator = app.orchestrator();
    let token = CancellationToken::new();
    let run = tokio::spawn(app.run_until_stopped(token.clone()));
    assert!(accepts(api).await && accepts(agents).await);

    let component = ComponentSpec {
        name: "web".into(),
        image: "127.0.0.1:5000/web".into(),
        application: Some("shop".into()),
        workspace: None,
    };
    let digest = format!("sha256:{}", "d".repeat(64));
    let outbox = orchestrator.outbox.as_ref().unwrap();
    desired::publish(
        outbox,
        &[Desired {
            component: &component,
            environment: "prod",
            hub_target: "web-1",
            release: "v9",
            digest: &digest,
            at: 1,
            origin: Default::default(),
        }],
    )
    .unwrap();
    token.cancel();

    // The hub holds the request: the sender is delivering, and the
    // listeners are closed by then.
    // Less than the stage deadline (10 s): in the wrong order, the
    // listeners would still accept for that long.
    wait::until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let received = hub.received();
            let closed = !accepts(api).await && !accepts(agents).await;
            if !received.is_empty() && closed {
                return Ok(received);
            }
            Err(format!("received {received:?}; listeners closed: {closed}"))
        },
    )
    .await;
    assert_eq!(
        hub.received(),
        [(keys::EVENT_DESIRED.to_owned(), digest.clone())]
    );
    assert!(
        !run.is_finished(),
        "run_until_stopped returned while the sender was still delivering"
    );

    hub.release.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("run_until_stopped returns")
        .unwrap()
        .unwrap();
    let pending: u64 = outbox.stats().consumers.iter().map(|c| c.pending).sum();
    assert_eq!(
        pending, 0,
        "the event was acknowledged, not left for the next start"
    );
}
