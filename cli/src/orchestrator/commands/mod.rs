//! The client commands, one function each, one file per resource: they
//! call the API and print a table (or the API's JSON with `--output
//! json`). The path segment and span checks they share are here.

mod agents;
mod apply;
mod jobs;
mod promotion;
mod release;

pub use agents::{AgentsArgs, agents};
pub use apply::{ApplyArgs, apply};
pub use jobs::{DeploymentsArgs, RollbackArgs, deployments, rollback};
pub use promotion::{
    DecisionArgs, GateArgs, PromoteArgs, PromotionsArgs, decide, gate, promote, promotions,
};
pub use release::{ReleaseArgs, release};

use anyhow::bail;
use sextant_orchestrator::domain::{Span, SpanError};

fn span(text: &str) -> Result<Span, SpanError> {
    Span::parse(text)
}

/// A path segment: ids and names are sent as they are, but never with a
/// `/` or `?` that would change the route.
fn seg(text: &str) -> anyhow::Result<&str> {
    if text.is_empty() || text.contains(['/', '?', '#', '%']) {
        bail!("{text:?} is not a valid id or name");
    }
    Ok(text)
}
