//! W3C trace context: a span's `traceparent`, a span parented on one (from
//! a stored value or from HTTP headers), the headers of an outgoing
//! request, and a span recorded after the fact.

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::SCOPE;

pub(super) fn global_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}
/// The W3C `traceparent` of a span, when it has a valid context (the
/// telemetry is installed and the span enabled).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The context a `traceparent` names; `None` when it does not parse.
fn context_of(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the span a `traceparent` names (a stored
/// promotion's, a task's). Call it before the span is first entered. A
/// value that does not parse leaves the span where it was; says whether
/// the parent was set.
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    context_of(traceparent).is_some_and(|cx| span.set_parent(cx).is_ok())
}

/// Makes `span` a child of the span `traceparent` names (a promotion's),
/// linked to the span it would have had (the request acting on it), so
/// that both traces lead to each other.
pub fn link_and_reparent(span: &tracing::Span, traceparent: &str) -> bool {
    let Some(cx) = context_of(traceparent) else {
        return false;
    };
    let current = tracing::Span::current().context();
    let caller = current.span().span_context().clone();
    if span.set_parent(cx).is_err() {
        return false;
    }
    if caller.is_valid() {
        span.add_link(caller);
    }
    true
}

/// W3C `traceparent` (and `tracestate`) headers for the current span, for
/// an outgoing request (a gate's webhook, the hub, a health probe); empty
/// outside a traced span.
pub fn current_headers() -> http::HeaderMap {
    let mut carrier = HashMap::new();
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    }
    carrier
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                http::HeaderValue::from_str(&v).ok()?,
            ))
        })
        .collect()
}

/// Records a span that has already happened (an approval's wait, from the
/// request to the decision) under the span `parent` names. Nothing is
/// recorded when `parent` does not parse.
pub fn record_span(
    name: &'static str,
    parent: &str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    let Some(cx) = context_of(parent) else {
        return;
    };
    let tracer = opentelemetry::global::tracer(SCOPE);
    let mut span = tracer
        .span_builder(name)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, &cx);
    span.end_with_timestamp(end);
}
