//! Outbox configuration.

use std::time::Duration;

use crate::error::{OutboxError, Result};

/// When appended data is forced to stable storage with `fdatasync`.
///
/// Whatever the policy, a record is in the kernel's page cache once
/// `append` returns, so it survives the process being killed (`kill -9`,
/// a panic, an OOM kill). The policy only decides what survives a power
/// loss or kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Sync before `append` returns: nothing acknowledged is lost on power
    /// loss. One `fdatasync` per call (use `append_batch` to amortise it).
    Always,
    /// A background thread syncs the active segment at this interval when
    /// something was written; a power loss loses at most the last interval.
    Interval(Duration),
    /// Leave it to the kernel's writeback (typically 5–30 s).
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Interval(Duration::from_secs(1))
    }
}

/// How an [`crate::Outbox`] stores records.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// The most bytes of segment files kept on disk. Default 64 MiB.
    pub max_bytes: u64,
    /// A segment file is sealed and a new one started past this size.
    /// Default 4 MiB.
    pub segment_bytes: u64,
    /// Heartbeats are accepted only while the queue stays below this share
    /// of `max_bytes`; state changes may use the rest. Default 0.9.
    pub heartbeat_high_water: f64,
    /// The fsync policy. Default `Interval(1 s)`.
    pub fsync: FsyncPolicy,
    /// The largest payload accepted. Default 1 MiB.
    pub max_record_bytes: usize,
    /// One consumer per endpoint: each keeps its own cursor. A segment is
    /// deleted once every consumer has passed it. Cursor files of consumers
    /// not listed are removed at open. Default `["default"]`.
    pub consumers: Vec<String>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            segment_bytes: 4 << 20,
            heartbeat_high_water: 0.9,
            fsync: FsyncPolicy::default(),
            max_record_bytes: 1 << 20,
            consumers: vec!["default".to_owned()],
        }
    }
}

/// A consumer name: it becomes part of a file name and a metric label.
pub(crate) fn valid_consumer(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl OutboxConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(OutboxError::Config(m));
        if self.segment_bytes < 4096 {
            return fail(format!(
                "segment_bytes {} is below 4096",
                self.segment_bytes
            ));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return fail(format!(
                "max_bytes {} must be at least twice segment_bytes {}",
                self.max_bytes, self.segment_bytes
            ));
        }
        let record = super::format::SEGMENT_HEADER as u64
            + super::format::record_size(self.max_record_bytes) as u64;
        if record > self.segment_bytes {
            return fail(format!(
                "max_record_bytes {} does not fit in a segment of {} bytes",
                self.max_record_bytes, self.segment_bytes
            ));
        }
        if !(self.heartbeat_high_water > 0.0 && self.heartbeat_high_water <= 1.0) {
            return fail(format!(
                "heartbeat_high_water {} is not in (0, 1]",
                self.heartbeat_high_water
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return fail("fsync interval must be above zero (use Always)".to_owned());
        }
        if self.consumers.is_empty() {
            return fail("at least one consumer is needed".to_owned());
        }
        for (i, name) in self.consumers.iter().enumerate() {
            if !valid_consumer(name) {
                return fail(format!(
                    "consumer name {name:?} must be 1–64 characters of [A-Za-z0-9_-]"
                ));
            }
            if self.consumers[..i].contains(name) {
                return fail(format!("consumer {name:?} is listed twice"));
            }
        }
        Ok(())
    }

    /// Bytes a heartbeat may bring the queue up to.
    pub(crate) fn heartbeat_limit(&self) -> u64 {
        (self.max_bytes as f64 * self.heartbeat_high_water) as u64
    }
}
