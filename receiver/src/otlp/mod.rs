//! The OTLP receiver: gRPC and HTTP transports over one ingest path.

pub mod extract;
pub mod grpc;
pub mod http;
pub mod ingest;
