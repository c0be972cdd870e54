//! The one duration type of the deploy contract and of the orchestrator's
//! documents and flags: `250ms`, `30s`, `5m`, `1h30m`, `1d`, `1.5s` or a
//! number of seconds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::DurationError;

/// A duration written `250ms`, `30s`, `5m`, `1h30m`, `1d`, `1.5s` or as a
/// number of seconds (a YAML or JSON number, or its text).
///
/// It prints in the largest of `h`, `m`, `s` and `ms` that keeps it whole
/// (`90s`, `2m`, `1h`, `1500ms`): one unit, which every version of the
/// contract reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "DurationRepr", into = "String")]
pub struct HumanDuration(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Seconds(f64),
    Text(String),
}

impl HumanDuration {
    /// `s` seconds.
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    /// Reads `250ms`, `30s`, `5m`, `1h30m`, `1d`, `1.5s` or a number of
    /// seconds. Negative, empty and unit-less compound text is refused.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let bad = || DurationError(text.to_owned());
        let t = text.trim();
        if t.is_empty() {
            return Err(bad());
        }
        if let Ok(seconds) = t.parse::<f64>() {
            return Duration::try_from_secs_f64(seconds)
                .map(Self)
                .map_err(|_| bad());
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = rest[digits..].trim_start();
            let letters = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let scale = match &rest[..letters] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                _ => return Err(bad()),
            };
            rest = rest[letters..].trim_start();
            let part = Duration::try_from_secs_f64(number * scale).map_err(|_| bad())?;
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(Self(total))
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        Self::parse(s)
    }
}

impl TryFrom<DurationRepr> for HumanDuration {
    type Error = DurationError;
    fn try_from(r: DurationRepr) -> Result<Self, DurationError> {
        match r {
            DurationRepr::Seconds(f) => Duration::try_from_secs_f64(f)
                .map(Self)
                .map_err(|_| DurationError(f.to_string())),
            DurationRepr::Text(s) => Self::parse(&s),
        }
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> Self {
        d.to_string()
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::PartialSchema for HumanDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A duration such as `250ms`, `30s`, `5m` or `1h30m` (or a number of seconds).",
            ))
            .examples(["30s"])
            .into()
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::ToSchema for HumanDuration {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both spellings the contract and the orchestrator's documents used
    /// read, and it prints in one unit.
    #[test]
    fn durations() {
        let d = |s: &str| serde_norway::from_str::<HumanDuration>(s).map(|d| d.0);
        assert_eq!(d("2").unwrap(), Duration::from_secs(2));
        assert_eq!(d("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(d("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(d("1.5 s").unwrap(), Duration::from_millis(1500));
        assert_eq!(d("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(d("1d").unwrap(), Duration::from_secs(86_400));
        assert!(d("-1s").is_err());
        let p = |s: &str| HumanDuration::parse(s).map(|d| d.0);
        assert!(p("5 minutes").is_err());
        assert!(p("m").is_err());
        assert!(p("").is_err());
        assert!(p("1x").is_err());
        assert_eq!(
            String::from(HumanDuration(Duration::from_millis(1500))),
            "1500ms"
        );
        assert_eq!(p("90s").unwrap().as_secs(), 90);
        for (text, printed) in [("90s", "90s"), ("2m", "2m"), ("120m", "2h"), ("0s", "0s")] {
            assert_eq!(HumanDuration::parse(text).unwrap().to_string(), printed);
        }
        // What it prints reads back.
        for ms in [0, 250, 1000, 60_000, 5_400_000, 86_400_000] {
            let d = HumanDuration(Duration::from_millis(ms));
            assert_eq!(HumanDuration::parse(&d.to_string()).unwrap(), d);
        }
    }
}
