//! What the orchestrator and its agents exchange: the agent channel's wire
//! types and gRPC service, generated from
//! `proto/sextant/agent/v1/agent.proto` (see docs/agent-channel.md), and
//! the deploy contract carried inside it ([`deploy`]).

pub mod deploy;

/// `sextant.agent.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sextant.agent.v1");
}

pub use v1::agent_service_client::AgentServiceClient;
pub use v1::agent_service_server::{AgentService, AgentServiceServer};
