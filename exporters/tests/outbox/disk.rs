//! The queue on disk: restart, torn tail, corruption, the cap, kill -9.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sextant_exporters::{
    AppendOutcome, DropReason, Outbox, OutboxConfig, OutboxError, Record, RecordKind,
};

use crate::common::{init_tracing, small_config};

fn payload(i: u64) -> Vec<u8> {
    // ~200 bytes, the number first so a test can read it back.
    let mut p = i.to_le_bytes().to_vec();
    p.extend(std::iter::repeat_n(b'x', 192));
    p
}

fn number(r: &Record) -> u64 {
    u64::from_le_bytes(r.payload[..8].try_into().unwrap())
}

fn append_n(outbox: &Outbox, range: std::ops::Range<u64>, kind: RecordKind) {
    for i in range {
        let out = outbox.append(kind, &payload(i)).unwrap();
        assert!(matches!(out, AppendOutcome::Stored { .. }), "{i}: {out:?}");
    }
}

/// Reads (and acks) everything `consumer` has left.
fn drain(outbox: &Outbox, consumer: &str) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let batch = outbox.read_batch(consumer, 100, 1 << 20).unwrap();
        outbox.ack(consumer, &batch).unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch.records);
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_come_back_in_order_across_segments_acks_and_restarts() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    append_n(&outbox, 0..1000, RecordKind::StateChange);
    assert!(segments(dir.path()).len() > 2, "1000 records span segments");

    // Read 300 (3 batches), ack them, restart.
    for _ in 0..3 {
        let batch = outbox.read_batch("default", 100, 1 << 20).unwrap();
        outbox.ack("default", &batch).unwrap();
    }
    // A batch read but never acked is read again after the restart.
    let unacked = outbox.read_batch("default", 50, 1 << 20).unwrap();
    assert_eq!(number(&unacked.records[0]), 300);
    drop(outbox);

    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    let stats = outbox.stats();
    assert_eq!(stats.next_seq, 1000);
    assert_eq!(stats.consumers[0].pending, 700);
    assert!(stats.consumers[0].oldest_age.is_some());
    append_n(&outbox, 1000..1100, RecordKind::Heartbeat);
    let rest = drain(&outbox, "default");
    let numbers: Vec<u64> = rest.iter().map(number).collect();
    assert_eq!(numbers, (300..1100).collect::<Vec<_>>());
    let seqs: Vec<u64> = rest.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (300..1100).collect::<Vec<_>>());
    assert_eq!(rest[0].kind, RecordKind::StateChange);
    assert_eq!(rest[799].kind, RecordKind::Heartbeat);

    // Everything acked: only the active segment is left.
    assert_eq!(segments(dir.path()).len(), 1);
    let stats = outbox.stats();
    assert_eq!(stats.consumers[0].pending, 0);
    assert_eq!(stats.consumers[0].oldest_age, None);
}

#[test]
fn a_torn_tail_is_truncated_counted_and_appends_go_on() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    append_n(&outbox, 0..10, RecordKind::StateChange);
    drop(outbox);
    // Cut the last record in half, as a crash mid-write would.
    let seg = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);

    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    assert_eq!(outbox.metrics().dropped(DropReason::Torn), 1);
    assert_eq!(outbox.stats().next_seq, 9);
    append_n(&outbox, 100..101, RecordKind::StateChange);
    let numbers: Vec<u64> = drain(&outbox, "default").iter().map(number).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 100]);

    // Zeros after the last record (a power loss after the size grew).
    drop(outbox);
    let seg = segments(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    data.extend_from_slice(&[0u8; 300]);
    std::fs::write(&seg, data).unwrap();
    let outbox = Outbox::open(dir.path(), small_config()).unwrap();
    assert_eq!(outbox.metrics().dropped(DropReason::Torn), 1);
    append_n(&outbox, 101..102, RecordKind::StateChange);
    let numbers: Vec<u64> = drain(&outbox, "default").iter().map(number).collect();
    assert_eq!(numbers, [101]);
}

/// Offset of record `index` (0-based) in a segment of `payload(i)` records.
fn record_offset(index: u64) -> u64 {
    16 + index * (17 + 200)
}

#[test]
fn a_flipped_byte_skips_one_record_and_lost_framing_skips_the_rest_of_a_segment() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let outbox = Outbox::open(dir.path(), config.clone()).unwrap();
    // 64 KiB segments hold 301 records of 217 bytes.
    append_n(&outbox, 0..700, RecordKind::StateChange);
    drop(outbox);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 3);

    // Active segment: flip a payload byte of record 4, and of its last record.
    let mut data = std::fs::read(&segs[2]).unwrap();
    data[(record_offset(4) + 17 + 3) as usize] ^= 0x40;
    let last = data.len() - 5;
    data[last] ^= 0x01;
    std::fs::write(&segs[2], &data).unwrap();
    // First (sealed) segment: break the length of record 290, so the last
    // 11 records of that segment cannot be framed any more.
    let mut data = std::fs::read(&segs[0]).unwrap();
    let at = record_offset(290) as usize;
    data[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&segs[0], &data).unwrap();

    let outbox = Outbox::open(dir.path(), config).unwrap();
    assert_eq!(outbox.metrics().dropped(DropReason::Corrupt), 2 + 11);
    assert_eq!(outbox.metrics().dropped(DropReason::Torn), 0);
    let records = drain(&outbox, "default");
    let numbers: Vec<u64> = records.iter().map(number).collect();
    let expected: Vec<u64> = (0..699)
        .filter(|&i| !(290..301).contains(&i) && i != 602 + 4)
        .collect();
    assert_eq!(numbers, expected);
    // Sequence numbers still say where each record was.
    assert!(records.iter().all(|r| r.seq == number(r)));
}

#[test]
fn a_full_queue_drops_heartbeats_first_then_state_changes_and_counts_both() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        max_bytes: 256 << 10,
        ..small_config()
    };
    let outbox = Outbox::open(dir.path(), config.clone()).unwrap();
    let mut first_heartbeat_drop = None;
    for i in 0..2000 {
        match outbox.append(RecordKind::Heartbeat, &payload(i)).unwrap() {
            AppendOutcome::Stored { .. } => {}
            AppendOutcome::Dropped(reason) => {
                assert_eq!(reason, DropReason::HeartbeatFull);
                first_heartbeat_drop.get_or_insert(outbox.stats().bytes);
            }
        }
    }
    let at = first_heartbeat_drop.expect("heartbeats were dropped");
    let high_water = (config.max_bytes as f64 * 0.9) as u64;
    assert!(at <= high_water && at > high_water - 2 * 217, "{at}");
    // State changes still fit in the headroom…
    let mut stored = 0;
    let mut dropped = 0;
    for i in 0..500 {
        match outbox.append(RecordKind::StateChange, &payload(i)).unwrap() {
            AppendOutcome::Stored { .. } => stored += 1,
            AppendOutcome::Dropped(r) => {
                assert_eq!(r, DropReason::Full);
                dropped += 1;
            }
        }
        assert!(outbox.stats().bytes <= config.max_bytes);
    }
    assert!(stored > 50, "state changes use the headroom: {stored}");
    assert!(dropped > 0);
    assert_eq!(outbox.metrics().dropped(DropReason::Full), dropped);
    let hb_dropped = outbox.metrics().dropped(DropReason::HeartbeatFull);
    assert!(hb_dropped > 0);

    // The same figures on /metrics.
    let registry = prometheus::Registry::new();
    outbox.metrics().register(&registry).unwrap();
    outbox.refresh_metrics();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(&format!(
            "sextant_outbox_dropped_records_total{{consumer=\"\",reason=\"heartbeat_full\"}} {hb_dropped}"
        )),
        "{text}"
    );
    assert!(text.contains("sextant_outbox_bytes "), "{text}");
    assert!(text.contains("sextant_outbox_records{consumer=\"default\"}"));
    assert!(text.contains("sextant_outbox_oldest_record_age_seconds{consumer=\"default\"}"));

    // Draining frees the space: heartbeats are taken again.
    drain(&outbox, "default");
    assert!(outbox.stats().bytes < 64 << 10);
    assert!(matches!(
        outbox.append(RecordKind::Heartbeat, &payload(0)).unwrap(),
        AppendOutcome::Stored { .. }
    ));
}

#[test]
fn each_consumer_has_its_own_cursor_and_segments_wait_for_the_slowest() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        consumers: vec!["a".to_owned(), "b".to_owned()],
        ..small_config()
    };
    let outbox = Outbox::open(dir.path(), config.clone()).unwrap();
    append_n(&outbox, 0..700, RecordKind::StateChange);
    assert_eq!(drain(&outbox, "a").len(), 700);
    assert_eq!(segments(dir.path()).len(), 3, "b still needs them");
    let b = outbox.read_batch("b", 10, 1 << 20).unwrap();
    outbox.ack("b", &b).unwrap();
    drop(outbox);

    // Consumer "a" is no longer configured: its cursor goes, "b" resumes.
    let config = OutboxConfig {
        consumers: vec!["b".to_owned()],
        ..config
    };
    let outbox = Outbox::open(dir.path(), config).unwrap();
    assert!(!dir.path().join("cursor-a").exists());
    let numbers: Vec<u64> = drain(&outbox, "b").iter().map(number).collect();
    assert_eq!(numbers, (10..700).collect::<Vec<_>>());
    assert_eq!(segments(dir.path()).len(), 1);
    assert!(matches!(
        outbox.read_batch("a", 1, 1),
        Err(OutboxError::UnknownConsumer(_))
    ));
}

#[test]
fn a_second_process_cannot_open_the_same_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let _outbox = Outbox::open(dir.path(), small_config()).unwrap();
    assert!(matches!(
        Outbox::open(dir.path(), small_config()),
        Err(OutboxError::Locked(_))
    ));
}

const CHILD_DIR: &str = "SEXTANT_OUTBOX_TEST_CHILD_DIR";

/// The writer half of the kill -9 test: appends numbered records and
/// prints each number once `append` has returned. Does nothing unless
/// started by the test below.
#[test]
fn kill9_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    use std::io::Write;
    let outbox = Outbox::open(dir, small_config()).unwrap();
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0u64.. {
        // The cap is 1 MiB: acknowledge as we go so nothing is dropped.
        if (i + 1).is_multiple_of(50) {
            let batch = outbox.read_batch("default", 1000, 1 << 20).unwrap();
            outbox.ack("default", &batch).unwrap();
        }
        // Bigger records now and then, so a kill often lands mid-write.
        let mut p = payload(i);
        if i.is_multiple_of(7) {
            p.resize(12 << 10, b'y');
        }
        let stored = outbox.append(RecordKind::StateChange, &p).unwrap();
        assert!(matches!(stored, AppendOutcome::Stored { .. }));
        writeln!(out, "appended {i}").unwrap();
        out.flush().unwrap();
        assert!(Instant::now() < deadline, "the parent never killed us");
    }
}

#[test]
fn records_appended_before_kill_9_survive_and_a_torn_tail_is_skipped() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "disk::kill9_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        // Let it run a while, then SIGKILL it mid-stream.
        let kill_after = 3000 + round * 1700;
        for line in lines.by_ref() {
            if let Some(n) = line.unwrap().strip_prefix("appended ") {
                printed.push(n.parse::<u64>().unwrap());
                if printed.len() as u64 == kill_after {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        // Whatever it printed before dying was appended too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("appended ") {
                printed.push(n.parse().unwrap());
            }
        }
        child.wait().unwrap();
        assert!(printed.len() as u64 >= kill_after);

        // The child acked every 50th record; reopen and read the rest.
        let outbox = Outbox::open(dir.path(), small_config()).unwrap();
        let records = drain(&outbox, "default");
        let numbers: Vec<u64> = records.iter().map(number).collect();
        let last_printed = *printed.last().unwrap();
        if numbers.is_empty() {
            // The kill landed after an acknowledgement and before the next
            // record was whole: everything appended had been acknowledged.
            // The child acknowledges just before appending record i with
            // i + 1 a multiple of 50, so the last record it printed is i - 1.
            assert!(
                (last_printed + 2).is_multiple_of(50),
                "round {round}: nothing left to read, yet record {last_printed} was printed after the last acknowledgement"
            );
            drop(outbox);
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
            continue;
        }
        let first = numbers[0];
        assert!(
            first == 0 || (first + 1).is_multiple_of(50),
            "resumes at an ack point: {first}"
        );
        // In order, no gap, no corrupt payload, and every printed number present.
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, no gap"
        );
        assert!(
            *numbers.last().unwrap() >= last_printed,
            "round {round}: printed up to {last_printed}, found up to {:?}",
            numbers.last()
        );
        assert!(
            numbers.last().unwrap() - last_printed <= 1,
            "at most the record being written"
        );
        for r in &records {
            let n = number(r);
            let len = if n.is_multiple_of(7) { 12 << 10 } else { 200 };
            assert_eq!(r.payload.len(), len);
            assert!(r.payload[8..].iter().all(|&b| b == b'x' || b == b'y'));
        }
        drop(outbox);
        // Start the next round from a fresh folder.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
}
