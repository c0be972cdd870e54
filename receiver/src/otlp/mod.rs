//! The OTLP receiver: gRPC and HTTP transports over one ingest path.

pub mod admission;
pub mod body;
pub mod estimate;
pub mod extract;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod outcome;
pub mod window;
