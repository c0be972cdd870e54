//! Which event times the hub accepts (the clock-skew window), used by
//! `extract` and by the reconcilers' readers.

use sextant_model::UnixNanos;

/// An event time the hub refuses; the message names the OTLP field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// After 2262-04-11: more than `i64` nanoseconds hold.
    #[error("{field} {nanos} is beyond 2262-04-11, the latest time the hub stores")]
    BeyondRange { field: &'static str, nanos: u64 },
    /// Past the clock-skew window.
    #[error(
        "{field} {} is {ahead_secs} s in the future, beyond the {window_secs} s clock-skew \
         window (max_future_skew_seconds)",
        at.to_rfc3339()
    )]
    Ahead {
        field: String,
        at: UnixNanos,
        ahead_secs: i64,
        window_secs: u64,
    },
}

/// Which event times the hub accepts: up to `max_ahead` past `now` (the
/// senders' clock skew); a time beyond is refused, so that no report can
/// stay current state forever (docs/security.md).
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    pub now: UnixNanos,
    pub max_ahead: std::time::Duration,
}

impl TimeWindow {
    /// The window around the current time.
    pub fn now(max_ahead: std::time::Duration) -> Self {
        Self {
            now: UnixNanos::now(),
            max_ahead,
        }
    }

    /// The time of an event: its own time, else its observed time, else
    /// now. A time `i64` cannot hold (after 2262) or beyond the window is
    /// refused with the field's name.
    pub(crate) fn event_time(&self, time: u64, observed: u64) -> Result<UnixNanos, TimeError> {
        let (field, nanos) = match (time, observed) {
            (0, 0) => return Ok(self.now),
            (0, observed) => ("observedTimeUnixNano", observed),
            (time, _) => ("timeUnixNano", time),
        };
        let at = UnixNanos::from_otlp(nanos).ok_or(TimeError::BeyondRange { field, nanos })?;
        self.check(at, field)
    }

    /// `at` if it is within the window; the refusal names `field`.
    pub fn check(&self, at: UnixNanos, field: &str) -> Result<UnixNanos, TimeError> {
        let ahead = at.0.saturating_sub(self.now.0);
        let window = i64::try_from(self.max_ahead.as_nanos()).unwrap_or(i64::MAX);
        if ahead > window {
            return Err(TimeError::Ahead {
                field: field.to_owned(),
                at,
                ahead_secs: ahead / 1_000_000_000,
                window_secs: self.max_ahead.as_secs(),
            });
        }
        Ok(at)
    }
}
