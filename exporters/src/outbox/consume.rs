//! What consumers read and acknowledge: batches, cursor files, and the
//! segments deleted once every consumer has passed them.

use std::fs::File;
use std::io::Write;

use super::format;
use super::{Batch, Cursor, FsyncPolicy, Outbox, State, cursor_path, read, segment_path};
use crate::error::{OutboxError, Result};

impl Outbox {
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
    pub(super) fn collect_garbage(&self, state: &mut State) -> Result<()> {
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
}
