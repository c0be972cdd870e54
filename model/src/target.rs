//! What names a deployment target and what it should run: [`TargetRef`]
//! and [`DesiredView`]. Shared by the read views (`view.rs`) and the
//! reports (`report.rs`), so it depends on neither.

use serde::{Deserialize, Serialize};

use crate::time::UnixNanos;

/// Where a workload is deployed: (workspace, application, workload,
/// environment, target).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct TargetRef {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    pub environment: String,
    pub target: String,
}

/// The latest desired assignment of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DesiredView {
    pub version: String,
    pub revision: String,
    pub at: UnixNanos,
}
