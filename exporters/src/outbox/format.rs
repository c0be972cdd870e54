//! The on-disk format: a segment header, then length-prefixed, checksummed
//! records. See `docs/outbox.md`.
//!
//! ```text
//! segment: [magic "SXOB"][u32 version = 1][u64 base_seq]          16 bytes
//! record:  [u32 len][u32 crc32][u8 kind][u64 time_unix_nanos][payload]
//!          len = 9 + payload length; crc32 (IEEE) covers len, kind, time, payload
//! ```
//! Every integer is little-endian.

use super::RecordKind;

pub(crate) const MAGIC: [u8; 4] = *b"SXOB";
pub(crate) const VERSION: u32 = 1;
/// Bytes before the first record of a segment.
pub(crate) const SEGMENT_HEADER: usize = 16;
/// `len` and `crc`.
pub(crate) const RECORD_PREFIX: usize = 8;
/// `kind` and `time`, counted in `len`.
pub(crate) const RECORD_META: usize = 9;

/// The bytes a record with `payload_len` bytes of payload takes on disk.
pub(crate) fn record_size(payload_len: usize) -> usize {
    RECORD_PREFIX + RECORD_META + payload_len
}

pub(crate) fn encode_segment_header(base_seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..].copy_from_slice(&base_seq.to_le_bytes());
    h
}

/// The base sequence number of a segment, or `None` when the header is not
/// one this version wrote.
pub(crate) fn decode_segment_header(h: &[u8]) -> Option<u64> {
    let magic = h.get(..4)?;
    let version = u32::from_le_bytes(h.get(4..8)?.try_into().ok()?);
    let base = u64::from_le_bytes(h.get(8..16)?.try_into().ok()?);
    (magic == MAGIC && version == VERSION).then_some(base)
}

/// Appends one framed record to `buf`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, kind: RecordKind, time: u64, payload: &[u8]) {
    // Callers bound payloads by `max_record_bytes`, far below u32::MAX.
    let len = u32::try_from(RECORD_META + payload.len()).unwrap_or(u32::MAX);
    let kind = kind.to_byte();
    let time = time.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&[kind]);
    crc.update(&time);
    crc.update(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(&time);
    buf.extend_from_slice(payload);
}

/// What is found at an offset of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A good record; its payload is `buf[payload.0..payload.1]`, the next
    /// record starts at `next`.
    Record {
        kind: RecordKind,
        time: u64,
        payload: (usize, usize),
        next: usize,
    },
    /// The length is plausible but the checksum (or kind) is wrong; the next
    /// record would start at `next`.
    Corrupt { next: usize },
    /// The buffer ends before the record does (`need` bytes from the offset
    /// would hold it), or before its prefix.
    Short { need: usize },
    /// The length field cannot be a record's (zero-filled tail, garbage).
    BadLength,
}

/// Parses the record at `off`. `max_len` bounds the length field (the
/// largest record the outbox accepts).
pub(crate) fn parse_at(buf: &[u8], off: usize, max_len: usize) -> Parsed {
    let Some(prefix) = buf.get(off..off + RECORD_PREFIX) else {
        return Parsed::Short {
            need: RECORD_PREFIX,
        };
    };
    let len_bytes = [prefix[0], prefix[1], prefix[2], prefix[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if len < RECORD_META || len > max_len {
        return Parsed::BadLength;
    }
    let start = off + RECORD_PREFIX;
    let next = start + len;
    let Some(body) = buf.get(start..next) else {
        return Parsed::Short {
            need: RECORD_PREFIX + len,
        };
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(body);
    let kind = RecordKind::from_byte(body[0]);
    match kind {
        Some(kind) if hasher.finalize() == crc => {
            let mut time = [0u8; 8];
            time.copy_from_slice(&body[1..RECORD_META]);
            Parsed::Record {
                kind,
                time: u64::from_le_bytes(time),
                payload: (start + RECORD_META, next),
                next,
            }
        }
        _ => Parsed::Corrupt { next },
    }
}

/// The result of validating a whole segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Good records.
    pub valid: u64,
    /// Records skipped for a bad checksum, whose framing still held.
    pub corrupt: u64,
    /// Offset just past the last record (good or skipped) that can be read.
    pub end: usize,
    /// Set when parsing stopped before the end of the data, at this offset.
    pub stopped_at: Option<usize>,
    /// Time of the first good record.
    pub first_time: Option<u64>,
}

/// Validates the records of a segment held in `data` (header included).
///
/// A record whose checksum fails is skipped when its length still leads to
/// the end of the data or to a good record; otherwise the framing is lost
/// and scanning stops there (`stopped_at`).
pub(crate) fn scan_segment(data: &[u8], max_len: usize) -> Scan {
    let mut scan = Scan {
        end: SEGMENT_HEADER.min(data.len()),
        ..Scan::default()
    };
    let mut off = SEGMENT_HEADER;
    while off < data.len() {
        match parse_at(data, off, max_len) {
            Parsed::Record { time, next, .. } => {
                scan.valid += 1;
                scan.first_time.get_or_insert(time);
                off = next;
            }
            Parsed::Corrupt { next }
                if next == data.len()
                    || matches!(parse_at(data, next, max_len), Parsed::Record { .. }) =>
            {
                scan.corrupt += 1;
                off = next;
            }
            Parsed::Corrupt { .. } | Parsed::Short { .. } | Parsed::BadLength => {
                scan.stopped_at = Some(off);
                break;
            }
        }
        scan.end = off;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = encode_segment_header(7).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut buf, RecordKind::StateChange, i as u64, p);
        }
        buf
    }

    #[test]
    fn header_round_trips() {
        assert_eq!(decode_segment_header(&encode_segment_header(42)), Some(42));
        assert_eq!(
            decode_segment_header(b"XXXX\x01\0\0\0\0\0\0\0\0\0\0\0"),
            None
        );
    }

    #[test]
    fn records_round_trip() {
        let data = segment(&[b"a", b"", b"hello"]);
        let scan = scan_segment(&data, 1 << 20);
        assert_eq!((scan.valid, scan.corrupt, scan.stopped_at), (3, 0, None));
        assert_eq!(scan.end, data.len());
        match parse_at(&data, SEGMENT_HEADER, 1 << 20) {
            Parsed::Record { payload, kind, .. } => {
                assert_eq!(&data[payload.0..payload.1], b"a");
                assert_eq!(kind, RecordKind::StateChange);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_flipped_byte_is_skipped_and_a_cut_tail_stops_the_scan() {
        let mut data = segment(&[b"one", b"two", b"three"]);
        let second = SEGMENT_HEADER + record_size(3);
        data[second + RECORD_PREFIX + RECORD_META] ^= 0xff;
        let scan = scan_segment(&data, 1 << 20);
        assert_eq!((scan.valid, scan.corrupt, scan.stopped_at), (2, 1, None));

        let mut cut = segment(&[b"one", b"two"]);
        cut.truncate(cut.len() - 2);
        let scan = scan_segment(&cut, 1 << 20);
        assert_eq!(scan.valid, 1);
        assert_eq!(scan.stopped_at, Some(SEGMENT_HEADER + record_size(3)));
        assert_eq!(scan.end, SEGMENT_HEADER + record_size(3));

        let mut zeros = segment(&[b"one"]);
        zeros.extend_from_slice(&[0u8; 64]);
        let scan = scan_segment(&zeros, 1 << 20);
        assert_eq!((scan.valid, scan.stopped_at.is_some()), (1, true));
    }
}
