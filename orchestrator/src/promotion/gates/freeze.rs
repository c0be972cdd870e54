//! The freeze gate: no promotion into an environment while one of its weekly
//! freeze windows is open.
//!
//! A window is `start`–`end` (`HH:MM`, UTC) on each of its `days` (`mon` …
//! `sun`; empty is every day). It is open from `start` (inclusive) to `end`
//! (exclusive). When `end` is before `start` the window runs over midnight
//! into the next day, and `days` names the day it *starts*; when `end`
//! equals `start` it lasts a full 24 hours.

use time::{Date, OffsetDateTime, Time, UtcOffset, Weekday};

use super::{Decision, GateContext, rfc3339};
use crate::domain::FreezeWindow;

/// A freeze window with a malformed time or day; `window` is its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeWindowError {
    #[error("{window:?}: start {text:?} is not a time HH:MM (00:00 to 23:59)")]
    Start { window: String, text: String },
    #[error("{window:?}: end {text:?} is not a time HH:MM (00:00 to 23:59)")]
    End { window: String, text: String },
    #[error("{window:?}: {text:?} is not a day (mon, tue, … sun)")]
    Day { window: String, text: String },
}

/// The first window open at `now`, if any. Every window is checked for
/// malformed times and days first, so one bad window is always an error.
pub fn freeze_window_open(
    windows: &[FreezeWindow],
    now: OffsetDateTime,
) -> Result<Option<&FreezeWindow>, FreezeWindowError> {
    Ok(open_window(windows, now)?.map(|(w, _)| w))
}

/// The gate: deny while a window is open (naming it and when it ends), or
/// when a window is malformed.
pub(super) fn evaluate(ctx: &GateContext<'_>) -> (Decision, String) {
    match open_window(&ctx.environment.freeze_windows, ctx.now) {
        Ok(Some((window, ends))) => (
            Decision::Deny,
            format!(
                "freeze window {:?} is open until {}",
                window.name,
                rfc3339(ends)
            ),
        ),
        Ok(None) => (
            Decision::Allow,
            format!("no freeze window of {:?} is open", ctx.environment.name),
        ),
        Err(e) => (Decision::Deny, format!("invalid freeze window: {e}")),
    }
}

/// A window with its times and days parsed.
struct Parsed<'a> {
    window: &'a FreezeWindow,
    start: Time,
    end: Time,
    /// Empty: every day.
    days: Vec<Weekday>,
}

impl Parsed<'_> {
    fn on(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    /// When the window is open at `now` (UTC), the instant it closes.
    fn open_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let today = now.date();
        let t = now.time();
        let at = |date: Date, time: Time| date.with_time(time).assume_utc();
        if self.start < self.end {
            return (self.on(today.weekday()) && t >= self.start && t < self.end)
                .then(|| at(today, self.end));
        }
        // Over midnight (or a full day when start == end): opened today and
        // closes tomorrow, or opened yesterday and closes today.
        if self.on(today.weekday()) && t >= self.start {
            return today.next_day().map(|d| at(d, self.end));
        }
        let yesterday = today.previous_day()?;
        (self.on(yesterday.weekday()) && t < self.end).then(|| at(today, self.end))
    }
}

/// The first open window and when it closes.
fn open_window(
    windows: &[FreezeWindow],
    now: OffsetDateTime,
) -> Result<Option<(&FreezeWindow, OffsetDateTime)>, FreezeWindowError> {
    let parsed = windows.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    let now = now.to_offset(UtcOffset::UTC);
    Ok(parsed
        .iter()
        .find_map(|p| p.open_until(now).map(|ends| (p.window, ends))))
}

fn parse(window: &FreezeWindow) -> Result<Parsed<'_>, FreezeWindowError> {
    let name = || window.name.clone();
    let start = hhmm(&window.start).ok_or_else(|| FreezeWindowError::Start {
        window: name(),
        text: window.start.clone(),
    })?;
    let end = hhmm(&window.end).ok_or_else(|| FreezeWindowError::End {
        window: name(),
        text: window.end.clone(),
    })?;
    let days = window
        .days
        .iter()
        .map(|d| {
            weekday(d).ok_or_else(|| FreezeWindowError::Day {
                window: name(),
                text: d.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Parsed {
        window,
        start,
        end,
        days,
    })
}

/// Strict `HH:MM`, 00:00 to 23:59.
fn hhmm(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
    Time::from_hms(h, m, 0).ok()
}

/// `mon` … `sun` or the full English name, in any case.
fn weekday(text: &str) -> Option<Weekday> {
    let day = match text.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    };
    Some(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Month;

    /// A January 2026 time; 2026-01-05 is a Monday.
    fn jan(day: u8, hour: u8, minute: u8) -> OffsetDateTime {
        Date::from_calendar_date(2026, Month::January, day)
            .and_then(|d| d.with_hms(hour, minute, 0))
            .expect("valid date")
            .assume_utc()
    }

    fn window(name: &str, days: &[&str], start: &str, end: &str) -> FreezeWindow {
        FreezeWindow {
            name: name.into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
        }
    }

    fn open_name(windows: &[FreezeWindow], now: OffsetDateTime) -> Option<String> {
        freeze_window_open(windows, now)
            .expect("valid windows")
            .map(|w| w.name.clone())
    }

    #[test]
    fn inside_and_outside_a_daily_window() {
        let w = [window("lunch", &[], "12:00", "13:00")];
        assert_eq!(open_name(&w, jan(5, 12, 0)).as_deref(), Some("lunch"));
        assert_eq!(open_name(&w, jan(7, 12, 59)).as_deref(), Some("lunch"));
        assert_eq!(open_name(&w, jan(5, 13, 0)), None);
        assert_eq!(open_name(&w, jan(5, 11, 59)), None);
    }

    #[test]
    fn over_midnight_belongs_to_the_day_it_starts() {
        let w = [window("night", &["fri"], "22:00", "06:00")];
        // Friday 23:00 and Saturday 05:59 are inside; Saturday 06:00 is not.
        assert!(open_name(&w, jan(9, 23, 0)).is_some());
        assert!(open_name(&w, jan(10, 5, 59)).is_some());
        assert_eq!(open_name(&w, jan(10, 6, 0)), None);
        // Friday 05:00 belongs to Thursday's night, which is not frozen.
        assert_eq!(open_name(&w, jan(9, 5, 0)), None);
        // Saturday 23:00 starts no window.
        assert_eq!(open_name(&w, jan(10, 23, 0)), None);
        let (_, ends) = open_window(&w, jan(9, 23, 0)).unwrap().unwrap();
        assert_eq!(ends, jan(10, 6, 0));
    }

    #[test]
    fn days_filter_weekends() {
        let w = [window("weekend", &["Sat", "sunday"], "00:00", "23:59")];
        assert!(open_name(&w, jan(10, 10, 0)).is_some());
        assert!(open_name(&w, jan(11, 10, 0)).is_some());
        assert_eq!(open_name(&w, jan(12, 10, 0)), None);
    }

    #[test]
    fn equal_start_and_end_is_a_full_day() {
        let w = [window("release-day", &["wed"], "00:00", "00:00")];
        assert!(open_name(&w, jan(7, 0, 0)).is_some());
        assert!(open_name(&w, jan(7, 23, 59)).is_some());
        assert_eq!(open_name(&w, jan(8, 0, 0)), None);
        assert_eq!(open_name(&w, jan(6, 23, 59)), None);
    }

    #[test]
    fn other_offsets_are_read_in_utc() {
        let w = [window("lunch", &[], "12:00", "13:00")];
        let local = jan(5, 14, 30).replace_offset(UtcOffset::from_hms(2, 0, 0).expect("offset"));
        assert!(open_name(&w, local).is_some());
    }

    #[test]
    fn malformed_windows_are_errors_even_when_another_is_open() {
        let now = jan(5, 12, 30);
        for (start, end, days) in [
            ("25:00", "13:00", vec![]),
            ("12:00", "13:60", vec![]),
            ("9:00", "13:00", vec![]),
            ("12:00", "noon", vec![]),
            ("12:00", "13:00", vec!["funday"]),
        ] {
            let w = [
                window("ok", &[], "12:00", "13:00"),
                window("bad", &days, start, end),
            ];
            let err = freeze_window_open(&w, now)
                .expect_err("malformed window")
                .to_string();
            assert!(err.contains("\"bad\""), "{err}");
        }
    }
}
