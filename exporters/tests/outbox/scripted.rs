//! The sender against scripted peers: a tiny OTLP/HTTP server (axum) and
//! OTLP/gRPC server (tonic) that answer from a script, so retry delays,
//! refusals, partial success and splitting can be checked exactly.

use sextant_kit::Secret;
use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use sextant_exporters::sender::{
    self, BackoffConfig, GrpcConfig, GrpcTransport, HttpConfig, HttpTransport, SenderConfig,
    Transport,
};
use sextant_exporters::{DropReason, Outbox, RecordKind};
use tokio_util::sync::CancellationToken;
use tonic_types::{ErrorDetails, StatusExt};

use crate::common::{eventually, init_tracing, observed_bytes, revision_index, small_config};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    Partial(i64, &'static str),
    /// HTTP status with an optional Retry-After value.
    Http(u16, Option<&'static str>),
    /// gRPC status, with a RetryInfo delay when given.
    Grpc(tonic::Code, Option<Duration>),
}

/// When a request came, the revision indices it carried, its
/// authorization, and its compression (`Content-Encoding` or
/// `grpc-encoding`).
type Seen = (Instant, Vec<u64>, Option<String>, Option<String>);

#[derive(Default)]
pub struct Script {
    answers: Mutex<VecDeque<Answer>>,
    /// Each request: when it came, the revision indices it carried, its
    /// authorization header, and its compression.
    pub requests: Mutex<Vec<Seen>>,
}

impl Script {
    pub fn new(answers: Vec<Answer>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            requests: Mutex::default(),
        })
    }

    fn take(
        &self,
        request: &ExportLogsServiceRequest,
        auth: Option<String>,
        encoding: Option<String>,
    ) -> Answer {
        let revisions = request
            .resource_logs
            .iter()
            .map(|rl| revision_index(&rl.encode_to_vec()))
            .collect();
        self.requests
            .lock()
            .unwrap()
            .push((Instant::now(), revisions, auth, encoding));
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Ok)
    }

    pub fn batches(&self) -> Vec<Vec<u64>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.1.clone())
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.requests.lock().unwrap().iter().map(|r| r.0).collect()
    }
}

fn response(answer: Answer) -> ExportLogsServiceResponse {
    match answer {
        Answer::Partial(n, msg) => ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: msg.to_owned(),
            }),
        },
        _ => ExportLogsServiceResponse::default(),
    }
}

/// The OTLP/HTTP peer's routes (`POST /v1/logs`), answering from `script`.
pub fn http_app(script: Arc<Script>) -> axum::Router {
    let handler = move |headers: HeaderMap, body: Bytes| {
        let script = script.clone();
        async move {
            let mut raw = body.to_vec();
            if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                let mut out = Vec::new();
                // The body is this test's own small request: no cap needed.
                #[allow(clippy::disallowed_methods)]
                flate2::read::GzDecoder::new(raw.as_slice())
                    .read_to_end(&mut out)
                    .unwrap();
                raw = out;
            }
            assert_eq!(headers["content-type"], "application/x-protobuf");
            let request = ExportLogsServiceRequest::decode(raw.as_slice()).unwrap();
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            let answer: Response = match script.take(
                &request,
                header("authorization"),
                header("content-encoding"),
            ) {
                Answer::Http(code, retry_after) => {
                    let mut r = (StatusCode::from_u16(code).unwrap(), "scripted").into_response();
                    if let Some(v) = retry_after {
                        r.headers_mut().insert("retry-after", v.parse().unwrap());
                    }
                    r
                }
                other => (
                    [("content-type", "application/x-protobuf")],
                    response(other).encode_to_vec(),
                )
                    .into_response(),
            };
            answer
        }
    };
    axum::Router::new().route("/v1/logs", axum::routing::post(handler))
}

async fn http_peer(script: Arc<Script>) -> SocketAddr {
    let app = http_app(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The OTLP/gRPC peer's logs service, answering from its script.
pub struct GrpcPeer(pub Arc<Script>);

#[tonic::async_trait]
impl LogsService for GrpcPeer {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let metadata = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (auth, encoding) = (metadata("authorization"), metadata("grpc-encoding"));
        match self.0.take(request.get_ref(), auth, encoding) {
            Answer::Grpc(code, Some(delay)) => Err(tonic::Status::with_error_details(
                code,
                "scripted",
                ErrorDetails::with_retry_info(Some(delay)),
            )),
            Answer::Grpc(code, None) => Err(tonic::Status::new(code, "scripted")),
            other => Ok(tonic::Response::new(response(other))),
        }
    }
}

async fn grpc_peer(script: Arc<Script>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = LogsServiceServer::new(GrpcPeer(script))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// Quick backoff and one request at a time: the scripts answer requests in
/// the order they arrive, so these tests pin each answer to one batch
/// (pipelining is tested in `pipeline.rs`).
pub fn fast(max_batch_records: usize) -> SenderConfig {
    SenderConfig {
        max_batch_records,
        max_in_flight: 1,
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..BackoffConfig::default()
        },
        idle_refresh: Duration::from_millis(100),
        ..SenderConfig::default()
    }
}

/// Appends records `range`, runs a sender until the outbox is drained for
/// "default", and returns the outbox.
pub async fn drain_through<T: Transport>(
    transport: T,
    config: SenderConfig,
    range: std::ops::Range<u64>,
) -> (Outbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    for i in range {
        outbox
            .append(RecordKind::StateChange, &observed_bytes("h1", i))
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender::run(
        outbox.clone(),
        "default",
        transport,
        config,
        cancel.clone(),
    ));
    let o = outbox.clone();
    eventually("the outbox to drain", Duration::from_secs(20), || async {
        o.stats().consumers[0].pending == 0
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    (outbox, dir)
}

#[tokio::test]
async fn http_sender_honours_retry_after_drops_refusals_and_keeps_order() {
    init_tracing();
    let script = Script::new(vec![
        Answer::Http(503, Some("1")),
        Answer::Partial(1, "sextant.revision is required"),
        Answer::Http(400, None),
        Answer::Ok,
    ]);
    let addr = http_peer(script.clone()).await;
    let transport = HttpTransport::new(HttpConfig {
        gzip: true,
        token: Some(Secret::new("t0ken")),
        ..HttpConfig::new(format!("http://{addr}"))
    })
    .unwrap();
    let (outbox, _dir) = drain_through(transport, fast(2), 0..6).await;

    assert_eq!(
        script.batches(),
        [vec![0, 1], vec![0, 1], vec![2, 3], vec![4, 5]]
    );
    let times = script.times();
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After 1 s: {waited:?}"
    );
    assert!(
        script
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.2.as_deref() == Some("Bearer t0ken"))
    );
    let m = outbox.metrics();
    assert_eq!(m.failures("default", "unavailable"), 1);
    assert_eq!(m.failures("default", "bad_request"), 1);
    assert_eq!(m.dropped(DropReason::Rejected), 1);
    assert_eq!(m.dropped(DropReason::BadRequest), 2);
    assert_eq!(m.delivered("default"), 4);
}

#[tokio::test]
async fn http_batches_refused_as_too_large_are_split_and_a_single_record_dropped() {
    init_tracing();
    let script = Script::new(vec![
        Answer::Http(413, None),
        Answer::Ok,
        Answer::Http(413, None),
        Answer::Http(413, None),
        Answer::Http(429, Some("0")),
    ]);
    let addr = http_peer(script.clone()).await;
    let transport = HttpTransport::new(HttpConfig::new(format!("http://{addr}"))).unwrap();
    let (outbox, _dir) = drain_through(transport, fast(4), 0..5).await;
    // 4 refused → 2 accepted, the limit doubles back to 4; 3 refused →
    // 1, refused alone and dropped; the next is throttled once, then the
    // limit grows again.
    assert_eq!(
        script.batches(),
        [
            vec![0, 1, 2, 3],
            vec![0, 1],
            vec![2, 3, 4],
            vec![2],
            vec![3],
            vec![3],
            vec![4]
        ]
    );
    let m = outbox.metrics();
    assert_eq!(m.failures("default", "too_large"), 3);
    assert_eq!(m.failures("default", "throttled"), 1);
    assert_eq!(m.dropped(DropReason::TooLarge), 1);
    assert_eq!(m.delivered("default"), 4);
}

#[tokio::test]
async fn grpc_sender_honours_retry_info_and_classifies_codes() {
    init_tracing();
    let script = Script::new(vec![
        Answer::Grpc(tonic::Code::Unavailable, Some(Duration::from_millis(800))),
        // RESOURCE_EXHAUSTED with RetryInfo is a throttle, retried.
        Answer::Grpc(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_millis(10)),
        ),
        Answer::Partial(
            2,
            "deployment.status must be one of succeeded, failed, in_progress",
        ),
        Answer::Grpc(tonic::Code::InvalidArgument, None),
        Answer::Grpc(tonic::Code::Aborted, None),
        Answer::Ok,
    ]);
    let addr = grpc_peer(script.clone()).await;
    let transport = GrpcTransport::new(GrpcConfig {
        gzip: true,
        token: Some(Secret::new("g")),
        ..GrpcConfig::new(format!("http://{addr}"))
    })
    .unwrap();
    let (outbox, _dir) = drain_through(transport, fast(3), 0..9).await;
    assert_eq!(
        script.batches(),
        [
            vec![0, 1, 2],
            vec![0, 1, 2],
            vec![0, 1, 2],
            vec![3, 4, 5],
            vec![6, 7, 8],
            vec![6, 7, 8]
        ]
    );
    let times = script.times();
    assert!(
        times[1] - times[0] >= Duration::from_millis(780),
        "RetryInfo 800 ms"
    );
    assert!(
        script
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.2.as_deref() == Some("Bearer g"))
    );
    let m = outbox.metrics();
    assert_eq!(m.failures("default", "unavailable"), 1);
    assert_eq!(m.failures("default", "throttled"), 1);
    assert_eq!(m.failures("default", "bad_request"), 1);
    assert_eq!(m.failures("default", "retryable_status"), 1);
    assert_eq!(m.dropped(DropReason::Rejected), 2);
    assert_eq!(m.dropped(DropReason::BadRequest), 3);
    assert_eq!(m.delivered("default"), 6);
}
