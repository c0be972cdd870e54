//! The durable outbox: an on-disk FIFO of `(kind, payload)` records in
//! size-capped segment files, with one cursor per consumer. See
//! `docs/outbox.md` for the format, the fsync policy and the size cap.

mod config;
pub(crate) mod format;
mod read;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

pub use config::{FsyncPolicy, OutboxConfig};
use format::{SEGMENT_HEADER, record_size};

use crate::error::{OutboxError, Result};
use crate::metrics::{DropReason, NO_CONSUMER, OutboxMetrics};

/// What a record says, which decides what is dropped first when the queue
/// is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A change of deployment state: kept up to the full size cap.
    StateChange,
    /// A periodic re-report of unchanged state: refused above the
    /// heartbeat high-water mark.
    Heartbeat,
}

impl RecordKind {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Self::StateChange => 1,
            Self::Heartbeat => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::StateChange),
            2 => Some(Self::Heartbeat),
            _ => None,
        }
    }

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateChange => "state_change",
            Self::Heartbeat => "heartbeat",
        }
    }
}

/// What became of an appended record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written to the active segment (in the page cache, synced per the
    /// fsync policy) with this sequence number.
    Stored { seq: u64 },
    /// Refused because the queue is full; counted in the drop metrics.
    Dropped(DropReason),
}

/// One record read back from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the outbox, increasing in append order.
    pub seq: u64,
    pub kind: RecordKind,
    /// When it was appended, in nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    pub payload: Bytes,
}

/// A consumer's position: the next record to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub segment: u64,
    pub offset: u64,
    pub next_seq: u64,
}

/// Records read for one consumer, in order; [`Outbox::ack`] moves the
/// consumer past them.
#[derive(Debug, Clone)]
pub struct Batch {
    pub records: Vec<Record>,
    pub(crate) start: Cursor,
    pub(crate) next: Cursor,
}

impl Batch {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Sum of the payload sizes.
    pub fn payload_bytes(&self) -> usize {
        self.records.iter().map(|r| r.payload.len()).sum()
    }

    /// True when reading it moved past records (skipped corrupt ones) even
    /// if it holds none: acknowledging it still moves the cursor.
    pub(crate) fn moves(&self) -> bool {
        self.next != self.start
    }

    /// A batch without records spanning `self` through `last` (read after
    /// it), to acknowledge a run of batches with one cursor write.
    pub(crate) fn through(&self, last: &Batch) -> Batch {
        Batch {
            records: Vec::new(),
            start: self.start,
            next: last.next,
        }
    }

    /// The protobuf encoding of an `ExportLogsServiceRequest` whose
    /// `resource_logs` are the payloads, each an encoded `ResourceLogs`.
    /// Field 1 repeated is just the concatenation of `tag, length, bytes`,
    /// so nothing is decoded.
    pub fn encode_logs_request(&self) -> Bytes {
        let mut body = Vec::with_capacity(self.payload_bytes() + 6 * self.records.len());
        for r in &self.records {
            body.push(0x0a); // field 1, length-delimited
            prost::encoding::encode_varint(r.payload.len() as u64, &mut body);
            body.extend_from_slice(&r.payload);
        }
        Bytes::from(body)
    }
}

/// A consumer's backlog.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerStats {
    pub name: String,
    /// Records appended and not yet acknowledged by this consumer.
    pub pending: u64,
    /// Age of the oldest pending record.
    pub oldest_age: Option<Duration>,
}

/// A snapshot of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxStats {
    /// Bytes of segment files on disk.
    pub bytes: u64,
    pub segments: usize,
    /// The sequence number the next record will get.
    pub next_seq: u64,
    pub consumers: Vec<ConsumerStats>,
}

#[derive(Debug, Clone)]
struct Segment {
    base_seq: u64,
    /// Sequence numbers this segment spans (good, corrupt and lost records).
    slots: u64,
    /// End of the readable records.
    end: u64,
    /// File size.
    size: u64,
}

struct State {
    segments: BTreeMap<u64, Segment>,
    active_id: u64,
    active: Arc<File>,
    next_seq: u64,
    total_bytes: u64,
    cursors: HashMap<String, Cursor>,
    /// Written since the last sync: the active file, sealed files, the folder.
    dirty: bool,
    unsynced: Vec<Arc<File>>,
    dir_dirty: bool,
}

struct Shared {
    dir: PathBuf,
    config: OutboxConfig,
    state: Mutex<State>,
    notify: Notify,
    metrics: OutboxMetrics,
    _lock: File,
}

/// The durable outbox. Cheap to clone; clones share one queue. Appends are
/// synchronous file writes (page cache speed; an `fdatasync` with
/// [`FsyncPolicy::Always`]).
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn cursor_path(dir: &Path, consumer: &str) -> PathBuf {
    dir.join(format!("cursor-{consumer}"))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(OutboxError::io(dir))
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`: validates every segment,
    /// truncates a torn tail, skips corrupt records, and loads the cursors.
    /// Its metrics are registered nowhere; see [`Outbox::metrics`].
    pub fn open(dir: impl AsRef<Path>, config: OutboxConfig) -> Result<Self> {
        Self::open_with_metrics(dir, config, OutboxMetrics::new())
    }

    /// Like [`Outbox::open`], counting into `metrics`.
    pub fn open_with_metrics(
        dir: impl AsRef<Path>,
        config: OutboxConfig,
        metrics: OutboxMetrics,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(OutboxError::io(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(OutboxError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OutboxError::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(OutboxError::io(&lock_path)(e)),
        }

        let (segments, active_id) = recover_segments(&dir, &config, &metrics)?;
        let active_path = segment_path(&dir, active_id);
        let active = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(OutboxError::io(&active_path))?;
        let next_seq = segments
            .get(&active_id)
            .map(|s| s.base_seq + s.slots)
            .unwrap_or(0);
        let total_bytes = segments.values().map(|s| s.size).sum();
        let cursors = load_cursors(&dir, &config, &segments)?;

        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(State {
                segments,
                active_id,
                active: Arc::new(active),
                next_seq,
                total_bytes,
                cursors,
                dirty: false,
                unsynced: Vec::new(),
                dir_dirty: false,
            }),
            notify: Notify::new(),
            metrics,
            _lock: lock,
            config,
        });
        let outbox = Self { shared };
        {
            let mut state = outbox.lock();
            outbox.collect_garbage(&mut state)?;
        }
        if let FsyncPolicy::Interval(every) = outbox.shared.config.fsync {
            spawn_syncer(Arc::downgrade(&outbox.shared), every)?;
        }
        outbox.refresh_metrics();
        Ok(outbox)
    }

    /// The outbox's metrics, to register in the process's registry.
    pub fn metrics(&self) -> &OutboxMetrics {
        &self.shared.metrics
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &OutboxConfig {
        &self.shared.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as
        // the files (every update follows a completed write), so go on.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one record. See [`Outbox::append_batch`].
    pub fn append(&self, kind: RecordKind, payload: &[u8]) -> Result<AppendOutcome> {
        let mut outcomes = self.append_batch(&[(kind, payload)])?;
        outcomes
            .pop()
            .ok_or_else(|| OutboxError::Config("append produced no outcome".to_owned()))
    }

    /// Appends records in order with one write per segment touched (and one
    /// `fdatasync` with [`FsyncPolicy::Always`]). A record over the cap for
    /// its kind is dropped and counted, the others are still stored. On an
    /// I/O error, records before a segment switch may already be stored.
    pub fn append_batch(&self, records: &[(RecordKind, &[u8])]) -> Result<Vec<AppendOutcome>> {
        let config = &self.shared.config;
        if let Some((_, p)) = records
            .iter()
            .find(|(_, p)| p.len() > config.max_record_bytes)
        {
            return Err(OutboxError::RecordTooLarge {
                size: p.len(),
                max: config.max_record_bytes,
            });
        }
        let time = now_nanos();
        let heartbeat_limit = config.heartbeat_limit();
        let mut outcomes = Vec::with_capacity(records.len());
        let mut buf = Vec::new();
        let mut buffered = 0u64;
        let mut state = self.lock();
        for &(kind, payload) in records {
            let size = record_size(payload.len()) as u64;
            let active_size = state.segments.get(&state.active_id).map_or(0, |s| s.size);
            let in_segment = active_size + buf.len() as u64;
            let rotate =
                in_segment + size > config.segment_bytes && in_segment > SEGMENT_HEADER as u64;
            let needed = state.total_bytes
                + buf.len() as u64
                + size
                + if rotate { SEGMENT_HEADER as u64 } else { 0 };
            let (limit, reason) = match kind {
                RecordKind::StateChange => (config.max_bytes, DropReason::Full),
                RecordKind::Heartbeat => (heartbeat_limit, DropReason::HeartbeatFull),
            };
            if needed > limit {
                self.shared.metrics.drop_records(NO_CONSUMER, reason, 1);
                outcomes.push(AppendOutcome::Dropped(reason));
                continue;
            }
            if rotate {
                self.write_buffered(&mut state, &mut buf, &mut buffered)?;
                self.rotate(&mut state)?;
            }
            format::encode_record(&mut buf, kind, time, payload);
            outcomes.push(AppendOutcome::Stored {
                seq: state.next_seq + buffered,
            });
            buffered += 1;
            self.shared
                .metrics
                .appends
                .with_label_values(&[kind.as_str()])
                .inc();
        }
        self.write_buffered(&mut state, &mut buf, &mut buffered)?;
        if config.fsync == FsyncPolicy::Always {
            self.sync_locked(&mut state)?;
        }
        self.update_gauges(&state);
        drop(state);
        self.shared.notify.notify_waiters();
        Ok(outcomes)
    }

    fn write_buffered(&self, state: &mut State, buf: &mut Vec<u8>, n: &mut u64) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = segment_path(&self.shared.dir, state.active_id);
        let size_before = state.segments.get(&state.active_id).map_or(0, |s| s.size);
        if let Err(e) = (&*state.active).write_all(buf) {
            // Leave no partial record behind for the next append to follow.
            let _ = state.active.set_len(size_before);
            buf.clear();
            *n = 0;
            return Err(OutboxError::io(path)(e));
        }
        let len = buf.len() as u64;
        if let Some(seg) = state.segments.get_mut(&state.active_id) {
            seg.size += len;
            seg.end += len;
            seg.slots += *n;
        }
        state.total_bytes += len;
        state.next_seq += *n;
        state.dirty = true;
        buf.clear();
        *n = 0;
        Ok(())
    }

    /// Seals the active segment and starts the next one.
    fn rotate(&self, state: &mut State) -> Result<()> {
        let id = state.active_id + 1;
        let path = segment_path(&self.shared.dir, id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(OutboxError::io(&path))?;
        file.write_all(&format::encode_segment_header(state.next_seq))
            .map_err(OutboxError::io(&path))?;
        let old = std::mem::replace(&mut state.active, Arc::new(file));
        if state.dirty {
            state.unsynced.push(old);
        }
        state.segments.insert(
            id,
            Segment {
                base_seq: state.next_seq,
                slots: 0,
                end: SEGMENT_HEADER as u64,
                size: SEGMENT_HEADER as u64,
            },
        );
        state.active_id = id;
        state.total_bytes += SEGMENT_HEADER as u64;
        state.dirty = true;
        state.dir_dirty = true;
        Ok(())
    }

    fn sync_locked(&self, state: &mut State) -> Result<()> {
        for f in state.unsynced.drain(..) {
            f.sync_data().map_err(OutboxError::io(&self.shared.dir))?;
        }
        if state.dirty {
            state
                .active
                .sync_data()
                .map_err(OutboxError::io(&self.shared.dir))?;
            state.dirty = false;
        }
        if state.dir_dirty {
            sync_dir(&self.shared.dir)?;
            state.dir_dirty = false;
        }
        Ok(())
    }

    /// Forces everything written so far to stable storage, whatever the
    /// policy (for example before a planned shutdown).
    pub fn sync(&self) -> Result<()> {
        let mut state = self.lock();
        self.sync_locked(&mut state)
    }

    /// Reads the next records for `consumer`: at most `max_records`, and
    /// at most `max_bytes` of payload unless a single record is larger.
    /// Records with a bad checksum are skipped (they were counted at open).
    pub fn read_batch(
        &self,
        consumer: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch> {
        self.read_batch_from(consumer, None, max_records, max_bytes)
    }

    /// Reads the records that follow `prev`, a batch read earlier for
    /// `consumer` and not yet acknowledged, so that several batches can be
    /// in flight at once; the limits are those of [`Outbox::read_batch`].
    /// Acknowledge the batches in the order they were read: the cursor
    /// only ever moves past what is acknowledged.
    pub fn read_batch_after(
        &self,
        consumer: &str,
        prev: &Batch,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch> {
        self.read_batch_from(consumer, Some(prev.next), max_records, max_bytes)
    }

    fn read_batch_from(
        &self,
        consumer: &str,
        from: Option<Cursor>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch> {
        let (start, snapshot) = {
            let state = self.lock();
            let cursor = *state
                .cursors
                .get(consumer)
                .ok_or_else(|| OutboxError::UnknownConsumer(consumer.to_owned()))?;
            // Never behind the cursor: segments before it may be deleted.
            let start = match from {
                Some(c) if c.next_seq >= cursor.next_seq && c.segment >= cursor.segment => c,
                _ => cursor,
            };
            let snapshot: Vec<read::SegmentView> = state
                .segments
                .range(start.segment..)
                .map(|(&id, s)| read::SegmentView {
                    id,
                    base_seq: s.base_seq,
                    slots: s.slots,
                    end: s.end,
                    sealed: id != state.active_id,
                })
                .collect();
            (start, snapshot)
        };
        let mut reader = read::Reader {
            dir: &self.shared.dir,
            max_len: format::RECORD_META + self.shared.config.max_record_bytes,
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            records: Vec::new(),
            bytes: 0,
        };
        let next = reader.read(start, &snapshot)?;
        Ok(Batch {
            records: reader.records,
            start,
            next,
        })
    }

    /// Moves `consumer` past `batch` and persists its cursor (temp file and
    /// rename), then deletes the segments every consumer has passed.
    pub fn ack(&self, consumer: &str, batch: &Batch) -> Result<()> {
        let mut state = self.lock();
        let current = *state
            .cursors
            .get(consumer)
            .ok_or_else(|| OutboxError::UnknownConsumer(consumer.to_owned()))?;
        if batch.next.next_seq <= current.next_seq && batch.next.segment <= current.segment {
            return Ok(());
        }
        if current != batch.start {
            tracing::warn!(
                consumer,
                "Outbox ack of a batch that does not start at the cursor"
            );
        }
        self.write_cursor(consumer, batch.next)?;
        state.cursors.insert(consumer.to_owned(), batch.next);
        self.collect_garbage(&mut state)?;
        self.update_gauges(&state);
        Ok(())
    }

    fn write_cursor(&self, consumer: &str, cursor: Cursor) -> Result<()> {
        let path = cursor_path(&self.shared.dir, consumer);
        let tmp = path.with_extension("tmp");
        let text = format!(
            "1 {} {} {}\n",
            cursor.segment, cursor.offset, cursor.next_seq
        );
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            if self.shared.config.fsync == FsyncPolicy::Always {
                f.sync_data()?;
            }
            std::fs::rename(&tmp, &path)
        };
        write().map_err(OutboxError::io(&path))
    }

    /// Deletes sealed segments that every consumer has passed.
    fn collect_garbage(&self, state: &mut State) -> Result<()> {
        let Some(min) = state.cursors.values().map(|c| c.segment).min() else {
            return Ok(());
        };
        let done: Vec<u64> = state
            .segments
            .range(..min)
            .map(|(&id, _)| id)
            .filter(|&id| id != state.active_id)
            .collect();
        for id in done {
            let path = segment_path(&self.shared.dir, id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OutboxError::io(path)(e)),
            }
            if let Some(seg) = state.segments.remove(&id) {
                state.total_bytes = state.total_bytes.saturating_sub(seg.size);
            }
            state.dir_dirty = true;
        }
        Ok(())
    }

    /// A snapshot of sizes and backlogs; reads one record header per
    /// consumer for the oldest age.
    pub fn stats(&self) -> OutboxStats {
        let (bytes, segments, next_seq, cursors, views) = {
            let state = self.lock();
            let views: BTreeMap<u64, (u64, u64)> = state
                .segments
                .iter()
                .map(|(&id, s)| (id, (s.end, s.base_seq + s.slots)))
                .collect();
            let mut cursors: Vec<(String, Cursor)> =
                state.cursors.iter().map(|(k, v)| (k.clone(), *v)).collect();
            cursors.sort_by(|a, b| a.0.cmp(&b.0));
            (
                state.total_bytes,
                state.segments.len(),
                state.next_seq,
                cursors,
                views,
            )
        };
        let now = now_nanos();
        let consumers = cursors
            .into_iter()
            .map(|(name, c)| {
                let pending = next_seq.saturating_sub(c.next_seq);
                let oldest_age = (pending > 0)
                    .then(|| self.time_at(c, &views))
                    .flatten()
                    .map(|t| Duration::from_nanos(now.saturating_sub(t)));
                ConsumerStats {
                    name,
                    pending,
                    oldest_age,
                }
            })
            .collect();
        OutboxStats {
            bytes,
            segments,
            next_seq,
            consumers,
        }
    }

    /// The append time of the record at `cursor` (or the first after it).
    fn time_at(&self, cursor: Cursor, views: &BTreeMap<u64, (u64, u64)>) -> Option<u64> {
        for (&id, &(end, _)) in views.range(cursor.segment..) {
            let offset = if id == cursor.segment {
                cursor.offset
            } else {
                SEGMENT_HEADER as u64
            };
            if offset >= end {
                continue;
            }
            let file = File::open(segment_path(&self.shared.dir, id)).ok()?;
            let mut head = [0u8; format::RECORD_PREFIX + format::RECORD_META];
            file.read_exact_at(&mut head, offset).ok()?;
            let mut time = [0u8; 8];
            time.copy_from_slice(&head[format::RECORD_PREFIX + 1..]);
            return Some(u64::from_le_bytes(time));
        }
        None
    }

    /// Sets the gauges (depth, bytes, oldest age) from a fresh snapshot.
    pub fn refresh_metrics(&self) -> OutboxStats {
        let stats = self.stats();
        let m = &self.shared.metrics;
        m.bytes.set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        m.segments
            .set(i64::try_from(stats.segments).unwrap_or(i64::MAX));
        for c in &stats.consumers {
            m.records
                .with_label_values(&[c.name.as_str()])
                .set(i64::try_from(c.pending).unwrap_or(i64::MAX));
            m.oldest_age
                .with_label_values(&[c.name.as_str()])
                .set(c.oldest_age.map_or(0, |a| a.as_secs() as i64));
        }
        stats
    }

    /// Cheap gauge updates done on every append and ack.
    fn update_gauges(&self, state: &State) {
        let m = &self.shared.metrics;
        m.bytes
            .set(i64::try_from(state.total_bytes).unwrap_or(i64::MAX));
        m.segments
            .set(i64::try_from(state.segments.len()).unwrap_or(i64::MAX));
        for (name, c) in &state.cursors {
            let pending = state.next_seq.saturating_sub(c.next_seq);
            m.records
                .with_label_values(&[name.as_str()])
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
    }

    /// A future that completes at the next append after it was enabled;
    /// senders enable it before reading so no append is missed.
    pub(crate) fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.notify.notified()
    }

    /// The consumers the outbox was opened with.
    pub fn consumers(&self) -> &[String] {
        &self.shared.config.consumers
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.config.fsync == FsyncPolicy::Never {
            return;
        }
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for f in state.unsynced.drain(..) {
            let _ = f.sync_data();
        }
        if state.dirty {
            let _ = state.active.sync_data();
        }
    }
}

fn spawn_syncer(shared: Weak<Shared>, every: Duration) -> Result<()> {
    std::thread::Builder::new()
        .name("sextant-outbox-sync".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let (files, dir_dirty) = {
                    let mut state = shared
                        .state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut files: Vec<Arc<File>> = state.unsynced.drain(..).collect();
                    if state.dirty {
                        files.push(state.active.clone());
                        state.dirty = false;
                    }
                    let dir_dirty = std::mem::take(&mut state.dir_dirty);
                    (files, dir_dirty)
                };
                // fdatasync outside the lock, so appends go on meanwhile.
                for f in files {
                    if let Err(error) = f.sync_data() {
                        tracing::error!(%error, dir = %shared.dir.display(), "Outbox fsync failed");
                    }
                }
                if dir_dirty && let Err(error) = sync_dir(&shared.dir) {
                    tracing::error!(%error, "Outbox folder fsync failed");
                }
            }
        })
        .map(|_| ())
        .map_err(OutboxError::io("sextant-outbox-sync thread"))
}

/// Lists, validates and repairs the segment files; returns them with the
/// id of the active (last) one, creating the first segment when none.
fn recover_segments(
    dir: &Path,
    config: &OutboxConfig,
    metrics: &OutboxMetrics,
) -> Result<(BTreeMap<u64, Segment>, u64)> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .map_err(OutboxError::io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    let max_len = format::RECORD_META + config.max_record_bytes;
    let last = ids.last().copied();
    // (id, base, scan, size)
    let mut found: Vec<(u64, u64, format::Scan, u64)> = Vec::new();
    for id in ids {
        let path = segment_path(dir, id);
        let data = std::fs::read(&path).map_err(OutboxError::io(&path))?;
        let Some(base) = format::decode_segment_header(&data) else {
            if Some(id) == last && data.len() < SEGMENT_HEADER {
                tracing::warn!(path = %path.display(), "Outbox segment cut short at creation; removed");
            } else {
                tracing::error!(path = %path.display(), "Outbox segment has no valid header; removed");
                metrics.drop_records(NO_CONSUMER, DropReason::Corrupt, 1);
            }
            std::fs::remove_file(&path).map_err(OutboxError::io(&path))?;
            continue;
        };
        let scan = format::scan_segment(&data, max_len);
        metrics.drop_records(NO_CONSUMER, DropReason::Corrupt, scan.corrupt);
        if scan.corrupt > 0 {
            tracing::error!(path = %path.display(), records = scan.corrupt, "Outbox records with a bad checksum skipped");
        }
        found.push((id, base, scan, data.len() as u64));
    }

    let mut segments = BTreeMap::new();
    let count = found.len();
    for i in 0..count {
        let (id, base, ref scan, mut size) = found[i];
        let scanned = scan.valid + scan.corrupt;
        let is_last = i + 1 == count;
        let mut slots = scanned;
        if let Some(at) = scan.stopped_at {
            if is_last {
                let path = segment_path(dir, id);
                tracing::warn!(path = %path.display(), offset = at, cut = size - at as u64,
                    "Outbox torn record at the tail; truncated");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(OutboxError::io(&path))?;
                f.set_len(scan.end as u64).map_err(OutboxError::io(&path))?;
                f.sync_all().map_err(OutboxError::io(&path))?;
                size = scan.end as u64;
                metrics.drop_records(NO_CONSUMER, DropReason::Torn, 1);
            } else {
                let next_base = found[i + 1].1;
                let lost = next_base.saturating_sub(base + scanned).max(1);
                tracing::error!(path = %segment_path(dir, id).display(), offset = at, records = lost,
                    "Outbox segment unreadable past a corrupt record; skipped");
                metrics.drop_records(NO_CONSUMER, DropReason::Corrupt, lost);
            }
        }
        if !is_last {
            let next_base = found[i + 1].1;
            slots = slots.max(next_base.saturating_sub(base));
        }
        segments.insert(
            id,
            Segment {
                base_seq: base,
                slots,
                end: scan.end as u64,
                size,
            },
        );
    }

    if let Some((&id, _)) = segments.last_key_value() {
        return Ok((segments, id));
    }
    let id = 1;
    let path = segment_path(dir, id);
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(OutboxError::io(&path))?;
    f.write_all(&format::encode_segment_header(0))
        .and_then(|_| f.sync_all())
        .map_err(OutboxError::io(&path))?;
    sync_dir(dir)?;
    segments.insert(
        id,
        Segment {
            base_seq: 0,
            slots: 0,
            end: SEGMENT_HEADER as u64,
            size: SEGMENT_HEADER as u64,
        },
    );
    Ok((segments, id))
}

/// Reads each configured consumer's cursor, clamped to what is on disk;
/// removes cursor files of consumers no longer configured.
fn load_cursors(
    dir: &Path,
    config: &OutboxConfig,
    segments: &BTreeMap<u64, Segment>,
) -> Result<HashMap<String, Cursor>> {
    let oldest = segments
        .iter()
        .next()
        .map(|(&id, s)| Cursor {
            segment: id,
            offset: SEGMENT_HEADER as u64,
            next_seq: s.base_seq,
        })
        .unwrap_or(Cursor {
            segment: 1,
            offset: SEGMENT_HEADER as u64,
            next_seq: 0,
        });
    let mut cursors = HashMap::new();
    for name in &config.consumers {
        let path = cursor_path(dir, name);
        let saved = match std::fs::read_to_string(&path) {
            Ok(text) => parse_cursor(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(OutboxError::io(path)(e)),
        };
        let cursor = match saved {
            None => oldest,
            Some(c) if c.segment < oldest.segment => oldest,
            Some(c) => match segments.get(&c.segment) {
                Some(s) if c.offset <= s.end => c,
                // Past what survived (a power loss took the records it had
                // read): continue at the end of that segment.
                Some(s) => Cursor {
                    segment: c.segment,
                    offset: s.end,
                    next_seq: s.base_seq + s.slots,
                },
                None => match segments.range(c.segment..).next() {
                    Some((&id, s)) => Cursor {
                        segment: id,
                        offset: SEGMENT_HEADER as u64,
                        next_seq: s.base_seq,
                    },
                    None => oldest,
                },
            },
        };
        cursors.insert(name.clone(), cursor);
    }
    for entry in std::fs::read_dir(dir)
        .map_err(OutboxError::io(dir))?
        .flatten()
    {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match name.strip_prefix("cursor-") {
            Some(consumer) => {
                consumer.ends_with(".tmp") || !config.consumers.iter().any(|c| c == consumer)
            }
            None => false,
        };
        if stale {
            tracing::info!(
                file = name,
                "Outbox cursor of a consumer no longer configured removed"
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(cursors)
}

fn parse_cursor(text: &str) -> Option<Cursor> {
    let mut parts = text.split_whitespace();
    if parts.next()? != "1" {
        return None;
    }
    Some(Cursor {
        segment: parts.next()?.parse().ok()?,
        offset: parts.next()?.parse().ok()?,
        next_seq: parts.next()?.parse().ok()?,
    })
}
