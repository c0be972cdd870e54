//! Opening what is on disk: segments validated and repaired (a torn tail
//! truncated, corrupt records counted), cursors read and clamped.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::format::{self, SEGMENT_HEADER};
use super::{Cursor, OutboxConfig, Segment, cursor_path, segment_path, sync_dir};
use crate::error::{OutboxError, Result};
use crate::metrics::{DropReason, NO_CONSUMER, OutboxMetrics};

/// Lists, validates and repairs the segment files; returns them with the
/// id of the active (last) one, creating the first segment when none.
pub(super) fn recover_segments(
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
pub(super) fn load_cursors(
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
