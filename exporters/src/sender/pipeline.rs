//! One sender's pipeline: the batches read and not yet committed, in
//! outbox order, several of them exported at once.
//!
//! The window holds at most `max_in_flight` batches. Each is *ready* (read,
//! or failed and waiting to be sent again), *in flight*, or *settled*
//! (accepted, or refused and dropped). The settled batches at the front are
//! committed — counted, and the cursor written once past all of them — so
//! the cursor never passes a batch that is not settled, whatever order the
//! answers come in.
//!
//! A retryable failure of a request sent under the current conditions
//! starts a backoff: nothing is sent until it has passed, then only the
//! first ready batch, alone, as a probe. An answer to the probe (or to any
//! request sent after the failure) other than another retryable failure
//! ends the backoff, and the window fills again. Requests already in flight
//! when the backoff started finish on their own; if they fail too, their
//! batches only wait to be sent again, without growing the backoff: one
//! outage is one run of failures, however many requests it caught. The
//! "current conditions" are an epoch number, bumped at each backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{ExportOutcome, FailureReason, LogsRequest, SenderConfig, Transport};
use crate::error::Result;
use crate::metrics::{DropReason, OutboxMetrics};
use crate::outbox::{Batch, Outbox};

/// Where a batch of the window is.
enum State {
    /// Read, or failed retryably: to be sent.
    Ready,
    /// Sent with the epoch current then; `abort` cancels the request.
    InFlight { epoch: u64, abort: AbortHandle },
    /// Answered for good: committed once every earlier batch is too.
    Settled(Settled),
}

#[derive(Debug, Clone, Copy)]
enum Settled {
    /// Accepted; `rejected` of its log records were refused in
    /// `partial_success`.
    Delivered {
        rejected: u64,
    },
    Dropped(DropReason),
    /// Only corrupt records were skipped: nothing to send, but the cursor
    /// moves past them.
    Skipped,
}

struct Slot {
    id: u64,
    batch: Batch,
    /// The batch limit it was read with: its success grows the limit only
    /// if it was read under the current one (not before a split).
    limit: usize,
    state: State,
}

/// Sending paused: backing off after a retryable failure.
struct Paused {
    /// Nothing is sent before this.
    until: Instant,
    /// The single batch sent after `until`, while its answer is awaited.
    probe: Option<u64>,
}

type Answer = (u64, ExportOutcome);

pub(super) struct Pipeline<T> {
    outbox: Outbox,
    consumer: String,
    endpoint: String,
    transport: Arc<T>,
    config: SenderConfig,
    metrics: OutboxMetrics,
    attempts: IntCounter,
    delivered: IntCounter,
    in_flight_gauge: IntGauge,
    window: VecDeque<Slot>,
    tasks: JoinSet<Answer>,
    in_flight: usize,
    next_id: u64,
    max_in_flight: usize,
    max_records: usize,
    /// Records per batch; lowered while the peer refuses batches as too
    /// large.
    limit: usize,
    backoff: Backoff,
    epoch: u64,
    paused: Option<Paused>,
    /// The last read found nothing new: wait for an append.
    caught_up: bool,
}

impl<T: Transport> Pipeline<T> {
    pub fn new(outbox: Outbox, consumer: String, transport: T, config: SenderConfig) -> Self {
        let metrics = outbox.metrics().clone();
        let attempts = metrics.attempts.with_label_values(&[consumer.as_str()]);
        let delivered = metrics.delivered.with_label_values(&[consumer.as_str()]);
        let in_flight_gauge = metrics.in_flight.with_label_values(&[consumer.as_str()]);
        let max_records = config.max_batch_records.max(1);
        Self {
            endpoint: transport.endpoint().to_owned(),
            transport: Arc::new(transport),
            backoff: Backoff::new(config.backoff),
            max_in_flight: config.max_in_flight.max(1),
            max_records,
            limit: max_records,
            outbox,
            consumer,
            config,
            metrics,
            attempts,
            delivered,
            in_flight_gauge,
            window: VecDeque::new(),
            tasks: JoinSet::new(),
            in_flight: 0,
            next_id: 0,
            epoch: 0,
            paused: None,
            caught_up: false,
        }
    }

    /// Runs until `cancel` fires (`Ok`) or the outbox fails.
    pub async fn run(&mut self, cancel: &CancellationToken) -> Result<()> {
        let outbox = self.outbox.clone();
        let every = self.config.idle_refresh.max(Duration::from_millis(1));
        let mut refresh = tokio::time::interval_at(Instant::now() + every, every);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // Enabled before reading, so an append made meanwhile wakes us.
            let appended = outbox.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            self.commit()?;
            self.launch()?;
            // Batches holding only skipped records are settled at once.
            self.commit()?;
            let idle = self.caught_up && self.window.is_empty();
            let resume = self
                .paused
                .as_ref()
                .filter(|b| b.probe.is_none())
                .map(|b| b.until);
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.answer(joined);
                }
                () = tokio::time::sleep_until(resume.unwrap_or_else(Instant::now)),
                    if resume.is_some() => {}
                () = &mut appended, if self.caught_up => {}
                _ = refresh.tick() => {
                    // When idle, every wake-up refreshes them anyway.
                    if !idle {
                        outbox.refresh_metrics();
                    }
                }
            }
        }
    }

    /// Cancels the requests in flight (their batches stay after the
    /// cursor, to be sent again by the next run).
    pub fn stop(&mut self) {
        self.tasks.abort_all();
        self.in_flight = 0;
        self.in_flight_gauge.set(0);
    }

    /// Sends what may be sent now: the probe while backing off; otherwise
    /// the ready batches, then new ones until the window is full.
    fn launch(&mut self) -> Result<()> {
        self.caught_up = false;
        if let Some(b) = &self.paused {
            if b.probe.is_some() || Instant::now() < b.until {
                return Ok(());
            }
            match self.first_ready() {
                Some(i) => {
                    let id = self.send(i);
                    if let Some(b) = &mut self.paused {
                        b.probe = Some(id);
                    }
                    return Ok(());
                }
                // What failed is gone (split after a "too large").
                None => self.paused = None,
            }
        }
        for i in 0..self.window.len() {
            if matches!(self.window[i].state, State::Ready) {
                self.send(i);
            }
        }
        while self.window.len() < self.max_in_flight {
            let batch = match self.window.back() {
                Some(last) => self.outbox.read_batch_after(
                    &self.consumer,
                    &last.batch,
                    self.limit,
                    self.config.max_batch_bytes,
                )?,
                None => self.outbox.read_batch(
                    &self.consumer,
                    self.limit,
                    self.config.max_batch_bytes,
                )?,
            };
            if batch.is_empty() && !batch.moves() {
                self.caught_up = true;
                if self.window.is_empty() {
                    self.outbox.refresh_metrics();
                }
                break;
            }
            let to_send = !batch.is_empty();
            self.window.push_back(Slot {
                id: self.next_id,
                batch,
                limit: self.limit,
                state: if to_send {
                    State::Ready
                } else {
                    State::Settled(Settled::Skipped)
                },
            });
            self.next_id += 1;
            if to_send {
                self.send(self.window.len() - 1);
            }
        }
        Ok(())
    }

    fn first_ready(&self) -> Option<usize> {
        self.window
            .iter()
            .position(|s| matches!(s.state, State::Ready))
    }

    /// Exports the batch at `i` on its own task; returns its id.
    fn send(&mut self, i: usize) -> u64 {
        let slot = &mut self.window[i];
        let request = LogsRequest {
            body: slot.batch.encode_logs_request(),
            records: slot.batch.len(),
        };
        let id = slot.id;
        let transport = Arc::clone(&self.transport);
        let abort = self
            .tasks
            .spawn(async move { (id, transport.export(request).await) });
        slot.state = State::InFlight {
            epoch: self.epoch,
            abort,
        };
        self.attempts.inc();
        self.set_in_flight(self.in_flight + 1);
        id
    }

    fn set_in_flight(&mut self, n: usize) {
        self.in_flight = n;
        self.in_flight_gauge
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Acts on the answer to one request.
    fn answer(&mut self, joined: std::result::Result<Answer, JoinError>) {
        let (id, outcome) = match joined {
            Ok(answer) => answer,
            // Transports never panic; if one does, so does the sender, as
            // it did when it awaited the export itself.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: its batch was discarded.
            Err(_) => return,
        };
        let Some((i, epoch)) = self.take_in_flight(id) else {
            return;
        };
        // Sent after the last backoff started: says how the peer is now.
        let current = epoch == self.epoch;
        match outcome {
            ExportOutcome::Accepted { rejected, message } => {
                self.delivered(i, current, rejected, message);
            }
            ExportOutcome::Retry {
                reason,
                retry_after,
                detail,
            } => self.retry_later(i, current, reason, retry_after, detail),
            ExportOutcome::Refused {
                reason: FailureReason::TooLarge,
                detail,
            } if self.window[i].batch.len() > 1 => self.split_too_large(i, current, detail),
            ExportOutcome::Refused { reason, detail } => {
                self.drop_refused(i, current, reason, detail)
            }
        }
    }

    /// The window's slot of the request `id`, no longer in flight, with the
    /// backoff epoch it was sent in; `None` for an answer that raced its own
    /// cancellation (discarded too) or a slot not in flight.
    fn take_in_flight(&mut self, id: u64) -> Option<(usize, u64)> {
        let i = self.window.iter().position(|s| s.id == id)?;
        let epoch = match std::mem::replace(&mut self.window[i].state, State::Ready) {
            State::InFlight { epoch, .. } => epoch,
            other => {
                self.window[i].state = other;
                return None;
            }
        };
        self.set_in_flight(self.in_flight.saturating_sub(1));
        if let Some(b) = &mut self.paused
            && b.probe == Some(id)
        {
            b.probe = None;
        }
        Some((i, epoch))
    }

    /// The size of batch `i` and its first sequence number, for the logs.
    fn batch_span(&self, i: usize) -> (usize, u64) {
        let batch = &self.window[i].batch;
        (batch.len(), batch.records.first().map_or(0, |r| r.seq))
    }

    /// Batch `i` was accepted (perhaps partly): settled, the limit grows
    /// back, and a current answer ends the backoff.
    fn delivered(&mut self, i: usize, current: bool, rejected: u64, message: Option<String>) {
        if rejected > 0 || message.is_some() {
            tracing::warn!(
                consumer = self.consumer.as_str(),
                endpoint = self.endpoint.as_str(),
                rejected,
                detail = message.as_deref().unwrap_or(""),
                "Export partially rejected; rejected records are dropped"
            );
        }
        self.window[i].state = State::Settled(Settled::Delivered { rejected });
        if self.window[i].limit <= self.limit {
            self.limit = (self.limit * 2).min(self.max_records);
        }
        if current {
            self.backoff.reset();
            self.paused = None;
        }
    }

    /// Batch `i` failed for now: it stays, ready to be sent again, and a
    /// current answer starts the next backoff.
    fn retry_later(
        &mut self,
        i: usize,
        current: bool,
        reason: FailureReason,
        retry_after: Option<Duration>,
        detail: String,
    ) {
        let consumer = self.consumer.as_str();
        let endpoint = self.endpoint.as_str();
        let (n, first_seq) = self.batch_span(i);
        self.count_failure(reason);
        // The batch stays where it is, ready to be sent again.
        if current {
            let delay = self.backoff.next(retry_after);
            self.epoch += 1;
            self.paused = Some(Paused {
                until: Instant::now() + delay,
                probe: None,
            });
            tracing::warn!(
                consumer,
                endpoint,
                reason = reason.as_str(),
                error = detail,
                retry_in_ms = delay.as_millis() as u64,
                records = n,
                first_seq,
                "Export failed; will retry"
            );
        } else {
            tracing::warn!(
                consumer,
                endpoint,
                reason = reason.as_str(),
                error = detail,
                records = n,
                first_seq,
                "Export failed; will retry after the current backoff"
            );
        }
    }

    /// Batch `i` (more than one record) was refused as too large: the
    /// limit halves and the window is read again from it.
    fn split_too_large(&mut self, i: usize, current: bool, detail: String) {
        let (n, _) = self.batch_span(i);
        self.count_failure(FailureReason::TooLarge);
        self.limit = (n / 2).max(1);
        tracing::warn!(
            consumer = self.consumer.as_str(),
            endpoint = self.endpoint.as_str(),
            error = detail,
            records = n,
            next = self.limit,
            "Export refused as too large; splitting the batch"
        );
        // Read again from this batch on with the smaller limit; the
        // batches after it are sent again as read then.
        self.discard_from(i);
        if current {
            self.paused = None;
        }
    }

    /// Batch `i` was refused for good: counted, logged and dropped.
    fn drop_refused(&mut self, i: usize, current: bool, reason: FailureReason, detail: String) {
        let (n, first_seq) = self.batch_span(i);
        self.count_failure(reason);
        let drop = match reason {
            FailureReason::BadRequest => DropReason::BadRequest,
            FailureReason::TooLarge => DropReason::TooLarge,
            _ => DropReason::Refused,
        };
        tracing::error!(
            consumer = self.consumer.as_str(),
            endpoint = self.endpoint.as_str(),
            reason = reason.as_str(),
            error = detail,
            records = n,
            first_seq,
            "Export refused; batch dropped"
        );
        self.window[i].state = State::Settled(Settled::Dropped(drop));
        if current {
            self.backoff.reset();
            self.paused = None;
        }
    }

    fn count_failure(&self, reason: FailureReason) {
        self.metrics
            .failures
            .with_label_values(&[self.consumer.as_str(), reason.as_str()])
            .inc();
    }

    /// Forgets the batches from `i` on, cancelling their requests; the
    /// next read starts where batch `i` did.
    fn discard_from(&mut self, i: usize) {
        let mut cancelled = 0;
        for slot in self.window.drain(i..) {
            if let State::InFlight { abort, .. } = slot.state {
                abort.abort();
                cancelled += 1;
                if let Some(b) = &mut self.paused
                    && b.probe == Some(slot.id)
                {
                    b.probe = None;
                }
            }
        }
        self.set_in_flight(self.in_flight.saturating_sub(cancelled));
    }

    /// Commits the settled batches at the front of the window: counts
    /// them, then moves the cursor past all of them with one write.
    fn commit(&mut self) -> Result<()> {
        let settled = self
            .window
            .iter()
            .take_while(|s| matches!(s.state, State::Settled(_)))
            .count();
        let (Some(first), Some(last)) = (
            self.window.front(),
            settled.checked_sub(1).and_then(|j| self.window.get(j)),
        ) else {
            return Ok(());
        };
        let span = first.batch.through(&last.batch);
        let consumer = self.consumer.as_str();
        for slot in self.window.drain(..settled) {
            let n = slot.batch.len() as u64;
            match slot.state {
                State::Settled(Settled::Delivered { rejected }) => {
                    self.delivered.inc_by(n);
                    self.metrics
                        .drop_records(consumer, DropReason::Rejected, rejected);
                }
                State::Settled(Settled::Dropped(reason)) => {
                    self.metrics.drop_records(consumer, reason, n);
                }
                State::Settled(Settled::Skipped) | State::Ready | State::InFlight { .. } => {}
            }
        }
        self.outbox.ack(consumer, &span)
    }
}
