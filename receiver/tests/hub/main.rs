//! Integration tests of the hub: one suite, run against SQLite and PostgreSQL.

mod helpers;

mod api;
mod counts;
mod dora;
mod fuzz;
mod hardening;
mod ingest;
mod lists;
mod otlp_errors;
mod otlp_grpc;
mod rate_limits;
mod reconcilers;
mod report_cache;
mod reports;
mod router;
mod shutdown;
mod sources;
mod tenants;
mod tls;
mod ui;
