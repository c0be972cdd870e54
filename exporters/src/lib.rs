//! Sextant's exporters: the durable OTLP outbox and its sender.
