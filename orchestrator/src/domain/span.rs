//! `Span`: a duration as people write it in the orchestrator's documents
//! (`30s`, `5m`, `1h30m`, `250ms`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A duration written as `30s`, `5m`, `1h30m` or `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {text:?}: expected a number")]
    NoNumber { text: String },
    #[error("invalid duration {text:?}")]
    Number { text: String },
    #[error("invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)")]
    Unit { text: String, unit: String },
}

impl Span {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub fn parse(text: &str) -> Result<Self, SpanError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpanError::Empty);
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(SpanError::NoNumber {
                    text: text.to_owned(),
                });
            }
            let n: u64 = rest[..digits].parse().map_err(|_| SpanError::Number {
                text: text.to_owned(),
            })?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            total += match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                "d" => Duration::from_secs(n * 86_400),
                other => {
                    return Err(SpanError::Unit {
                        text: text.to_owned(),
                        unit: other.to_owned(),
                    });
                }
            };
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Span {
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

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Span {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A duration such as `30s`, `5m`, `1h30m` or `250ms`."))
            .examples(["30s"])
            .into()
    }
}

impl ToSchema for Span {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("1h30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(Span::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(Span::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Span::parse("2m").unwrap().to_string(), "2m");
        assert!(Span::parse("5 minutes").is_err());
        assert!(Span::parse("m").is_err());
    }
}
