//! Reading records for one consumer, outside the outbox lock: the files
//! are read up to the ends snapshotted under the lock, which only ever
//! cover completely written records.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use super::format::{self, Parsed, SEGMENT_HEADER};
use super::{Cursor, Record, segment_path};
use crate::error::{OutboxError, Result};

/// Extra bytes read past the batch's byte budget, so the record that ends
/// the batch is usually in the same read.
const SLACK: u64 = 64 << 10;

pub(crate) struct SegmentView {
    pub id: u64,
    pub base_seq: u64,
    pub slots: u64,
    pub end: u64,
    pub sealed: bool,
}

pub(crate) struct Reader<'a> {
    pub dir: &'a Path,
    pub max_len: usize,
    pub max_records: usize,
    pub max_bytes: usize,
    pub records: Vec<Record>,
    pub bytes: usize,
}

impl Reader<'_> {
    fn full(&self) -> bool {
        self.records.len() >= self.max_records || self.bytes >= self.max_bytes
    }

    /// Reads from `start` through the segments; returns the cursor after
    /// the last record read (or skipped).
    pub fn read(&mut self, start: Cursor, segments: &[SegmentView]) -> Result<Cursor> {
        let mut cur = start;
        for (i, seg) in segments.iter().enumerate() {
            if seg.id < cur.segment {
                continue;
            }
            if seg.id > cur.segment {
                cur = Cursor {
                    segment: seg.id,
                    offset: SEGMENT_HEADER as u64,
                    next_seq: seg.base_seq,
                };
            }
            if cur.offset < seg.end {
                self.read_segment(seg, &mut cur)?;
            }
            if cur.offset < seg.end || !seg.sealed {
                break;
            }
            // A sealed segment read to its end: step onto the next one so
            // this one can be deleted once every consumer is past it.
            cur.next_seq = cur.next_seq.max(seg.base_seq + seg.slots);
            if let Some(next) = segments.get(i + 1) {
                cur = Cursor {
                    segment: next.id,
                    offset: SEGMENT_HEADER as u64,
                    next_seq: next.base_seq,
                };
            }
            if self.full() {
                break;
            }
        }
        Ok(cur)
    }

    fn read_segment(&mut self, seg: &SegmentView, cur: &mut Cursor) -> Result<()> {
        let path = segment_path(self.dir, seg.id);
        let file = File::open(&path).map_err(OutboxError::io(&path))?;
        let mut at_least = 0u64;
        while cur.offset < seg.end && !self.full() {
            let budget = (self.max_bytes.saturating_sub(self.bytes)) as u64 + SLACK;
            let want = (seg.end - cur.offset).min(budget.max(at_least));
            let mut buf = vec![0u8; usize::try_from(want).unwrap_or(usize::MAX)];
            file.read_exact_at(&mut buf, cur.offset)
                .map_err(OutboxError::io(&path))?;
            let buf = Bytes::from(buf);
            let mut pos = 0usize;
            let mut progressed = false;
            while pos < buf.len() && !self.full() {
                match format::parse_at(&buf, pos, self.max_len) {
                    Parsed::Record {
                        kind,
                        time,
                        payload,
                        next,
                    } => {
                        let size = payload.1 - payload.0;
                        if !self.records.is_empty() && self.bytes + size > self.max_bytes {
                            // The next batch starts with it.
                            self.bytes = self.max_bytes;
                            return Ok(());
                        }
                        self.records.push(Record {
                            seq: cur.next_seq,
                            kind,
                            time_unix_nanos: time,
                            payload: buf.slice(payload.0..payload.1),
                        });
                        self.bytes += size;
                        cur.offset += (next - pos) as u64;
                        cur.next_seq += 1;
                        pos = next;
                        progressed = true;
                    }
                    Parsed::Corrupt { next } => {
                        tracing::warn!(path = %path.display(), offset = cur.offset,
                            "Outbox record with a bad checksum skipped");
                        cur.offset += (next - pos) as u64;
                        cur.next_seq += 1;
                        pos = next;
                        progressed = true;
                    }
                    Parsed::Short { need } => {
                        if !progressed {
                            if cur.offset + need as u64 > seg.end {
                                self.skip_rest(seg, cur, &path);
                                return Ok(());
                            }
                            at_least = need as u64;
                        }
                        break;
                    }
                    Parsed::BadLength => {
                        self.skip_rest(seg, cur, &path);
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// The framing is lost: nothing more of this segment can be read.
    fn skip_rest(&self, seg: &SegmentView, cur: &mut Cursor, path: &Path) {
        tracing::error!(path = %path.display(), offset = cur.offset,
            "Outbox segment unreadable past this offset; skipped");
        cur.offset = seg.end;
        if seg.sealed {
            cur.next_seq = cur.next_seq.max(seg.base_seq + seg.slots);
        }
    }
}
