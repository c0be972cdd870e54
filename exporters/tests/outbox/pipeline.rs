//! Several batches in flight (`SenderConfig::max_in_flight`): transports
//! in the test process whose answers the test decides — by hand, in any
//! order, or by a rule — and that count how many requests they hold at
//! once. The cursor must move in order whatever order the answers come in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use sextant_exporters::sender::{
    self, BackoffConfig, ExportOutcome, FailureReason, LogsRequest, SenderConfig, Transport,
};
use sextant_exporters::{DropReason, Outbox, RecordKind};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{eventually, init_tracing, observed_bytes, revision_index, small_config};

const WAIT: Duration = Duration::from_secs(10);

fn accepted() -> ExportOutcome {
    ExportOutcome::Accepted {
        rejected: 0,
        message: None,
    }
}

/// The revision indices a request carries.
fn revisions(request: &LogsRequest) -> Vec<u64> {
    ExportLogsServiceRequest::decode(request.body.clone())
        .unwrap()
        .resource_logs
        .iter()
        .map(|rl| revision_index(&rl.encode_to_vec()))
        .collect()
}

/// Requests held now and the most ever held at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Concurrency {
    fn enter(self: &Arc<Self>) -> Held {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Held(self.clone())
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Leaves on drop, so a request the sender cancels leaves too.
struct Held(Arc<Concurrency>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request waiting for the test's answer.
struct Waiting {
    revisions: Vec<u64>,
    reply: oneshot::Sender<ExportOutcome>,
}

/// A transport that holds every request until the test answers it.
#[derive(Clone, Default)]
struct ByHand {
    waiting: Arc<Mutex<Vec<Waiting>>>,
    arrived: Arc<Notify>,
    /// Every request, in the order it arrived.
    log: Arc<Mutex<Vec<Vec<u64>>>>,
    held: Arc<Concurrency>,
}

impl Transport for ByHand {
    fn endpoint(&self) -> &str {
        "by-hand"
    }

    async fn export(&self, request: LogsRequest) -> ExportOutcome {
        let _held = self.held.enter();
        let revisions = revisions(&request);
        let (reply, answer) = oneshot::channel();
        self.log.lock().unwrap().push(revisions.clone());
        self.waiting
            .lock()
            .unwrap()
            .push(Waiting { revisions, reply });
        self.arrived.notify_waiters();
        answer.await.unwrap_or_else(|_| ExportOutcome::Retry {
            reason: FailureReason::Connection,
            retry_after: None,
            detail: "the test went away".to_owned(),
        })
    }
}

impl ByHand {
    /// The batches (first revision of each) waiting for an answer, sorted.
    fn waiting(&self) -> Vec<u64> {
        let mut firsts: Vec<u64> = self
            .waiting
            .lock()
            .unwrap()
            .iter()
            .map(|w| w.revisions[0])
            .collect();
        firsts.sort_unstable();
        firsts
    }

    /// Waits until the batches starting at `firsts` are all waiting.
    async fn wait_for(&self, firsts: &[u64]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let waiting = self.waiting();
            if firsts.iter().all(|f| waiting.contains(f)) {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, arrived).await.is_ok(),
                "timed out waiting for batches {firsts:?}; waiting: {waiting:?}"
            );
        }
    }

    /// Answers the waiting batch that starts at `first`.
    fn answer(&self, first: u64, outcome: ExportOutcome) {
        let mut waiting = self.waiting.lock().unwrap();
        let i = waiting
            .iter()
            .position(|w| w.revisions[0] == first)
            .unwrap_or_else(|| panic!("batch {first} is not waiting"));
        let w = waiting.remove(i);
        let _ = w.reply.send(outcome);
    }

    fn log(&self) -> Vec<Vec<u64>> {
        self.log.lock().unwrap().clone()
    }
}

/// How [`ByRule`] answers a request carrying these sequence numbers: after
/// how long, and what.
type Rule = dyn Fn(&[u64]) -> (Duration, ExportOutcome) + Send + Sync;

/// A transport that answers each request by a rule, after a delay.
#[derive(Clone)]
struct ByRule {
    rule: Arc<Rule>,
    log: Arc<Mutex<Vec<Vec<u64>>>>,
    held: Arc<Concurrency>,
}

impl ByRule {
    fn new(rule: impl Fn(&[u64]) -> (Duration, ExportOutcome) + Send + Sync + 'static) -> Self {
        Self {
            rule: Arc::new(rule),
            log: Arc::default(),
            held: Arc::default(),
        }
    }
}

impl Transport for ByRule {
    fn endpoint(&self) -> &str {
        "by-rule"
    }

    async fn export(&self, request: LogsRequest) -> ExportOutcome {
        let _held = self.held.enter();
        let revisions = revisions(&request);
        self.log.lock().unwrap().push(revisions.clone());
        let (delay, outcome) = (self.rule)(&revisions);
        tokio::time::sleep(delay).await;
        outcome
    }
}

fn config(max_batch_records: usize, max_in_flight: usize) -> SenderConfig {
    SenderConfig {
        max_batch_records,
        max_in_flight,
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..BackoffConfig::default()
        },
        idle_refresh: Duration::from_millis(100),
        ..SenderConfig::default()
    }
}

fn open_with(dir: &std::path::Path, records: std::ops::Range<u64>) -> Outbox {
    let outbox = Outbox::open(dir, small_config()).unwrap();
    for i in records {
        outbox
            .append(RecordKind::StateChange, &observed_bytes("h1", i))
            .unwrap();
    }
    outbox
}

/// The sequence number the consumer's cursor points at: every record
/// before it is committed.
fn committed(outbox: &Outbox) -> u64 {
    let stats = outbox.stats();
    stats.next_seq - stats.consumers[0].pending
}

fn start<T: Transport>(
    outbox: &Outbox,
    transport: T,
    config: SenderConfig,
) -> (CancellationToken, JoinHandle<sextant_exporters::Result<()>>) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sender::run(
        outbox.clone(),
        "default",
        transport,
        config,
        cancel.clone(),
    ));
    (cancel, task)
}

/// Lets the sender act on what it was just told, then checks that
/// nothing moved: answers it must not act on leave no trace either way.
/// On paused time: the clock jumps the 150 ms once every task is idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test(start_paused = true)]
async fn the_cursor_waits_for_an_earlier_batch_that_is_retried_and_a_restart_resends_only_what_follows()
 {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_with(dir.path(), 0..10);
    let peer = ByHand::default();
    let (cancel, task) = start(&outbox, peer.clone(), config(2, 4));

    // Four batches of two go out at once; the fifth waits for room.
    peer.wait_for(&[0, 2, 4, 6]).await;
    assert_eq!(peer.held.peak(), 4);
    assert_eq!(outbox.metrics().in_flight("default"), 4);

    // Batch 2 is accepted before batch 1: the cursor stays before batch 1.
    peer.answer(2, accepted());
    settle().await;
    assert_eq!(committed(&outbox), 0);
    assert_eq!(
        peer.waiting(),
        [0, 4, 6],
        "no new batch: the window is full"
    );

    // Batch 1 fails retryably, batch 3 is accepted: still nothing passes
    // batch 1, and nothing new is sent while it backs off.
    let failed_at = tokio::time::Instant::now();
    peer.answer(
        0,
        ExportOutcome::Retry {
            reason: FailureReason::Unavailable,
            retry_after: Some(Duration::from_millis(300)),
            detail: "scripted".to_owned(),
        },
    );
    peer.answer(4, accepted());
    settle().await;
    assert_eq!(committed(&outbox), 0);
    assert_eq!(peer.waiting(), [6]);

    // Batch 1 is sent again after the peer's Retry-After, alone.
    peer.wait_for(&[0]).await;
    assert!(failed_at.elapsed() >= Duration::from_millis(290));
    assert_eq!(peer.waiting(), [0, 6]);
    assert_eq!(committed(&outbox), 0);

    // Once it is accepted the cursor moves over batches 1–3 at once, and
    // the window refills with batch 5.
    peer.answer(0, accepted());
    let o = outbox.clone();
    eventually("the cursor to pass batch 3", WAIT, || async {
        committed(&o) == 6
    })
    .await;
    peer.wait_for(&[8]).await;
    let m = outbox.metrics();
    assert_eq!(m.delivered("default"), 6);
    assert_eq!(m.failures("default", "unavailable"), 1);

    // Batch 5 is accepted before batch 4, then the process "crashes":
    // the cursor stays before batch 4.
    peer.answer(8, accepted());
    settle().await;
    assert_eq!(committed(&outbox), 6);
    let mut log = peer.log();
    log[..4].sort();
    assert_eq!(
        log,
        [
            vec![0, 1],
            vec![2, 3],
            vec![4, 5],
            vec![6, 7],
            vec![0, 1],
            vec![8, 9]
        ]
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(outbox.metrics().in_flight("default"), 0);
    drop((o, outbox));

    // After the restart only batches 4 and 5 are sent again.
    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    assert_eq!(committed(&outbox), 6);
    let peer = ByRule::new(|_| (Duration::ZERO, accepted()));
    let (cancel, task) = start(&outbox, peer.clone(), config(2, 4));
    let o = outbox.clone();
    eventually("the outbox to drain", WAIT, || async {
        committed(&o) == 10
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    let mut resent = peer.log.lock().unwrap().clone();
    resent.sort();
    assert_eq!(resent, [vec![6, 7], vec![8, 9]]);
    assert_eq!(outbox.metrics().delivered("default"), 4);
}

#[tokio::test(start_paused = true)]
async fn nothing_new_is_sent_while_a_failed_batch_backs_off() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_with(dir.path(), 0..2);
    let peer = ByHand::default();
    let (cancel, task) = start(&outbox, peer.clone(), config(2, 4));
    peer.wait_for(&[0]).await;
    peer.answer(
        0,
        ExportOutcome::Retry {
            reason: FailureReason::Throttled,
            retry_after: Some(Duration::from_millis(1000)),
            detail: "scripted".to_owned(),
        },
    );
    settle().await;
    // Records appended during the backoff wait, though the window has room.
    for i in 2..6 {
        outbox
            .append(RecordKind::StateChange, &observed_bytes("h1", i))
            .unwrap();
    }
    settle().await;
    assert_eq!(peer.log(), [vec![0, 1]]);
    // After the delay the failed batch goes alone, and only its success
    // opens the window again.
    peer.wait_for(&[0]).await;
    settle().await;
    assert_eq!(peer.waiting(), [0]);
    peer.answer(0, accepted());
    peer.wait_for(&[2, 4]).await;
    peer.answer(4, accepted());
    peer.answer(2, accepted());
    let o = outbox.clone();
    eventually("the outbox to drain", WAIT, || async { committed(&o) == 6 }).await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(outbox.metrics().failures("default", "throttled"), 1);
    assert_eq!(outbox.metrics().delivered("default"), 6);
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_bounds_the_requests_held_at_once() {
    init_tracing();
    for (max_in_flight, expected) in [(4, 4), (1, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open_with(dir.path(), 0..40);
        let peer = ByRule::new(|_| (Duration::from_millis(30), accepted()));
        let (cancel, task) = start(&outbox, peer.clone(), config(2, max_in_flight));
        let o = outbox.clone();
        eventually("the outbox to drain", WAIT, || async {
            committed(&o) == 40
        })
        .await;
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(peer.held.peak(), expected, "max_in_flight {max_in_flight}");
        // Each batch once, read in order.
        let log = peer.log.lock().unwrap().clone();
        let firsts: Vec<u64> = log.iter().map(|b| b[0]).collect();
        assert_eq!(firsts, (0..40).step_by(2).collect::<Vec<_>>());
        assert_eq!(outbox.metrics().delivered("default"), 40);
        assert_eq!(outbox.metrics().in_flight("default"), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_split_or_a_refusal_in_the_middle_of_the_window_keeps_every_record_once_counted() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_with(dir.path(), 0..16);
    // Batch [4..8) is too large once; batch [0..4) answers last; the
    // record 12 is refused as malformed in whatever batch carries it.
    let split = Arc::new(AtomicUsize::new(0));
    let peer = ByRule::new(move |batch| {
        if batch.len() == 4 && batch[0] == 4 && split.fetch_add(1, Ordering::SeqCst) == 0 {
            return (
                Duration::from_millis(20),
                ExportOutcome::Refused {
                    reason: FailureReason::TooLarge,
                    detail: "scripted".to_owned(),
                },
            );
        }
        if batch.contains(&12) {
            return (
                Duration::from_millis(10),
                ExportOutcome::Refused {
                    reason: FailureReason::BadRequest,
                    detail: "scripted".to_owned(),
                },
            );
        }
        let delay = if batch[0] == 0 { 200 } else { 40 };
        (Duration::from_millis(delay), accepted())
    });
    let (cancel, task) = start(&outbox, peer.clone(), config(4, 3));
    let o = outbox.clone();
    eventually("the outbox to drain", WAIT, || async {
        committed(&o) == 16
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();

    let log = peer.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|b| b.len() < 4 && b[0] == 4),
        "split: {log:?}"
    );
    let m = outbox.metrics();
    assert_eq!(m.failures("default", "too_large"), 1);
    assert_eq!(m.failures("default", "bad_request"), 1);
    let refused = log.iter().find(|b| b.contains(&12)).unwrap().len() as u64;
    assert_eq!(m.dropped(DropReason::BadRequest), refused);
    assert_eq!(m.dropped(DropReason::TooLarge), 0);
    // Counted when committed, so a request cancelled by the split is not.
    assert_eq!(m.delivered("default"), 16 - refused);
}
