//! Timestamps as nanoseconds since the Unix epoch, the unit OTLP uses.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Nanoseconds since the Unix epoch. Stored as `i64` (good until 2262), and
/// serialized as an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    /// The current time.
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// Converts an OTLP `fixed64` timestamp; `None` when it is 0 (unset) or
    /// beyond what `i64` holds.
    pub fn from_otlp(nanos: u64) -> Option<Self> {
        if nanos == 0 {
            return None;
        }
        i64::try_from(nanos).ok().map(Self)
    }

    /// RFC 3339 with nanosecond precision, in UTC.
    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }

    /// Parses RFC 3339.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos()).ok().map(Self)
    }
}

/// In the API, a time is an RFC 3339 string with nanoseconds, in UTC.
impl utoipa::PartialSchema for UnixNanos {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .examples(["2026-11-06T21:20:00.123456789Z"])
            .into()
    }
}

impl utoipa::ToSchema for UnixNanos {}

impl Serialize for UnixNanos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

/// Reads what [`Serialize`] writes: RFC 3339, or the integer it falls
/// back to for a time `time` cannot format.
impl<'de> Deserialize<'de> for UnixNanos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&text)
            .or_else(|| text.parse().ok().map(Self))
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = UnixNanos(1_794_000_000_123_456_789);
        let s = t.to_rfc3339();
        assert_eq!(s, "2026-11-06T21:20:00.123456789Z");
        assert_eq!(UnixNanos::parse_rfc3339(&s), Some(t));
    }

    #[test]
    fn otlp_zero_is_unset_and_overflow_is_rejected() {
        assert_eq!(UnixNanos::from_otlp(0), None);
        assert_eq!(UnixNanos::from_otlp(u64::MAX), None);
        assert_eq!(UnixNanos::from_otlp(5), Some(UnixNanos(5)));
    }
}
