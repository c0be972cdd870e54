//! Who reported an observed row: its [`Source`], the reconciler type as the
//! hub reads it. Shared by the read views (`view.rs`) and the reports
//! (`report.rs`), so it depends on neither.

use serde::{Deserialize, Serialize};

/// What kind of reporter an observed row came from: the reconciler type
/// (`sextant.reconciler.type`) as the hub reads it. `flux`, `argocd`,
/// `agent` (Sextant's own agent; its older releases sent `docker`) and
/// `kalypso` (`sextant report -f` with Kalypso YAML) are named as they
/// are sent, in any case; everything else, including a report that named
/// no reconciler, is `otlp`. The hub maps types to sources when it reads
/// (`receiver/src/store/sql.rs`), so stored rows keep their reconciler.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flux,
    Argocd,
    Agent,
    Kalypso,
    Otlp,
}

impl Source {
    /// Every source, in the order lists and messages name them.
    pub const ALL: [Source; 5] = [
        Source::Flux,
        Source::Argocd,
        Source::Agent,
        Source::Kalypso,
        Source::Otlp,
    ];

    /// Whether this source reports on a schedule, so that silence means a
    /// host is gone (stale). Argo CD Notifications posts only when an
    /// Application's state changes: its rows are never stale
    /// (docs/reconcilers.md, "Limits").
    pub fn reports_periodically(self) -> bool {
        !matches!(self, Source::Argocd)
    }

    /// Whether a host whose newest report is `last_seen_at` and whose rows
    /// come from `sources` is stale: silent since `stale_before` and
    /// reported by at least one source that reports on a schedule.
    pub fn host_is_stale(sources: &[Source], last_seen_at: i64, stale_before: i64) -> bool {
        last_seen_at < stale_before && sources.iter().any(|s| s.reports_periodically())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flux => "flux",
            Source::Argocd => "argocd",
            Source::Agent => "agent",
            Source::Kalypso => "kalypso",
            Source::Otlp => "otlp",
        }
    }

    /// The source of a stored reconciler type; the same mapping as the
    /// store's SQL (`source_of!` in `receiver/src/store/sql.rs`).
    pub fn of_reconciler_type(kind: &str) -> Self {
        match kind.to_ascii_lowercase().as_str() {
            "flux" => Source::Flux,
            "argocd" => Source::Argocd,
            "agent" | "docker" => Source::Agent,
            "kalypso" => Source::Kalypso,
            _ => Source::Otlp,
        }
    }

    /// The allowed names, for error messages: `flux, argocd, agent, kalypso, otlp`.
    pub fn names() -> String {
        Self::ALL.map(Source::as_str).join(", ")
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source {0:?}: expected one of flux, argocd, agent, kalypso, otlp")]
pub struct UnknownSource(pub String);

impl std::str::FromStr for Source {
    type Err = UnknownSource;

    /// Exactly one of the canonical names (what the API accepts and
    /// answers), not a reconciler type.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciler_types_map_to_sources() {
        for (kind, source) in [
            ("flux", Source::Flux),
            ("Flux", Source::Flux),
            ("argocd", Source::Argocd),
            ("agent", Source::Agent),
            ("docker", Source::Agent),
            ("kalypso", Source::Kalypso),
            ("", Source::Otlp),
            ("helm", Source::Otlp),
        ] {
            assert_eq!(Source::of_reconciler_type(kind), source, "{kind:?}");
        }
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>(), Ok(source));
        }
        let err = "docker".parse::<Source>().expect_err("not a source");
        assert!(
            err.to_string()
                .contains("flux, argocd, agent, kalypso, otlp")
        );
    }
}
