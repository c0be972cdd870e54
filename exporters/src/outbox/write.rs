//! Appends (the size cap, rotation to a new segment) and the fsync
//! policy: per append, by a background thread, or at drop.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::format::{self, SEGMENT_HEADER, record_size};
use super::{
    AppendOutcome, FsyncPolicy, Outbox, RecordKind, Segment, Shared, State, now_nanos,
    segment_path, sync_dir,
};
use crate::error::{OutboxError, Result};
use crate::metrics::{DropReason, NO_CONSUMER};

impl Outbox {
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

pub(super) fn spawn_syncer(shared: Weak<Shared>, every: Duration) -> Result<()> {
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
