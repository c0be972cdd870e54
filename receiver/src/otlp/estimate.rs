//! How much memory an OTLP request will hold once decoded, read off its
//! bytes before it is decoded (docs/security.md, "Memory").
//!
//! The decoded size does not follow the encoded size: a log record with no
//! fields is 2 bytes of protobuf and a 184-byte struct in a vector that
//! grows by doubling, so 64 MiB of such records decode into several
//! gigabytes. For protobuf, [`protobuf`] walks the wire format with the
//! OTLP schema (the messages of `opentelemetry-proto`, their field numbers
//! and their sizes in memory) and adds up what prost will allocate: each
//! repeated field's vector at the capacity its growth reaches, each string
//! and byte string, each allocation rounded up as the allocator does. For
//! JSON, [`json`] charges every object as the largest OTLP struct twice
//! over (its vector slot with growth) and every string an allocation: an
//! upper bound, not an estimate, since JSON is the rare path.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// What one field of a message becomes in memory.
#[derive(Clone, Copy)]
enum Field {
    /// A sub-message: inline in its parent when singular, an element of a
    /// vector when repeated.
    Message(&'static Kind, bool),
    /// A string or byte string: one allocation of its length; repeated,
    /// also a `String` in a vector.
    Bytes(bool),
    /// A repeated scalar of this many bytes in memory, packed or not; on
    /// the wire a varint (`None`) or this many bytes.
    Scalars(usize, Option<usize>),
    /// A scalar: inside its parent already. Unknown fields are skipped by
    /// prost and take nothing either.
    Scalar,
}

/// A message type: its size in memory and what each field number is.
struct Kind {
    size: usize,
    field: fn(u32) -> Field,
}

use Field::{Bytes, Message, Scalar, Scalars};

static KEY_VALUE: Kind = Kind {
    size: size_of::<KeyValue>(),
    field: |n| match n {
        1 => Bytes(false),
        2 => Message(&ANY_VALUE, false),
        _ => Scalar,
    },
};
static ANY_VALUE: Kind = Kind {
    size: size_of::<AnyValue>(),
    field: |n| match n {
        1 | 7 => Bytes(false),
        5 => Message(&ARRAY_VALUE, false),
        6 => Message(&KEY_VALUE_LIST, false),
        _ => Scalar,
    },
};
static ARRAY_VALUE: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&ANY_VALUE, true),
        _ => Scalar,
    },
};
static KEY_VALUE_LIST: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&KEY_VALUE, true),
        _ => Scalar,
    },
};
static SCOPE: Kind = Kind {
    size: size_of::<InstrumentationScope>(),
    field: |n| match n {
        1 | 2 => Bytes(false),
        3 => Message(&KEY_VALUE, true),
        _ => Scalar,
    },
};
static ENTITY_REF: Kind = Kind {
    size: size_of::<EntityRef>(),
    field: |n| match n {
        1 | 2 => Bytes(false),
        3 | 4 => Bytes(true),
        _ => Scalar,
    },
};
static RESOURCE: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&KEY_VALUE, true),
        3 => Message(&ENTITY_REF, true),
        _ => Scalar,
    },
};

static LOGS_REQUEST: Kind = Kind {
    size: size_of::<ExportLogsServiceRequest>(),
    field: |n| match n {
        1 => Message(&RESOURCE_LOGS, true),
        _ => Scalar,
    },
};
static RESOURCE_LOGS: Kind = Kind {
    size: size_of::<ResourceLogs>(),
    field: |n| match n {
        1 => Message(&RESOURCE, false),
        2 => Message(&SCOPE_LOGS, true),
        3 => Bytes(false),
        _ => Scalar,
    },
};
static SCOPE_LOGS: Kind = Kind {
    size: size_of::<ScopeLogs>(),
    field: |n| match n {
        1 => Message(&SCOPE, false),
        2 => Message(&LOG_RECORD, true),
        3 => Bytes(false),
        _ => Scalar,
    },
};
static LOG_RECORD: Kind = Kind {
    size: size_of::<LogRecord>(),
    field: |n| match n {
        3 | 9 | 10 | 12 => Bytes(false),
        5 => Message(&ANY_VALUE, false),
        6 => Message(&KEY_VALUE, true),
        _ => Scalar,
    },
};

static METRICS_REQUEST: Kind = Kind {
    size: size_of::<ExportMetricsServiceRequest>(),
    field: |n| match n {
        1 => Message(&RESOURCE_METRICS, true),
        _ => Scalar,
    },
};
static RESOURCE_METRICS: Kind = Kind {
    size: size_of::<ResourceMetrics>(),
    field: |n| match n {
        1 => Message(&RESOURCE, false),
        2 => Message(&SCOPE_METRICS, true),
        3 => Bytes(false),
        _ => Scalar,
    },
};
static SCOPE_METRICS: Kind = Kind {
    size: size_of::<ScopeMetrics>(),
    field: |n| match n {
        1 => Message(&SCOPE, false),
        2 => Message(&METRIC, true),
        3 => Bytes(false),
        _ => Scalar,
    },
};
static METRIC: Kind = Kind {
    size: size_of::<Metric>(),
    field: |n| match n {
        1..=3 => Bytes(false),
        5 | 7 => Message(&NUMBER_POINTS, false),
        9 => Message(&HISTOGRAM_POINTS, false),
        10 => Message(&EXPONENTIAL_POINTS, false),
        11 => Message(&SUMMARY_POINTS, false),
        12 => Message(&KEY_VALUE, true),
        _ => Scalar,
    },
};
/// Gauge and Sum: their data points are field 1.
static NUMBER_POINTS: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&NUMBER_POINT, true),
        _ => Scalar,
    },
};
static HISTOGRAM_POINTS: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&HISTOGRAM_POINT, true),
        _ => Scalar,
    },
};
static EXPONENTIAL_POINTS: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&EXPONENTIAL_POINT, true),
        _ => Scalar,
    },
};
static SUMMARY_POINTS: Kind = Kind {
    size: 0,
    field: |n| match n {
        1 => Message(&SUMMARY_POINT, true),
        _ => Scalar,
    },
};
static NUMBER_POINT: Kind = Kind {
    size: size_of::<NumberDataPoint>(),
    field: |n| match n {
        7 => Message(&KEY_VALUE, true),
        5 => Message(&EXEMPLAR, true),
        _ => Scalar,
    },
};
static HISTOGRAM_POINT: Kind = Kind {
    size: size_of::<HistogramDataPoint>(),
    field: |n| match n {
        9 => Message(&KEY_VALUE, true),
        6 | 7 => Scalars(8, Some(8)),
        8 => Message(&EXEMPLAR, true),
        _ => Scalar,
    },
};
static EXPONENTIAL_POINT: Kind = Kind {
    size: size_of::<ExponentialHistogramDataPoint>(),
    field: |n| match n {
        1 => Message(&KEY_VALUE, true),
        8 | 9 => Message(&BUCKETS, false),
        11 => Message(&EXEMPLAR, true),
        _ => Scalar,
    },
};
static BUCKETS: Kind = Kind {
    size: size_of::<Buckets>(),
    field: |n| match n {
        2 => Scalars(8, None),
        _ => Scalar,
    },
};
static SUMMARY_POINT: Kind = Kind {
    size: size_of::<SummaryDataPoint>(),
    field: |n| match n {
        7 => Message(&KEY_VALUE, true),
        6 => Message(&QUANTILE, true),
        _ => Scalar,
    },
};
static QUANTILE: Kind = Kind {
    size: size_of::<ValueAtQuantile>(),
    field: |_| Scalar,
};
static EXEMPLAR: Kind = Kind {
    size: size_of::<Exemplar>(),
    field: |n| match n {
        7 => Message(&KEY_VALUE, true),
        4 | 5 => Bytes(false),
        _ => Scalar,
    },
};

static TRACES_REQUEST: Kind = Kind {
    size: size_of::<ExportTraceServiceRequest>(),
    field: |n| match n {
        1 => Message(&RESOURCE_SPANS, true),
        _ => Scalar,
    },
};
static RESOURCE_SPANS: Kind = Kind {
    size: size_of::<ResourceSpans>(),
    field: |n| match n {
        1 => Message(&RESOURCE, false),
        2 => Message(&SCOPE_SPANS, true),
        3 => Bytes(false),
        _ => Scalar,
    },
};
static SCOPE_SPANS: Kind = Kind {
    size: size_of::<ScopeSpans>(),
    field: |n| match n {
        1 => Message(&SCOPE, false),
        2 => Message(&SPAN, true),
        3 => Bytes(false),
        _ => Scalar,
    },
};
static SPAN: Kind = Kind {
    size: size_of::<Span>(),
    field: |n| match n {
        1..=5 => Bytes(false),
        9 => Message(&KEY_VALUE, true),
        11 => Message(&EVENT, true),
        13 => Message(&LINK, true),
        15 => Message(&STATUS, false),
        _ => Scalar,
    },
};
static EVENT: Kind = Kind {
    size: size_of::<Event>(),
    field: |n| match n {
        2 => Bytes(false),
        3 => Message(&KEY_VALUE, true),
        _ => Scalar,
    },
};
static LINK: Kind = Kind {
    size: size_of::<Link>(),
    field: |n| match n {
        1..=3 => Bytes(false),
        4 => Message(&KEY_VALUE, true),
        _ => Scalar,
    },
};
static STATUS: Kind = Kind {
    size: 0,
    field: |n| match n {
        2 => Bytes(false),
        _ => Scalar,
    },
};

/// Which OTLP request a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    fn kind(self) -> &'static Kind {
        match self {
            Signal::Logs => &LOGS_REQUEST,
            Signal::Metrics => &METRICS_REQUEST,
            Signal::Traces => &TRACES_REQUEST,
        }
    }
}

/// The largest OTLP struct a JSON object can become.
const LARGEST_STRUCT: usize = {
    let sizes = [
        size_of::<LogRecord>(),
        size_of::<Span>(),
        size_of::<Metric>(),
        size_of::<NumberDataPoint>(),
        size_of::<HistogramDataPoint>(),
        size_of::<ExponentialHistogramDataPoint>(),
        size_of::<SummaryDataPoint>(),
        size_of::<Exemplar>(),
        size_of::<ResourceLogs>(),
        size_of::<ResourceMetrics>(),
        size_of::<ResourceSpans>(),
        size_of::<KeyValue>(),
    ];
    let mut max = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > max {
            max = sizes[i];
        }
        i += 1;
    }
    max
};

/// Deepest nesting walked; prost refuses more than 100 levels.
const MAX_DEPTH: u32 = 100;

/// What the allocator hands out for `n` bytes: at least 32, in steps of 16
/// with an 8-byte header (glibc's malloc).
fn allocation(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n.saturating_add(8 + 15) & !15).max(32)
    }
}

/// The capacity a vector of `n` elements reaches when filled one by one.
fn capacity(n: usize, element: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let min = if element == 1 {
        8
    } else if element <= 1024 {
        4
    } else {
        1
    };
    n.checked_next_power_of_two().unwrap_or(usize::MAX).max(min)
}

/// The memory a protobuf request of `signal` holds once decoded. Bytes
/// that are not valid protobuf end the walk (the decoder refuses them
/// anyway); what was counted until then is returned.
pub fn protobuf(signal: Signal, bytes: &[u8]) -> usize {
    let kind = signal.kind();
    kind.size.saturating_add(walk(bytes, kind, 0))
}

/// The memory `bytes` of a message of `kind` hold beyond the struct itself.
fn walk(mut bytes: &[u8], kind: &Kind, depth: u32) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    // Elements per repeated field (OTLP field numbers stay under 17).
    let mut counts = [0usize; 17];
    let mut total = 0usize;
    while !bytes.is_empty() {
        let Some(key) = varint(&mut bytes) else { break };
        let (number, wire) = ((key >> 3) as u32, key & 7);
        let field = if number < 17 {
            (kind.field)(number)
        } else {
            Scalar
        };
        let payload = match wire {
            0 => {
                if varint(&mut bytes).is_none() {
                    break;
                }
                None
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if bytes.len() < n {
                    break;
                }
                bytes = &bytes[n..];
                None
            }
            2 => {
                let Some(len) = varint(&mut bytes) else { break };
                let Ok(len) = usize::try_from(len) else { break };
                if bytes.len() < len {
                    break;
                }
                let (payload, rest) = bytes.split_at(len);
                bytes = rest;
                Some(payload)
            }
            _ => break,
        };
        total = total.saturating_add(match (field, payload) {
            (Message(child, repeated), Some(payload)) => {
                if repeated {
                    counts[number as usize] += 1;
                }
                walk(payload, child, depth + 1)
            }
            (Bytes(repeated), Some(payload)) => {
                if repeated {
                    counts[number as usize] += 1;
                }
                allocation(payload.len())
            }
            // Packed: the elements are varints or fixed-size values.
            (Scalars(_, wire), Some(payload)) => {
                counts[number as usize] += match wire {
                    Some(size) => payload.len() / size,
                    None => payload.iter().filter(|b| *b & 0x80 == 0).count(),
                };
                0
            }
            (Scalars(..), None) => {
                counts[number as usize] += 1;
                0
            }
            _ => 0,
        });
    }
    for (number, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let element = match (kind.field)(number as u32) {
            Message(child, _) => child.size,
            Bytes(_) => size_of::<String>(),
            Scalars(size, _) => size,
            Scalar => 0,
        };
        total = total.saturating_add(allocation(capacity(n, element).saturating_mul(element)));
    }
    total
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// An upper bound of the memory a JSON request holds once decoded: every
/// object the largest OTLP struct in a vector slot with growth, every
/// string an allocation, and the text itself once more (serde buffers
/// flattened objects).
pub fn json(bytes: &[u8]) -> usize {
    let objects = bytes.iter().filter(|b| **b == b'{').count();
    let quotes = bytes.iter().filter(|b| **b == b'"').count();
    objects
        .saturating_mul(2 * LARGEST_STRUCT)
        .saturating_add((quotes / 2).saturating_mul(32))
        .saturating_add(bytes.len())
}

#[cfg(test)]
mod tests;
