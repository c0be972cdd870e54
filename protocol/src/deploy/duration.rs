//! The duration type of the deploy contract: `500ms`, `2s`, `1m`, `1h` or a
//! number of seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::DurationError;

/// A duration written `500ms`, `2s`, `1m`, `1h` or as a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "DurationRepr", into = "String")]
pub struct HumanDuration(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Seconds(f64),
    Text(String),
}

impl TryFrom<DurationRepr> for HumanDuration {
    type Error = DurationError;
    fn try_from(r: DurationRepr) -> Result<Self, DurationError> {
        let bad = |s: &str| DurationError(s.to_owned());
        let secs = |f: f64, s: &str| Duration::try_from_secs_f64(f).map(Self).map_err(|_| bad(s));
        match r {
            DurationRepr::Seconds(f) => secs(f, &f.to_string()),
            DurationRepr::Text(s) => {
                let t = s.trim();
                let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = t.strip_suffix('s') {
                    (n, 1.0)
                } else if let Some(n) = t.strip_suffix('m') {
                    (n, 60.0)
                } else if let Some(n) = t.strip_suffix('h') {
                    (n, 3600.0)
                } else {
                    (t, 1.0)
                };
                let f: f64 = num.trim().parse().map_err(|_| bad(&s))?;
                secs(f * scale, &s)
            }
        }
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> Self {
        let ms = d.0.as_millis();
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| serde_norway::from_str::<HumanDuration>(s).map(|d| d.0);
        assert_eq!(d("2").unwrap(), Duration::from_secs(2));
        assert_eq!(d("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(d("1m").unwrap(), Duration::from_secs(60));
        assert!(d("-1s").is_err());
        assert_eq!(
            String::from(HumanDuration(Duration::from_millis(1500))),
            "1500ms"
        );
    }
}
