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
    /// What set it, when the sender said (absent when nothing is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<DesiredOrigin>,
}

/// What set a desired assignment: the orchestrator's promotion and job,
/// who approved it and the promotion's trace. The `*_url` links are the
/// hub's, made from its configuration when it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DesiredOrigin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Who approved it (comma-separated when several did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The W3C trace id, 32 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The W3C span id, 16 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The sender's `service.name` (the `{service}` of trace and log links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_url: Option<String>,
}

impl DesiredOrigin {
    /// The origin when anything of it is known.
    pub fn known(self) -> Option<Self> {
        let known = self.promotion.is_some()
            || self.job.is_some()
            || self.approved_by.is_some()
            || self.trace_id.is_some();
        known.then_some(self)
    }
}
