//! Query parameters the API and the UI both read: the source filter and
//! times. Each surface turns a [`ParamError`] into its own answer (a JSON
//! 400 or an error page).

use sextant_model::{Source, UnixNanos};

use crate::store::SourceFilter;

/// A query parameter that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A name in `source` that is not a source.
    #[error("unknown source {0:?}: source takes {names} (comma-separated)", names = Source::names())]
    UnknownSource(String),
    /// A time parameter that is neither a time nor a duration.
    #[error("{name}={value:?} is neither an RFC 3339 time nor a duration such as 30m, 12h or 7d")]
    Time { name: String, value: String },
}

/// Reads `source` (comma-separated source names) and `reconciler` (a
/// reconciler name) into a filter; an unknown source names the allowed
/// ones. Empty values filter nothing.
pub(crate) fn source_filter(
    source: Option<&str>,
    reconciler: Option<String>,
) -> Result<SourceFilter, ParamError> {
    let sources = source
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Source>()
                .map_err(|_| ParamError::UnknownSource(s.to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SourceFilter {
        sources,
        reconciler: reconciler.filter(|r| !r.is_empty()),
    })
}

/// Parses an RFC 3339 time or a duration back from now (`90s`, `30m`,
/// `12h`, `7d`); `name` is the parameter's, for the error.
pub(crate) fn parse_time(name: &str, value: &str, now: UnixNanos) -> Result<UnixNanos, ParamError> {
    if let Some(t) = UnixNanos::parse_rfc3339(value) {
        return Ok(t);
    }
    let (digits, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    digits
        .parse::<i64>()
        .ok()
        .filter(|_| seconds > 0)
        .and_then(|n| n.checked_mul(seconds)?.checked_mul(1_000_000_000))
        .map(|back| UnixNanos(now.0.saturating_sub(back)))
        .ok_or_else(|| ParamError::Time {
            name: name.to_owned(),
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_durations_back_from_now() {
        let now = UnixNanos(10 * 86_400 * 1_000_000_000);
        assert_eq!(
            parse_time("since", "7d", now).unwrap(),
            UnixNanos(3 * 86_400 * 1_000_000_000)
        );
        assert_eq!(
            parse_time("since", "1970-01-01T00:00:01Z", now).unwrap(),
            UnixNanos(1_000_000_000)
        );
        for bad in ["", "7", "d", "7y", "-1d", "99999999999999999d"] {
            assert!(parse_time("since", bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_keep_the_api_messages() {
        let err = source_filter(Some("flux,helm"), None).expect_err("helm is no source");
        assert_eq!(
            err.to_string(),
            "unknown source \"helm\": source takes flux, argocd, agent, kalypso, otlp (comma-separated)"
        );
        let err = parse_time("until", "soon", UnixNanos(0)).expect_err("not a time");
        assert_eq!(
            err.to_string(),
            "until=\"soon\" is neither an RFC 3339 time nor a duration such as 30m, 12h or 7d"
        );
    }
}
