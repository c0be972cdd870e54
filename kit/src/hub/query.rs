//! The parameters of each endpoint, as the hub takes them. Unset fields
//! are not sent; the hub refuses parameters an endpoint does not know, so
//! each endpoint has its own type.

use sextant_model::{HostsListed, Source};

/// Query pairs in the order they are sent.
pub(crate) type Pairs = Vec<(&'static str, String)>;

fn push(pairs: &mut Pairs, name: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        pairs.push((name, v.clone()));
    }
}

/// `limit` and `cursor` of a list. The hub's default limit is 100, its
/// largest 1000; `cursor` is the `next_cursor` of the page before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The largest page the hub answers.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            cursor: None,
        }
    }

    pub(crate) fn push_to(&self, pairs: &mut Pairs) {
        push(pairs, "limit", &self.limit.map(|l| l.to_string()));
        push(pairs, "cursor", &self.cursor);
    }
}

/// Only rows reported by these sources, and by the reconciler of this
/// name; empty filters nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFilter {
    pub sources: Vec<Source>,
    pub reconciler: Option<String>,
}

impl SourceFilter {
    fn push(&self, pairs: &mut Pairs) {
        if !self.sources.is_empty() {
            let names: Vec<&str> = self.sources.iter().map(|s| s.as_str()).collect();
            pairs.push(("source", names.join(",")));
        }
        push(pairs, "reconciler", &self.reconciler);
    }
}

/// Filters of an environment's state
/// (`GET /api/v1/environments/{environment}/state`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFilter {
    pub application: Option<String>,
    pub workspace: Option<String>,
    pub workload: Option<String>,
    pub target: Option<String>,
    pub source: SourceFilter,
}

impl StateFilter {
    pub(crate) fn pairs(&self) -> Pairs {
        let mut pairs = Pairs::new();
        push(&mut pairs, "application", &self.application);
        push(&mut pairs, "workspace", &self.workspace);
        push(&mut pairs, "workload", &self.workload);
        push(&mut pairs, "target", &self.target);
        self.source.push(&mut pairs);
        pairs
    }
}

/// `GET /api/v1/compare`: two or more environments side by side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompareQuery {
    pub environments: Vec<String>,
    pub application: Option<String>,
    pub workspace: Option<String>,
    pub workload: Option<String>,
}

impl CompareQuery {
    pub(crate) fn pairs(&self, page: &PageRequest) -> Pairs {
        let mut pairs = vec![("environments", self.environments.join(","))];
        push(&mut pairs, "application", &self.application);
        push(&mut pairs, "workspace", &self.workspace);
        push(&mut pairs, "workload", &self.workload);
        page.push_to(&mut pairs);
        pairs
    }
}

/// The filters of the hub's lists of rows (drift, history, hosts): each
/// narrows the rows to one name, and `source` to what some sources report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFilter {
    pub environment: Option<String>,
    pub application: Option<String>,
    pub workspace: Option<String>,
    pub workload: Option<String>,
    pub target: Option<String>,
    pub host: Option<String>,
    pub source: SourceFilter,
}

impl RowFilter {
    pub(crate) fn pairs(&self, page: &PageRequest) -> Pairs {
        let mut pairs = Pairs::new();
        self.push_to(&mut pairs);
        page.push_to(&mut pairs);
        pairs
    }

    fn push_to(&self, pairs: &mut Pairs) {
        push(pairs, "environment", &self.environment);
        push(pairs, "application", &self.application);
        push(pairs, "workspace", &self.workspace);
        push(pairs, "workload", &self.workload);
        push(pairs, "target", &self.target);
        push(pairs, "host", &self.host);
        self.source.push(pairs);
    }
}

/// `GET /api/v1/drift`: every (host, target) off its desired state.
pub type DriftQuery = RowFilter;

/// `GET /api/v1/hosts`: hosts with when they last reported.
pub type HostsQuery = RowFilter;

/// `GET /api/v1/history`: desired assignments and observed status
/// changes, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Its `source` keeps observed changes from those sources only
    /// (desired assignments are always listed).
    pub filter: RowFilter,
    /// An RFC 3339 time or a duration back from the hub's now (`30m`,
    /// `12h`, `7d`).
    pub since: Option<String>,
    /// The end of the range (inclusive), like `since`.
    pub until: Option<String>,
}

impl HistoryQuery {
    pub(crate) fn pairs(&self, page: &PageRequest) -> Pairs {
        let mut pairs = Pairs::new();
        self.filter.push_to(&mut pairs);
        push(&mut pairs, "since", &self.since);
        push(&mut pairs, "until", &self.until);
        page.push_to(&mut pairs);
        pairs
    }
}

/// `GET /api/v1/insights/dora`: DORA's five metrics over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoraQuery {
    /// Its `host` is not used: deployments are per target.
    pub filter: RowFilter,
    /// An RFC 3339 time or a duration back from the hub's now; the hub's
    /// default is 30 days back.
    pub since: Option<String>,
    pub until: Option<String>,
    /// `day` or `week`.
    pub bucket: Option<String>,
}

impl DoraQuery {
    pub(crate) fn pairs(&self) -> Pairs {
        let mut pairs = Pairs::new();
        self.filter.push_to(&mut pairs);
        push(&mut pairs, "since", &self.since);
        push(&mut pairs, "until", &self.until);
        push(&mut pairs, "bucket", &self.bucket);
        pairs
    }
}

/// `GET /api/v1/rollout`: a workload's rollout in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutQuery {
    pub workload: String,
    pub environment: String,
    pub target: Option<String>,
    pub application: Option<String>,
    pub workspace: Option<String>,
    /// Which hosts to list: those needing attention (the hub's default) or
    /// all of them.
    pub hosts: Option<HostsListed>,
    /// With `attention`, how many hosts to list (1–1000; the hub's
    /// default is 100).
    pub limit: Option<u32>,
}

impl RolloutQuery {
    /// The rollout of `workload` in `environment`, over all its targets.
    pub fn new(workload: impl Into<String>, environment: impl Into<String>) -> Self {
        Self {
            workload: workload.into(),
            environment: environment.into(),
            target: None,
            application: None,
            workspace: None,
            hosts: None,
            limit: None,
        }
    }

    pub(crate) fn pairs(&self) -> Pairs {
        let mut pairs = vec![
            ("workload", self.workload.clone()),
            ("environment", self.environment.clone()),
        ];
        push(&mut pairs, "target", &self.target);
        push(&mut pairs, "application", &self.application);
        push(&mut pairs, "workspace", &self.workspace);
        push(
            &mut pairs,
            "hosts",
            &self.hosts.map(|h| h.as_str().to_owned()),
        );
        push(&mut pairs, "limit", &self.limit.map(|l| l.to_string()));
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_parameters_are_not_sent_and_sources_are_joined() {
        let q = DriftQuery {
            environment: Some("prod".into()),
            source: SourceFilter {
                sources: vec![Source::Flux, Source::Agent],
                reconciler: None,
            },
            ..DriftQuery::default()
        };
        assert_eq!(
            q.pairs(&PageRequest::first(10)),
            [
                ("environment", "prod".to_owned()),
                ("source", "flux,agent".to_owned()),
                ("limit", "10".to_owned()),
            ]
        );
        let mut r = RolloutQuery::new("checkout", "prod");
        r.hosts = Some(HostsListed::All);
        assert_eq!(
            r.pairs(),
            [
                ("workload", "checkout".to_owned()),
                ("environment", "prod".to_owned()),
                ("hosts", "all".to_owned()),
            ]
        );
    }
}
