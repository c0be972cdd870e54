//! The durable outbox: an on-disk FIFO of `(kind, payload)` records in
//! size-capped segment files, with one cursor per consumer. See
//! `docs/outbox.md` for the format, the fsync policy and the size cap.
//!
//! `format.rs` the bytes on disk; `recover.rs` what `open` finds there;
//! `write.rs` appends and fsyncs; `read.rs` and `consume.rs` batches,
//! acks and cursors; `stats.rs` backlogs and gauges.

mod config;
mod consume;
pub(crate) mod format;
mod read;
mod recover;
mod stats;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

pub use config::{FsyncPolicy, OutboxConfig};

use crate::error::{OutboxError, Result};
use crate::metrics::{DropReason, OutboxMetrics};
use recover::{load_cursors, recover_segments};
use write::spawn_syncer;

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
