//! The agent channel's wire types and gRPC service, generated from
//! `proto/sextant/agent/v1/agent.proto` (see docs/agent-channel.md).

#![allow(clippy::all, missing_docs)]

/// `sextant.agent.v1`.
pub mod v1 {
    tonic::include_proto!("sextant.agent.v1");
}

pub use v1::agent_service_client::AgentServiceClient;
pub use v1::agent_service_server::{AgentService, AgentServiceServer};
