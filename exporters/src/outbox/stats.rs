//! Sizes and backlogs, and the gauges set from them.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use super::format::{self, SEGMENT_HEADER};
use super::{ConsumerStats, Cursor, Outbox, OutboxStats, State, now_nanos, segment_path};

impl Outbox {
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
    pub(super) fn update_gauges(&self, state: &State) {
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
}
