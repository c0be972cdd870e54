//! How a batch of observations changes current state and history. Shared by
//! both backends: they load the current rows, ask for a plan, and write it.
//!
//! Rules (OTLP is at-least-once and may reorder):
//! - a newer observation replaces the current row; it adds a history row only
//!   when revision, status or message changed;
//! - a replay (same time, same content) changes nothing;
//! - an older observation never touches current state; it is handed back as
//!   *late*, for the backend to place in history if it is a change there.

use std::collections::HashMap;

/// Identifies one current-state row: (host, reconciler, target) ids.
pub type ObservedKey = (i64, i64, i64);

/// The content of one observation, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRow {
    pub revision: String,
    pub status: &'static str,
    pub message: Option<String>,
    /// The orchestrator job behind it (not part of its content: a
    /// heartbeat without it keeps the last change's job).
    pub job: Option<String>,
    /// The commit time the report gave (`sextant.commit.time`), for
    /// `revision_times`; not part of its content either.
    pub commit_time: Option<i64>,
    pub observed_at: i64,
}

impl ObservedRow {
    /// Same revision, status and message.
    pub fn same_content(&self, other: &ObservedRow) -> bool {
        self.revision == other.revision
            && self.status == other.status
            && self.message == other.message
    }
}

/// What to write for a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New current rows, with `changed` telling whether the content changed
    /// (false: only `observed_at` moves forward).
    pub upserts: Vec<(ObservedKey, ObservedRow, bool)>,
    /// History rows to insert (status changes).
    pub history: Vec<(ObservedKey, ObservedRow)>,
    /// Observations older than current state.
    pub late: Vec<(ObservedKey, ObservedRow)>,
}

/// Plans a batch against the current rows of its keys.
pub fn plan(
    current: &HashMap<ObservedKey, ObservedRow>,
    mut batch: Vec<(ObservedKey, ObservedRow)>,
) -> Plan {
    batch.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.observed_at.cmp(&b.1.observed_at)));
    let mut plan = Plan::default();
    let mut i = 0;
    while i < batch.len() {
        let key = batch[i].0;
        let mut state = current.get(&key).cloned();
        let mut dirty = false;
        let mut changed = false;
        while i < batch.len() && batch[i].0 == key {
            let row = std::mem::replace(
                &mut batch[i].1,
                ObservedRow {
                    revision: String::new(),
                    status: "",
                    message: None,
                    job: None,
                    commit_time: None,
                    observed_at: 0,
                },
            );
            i += 1;
            match &state {
                Some(s) if row.observed_at <= s.observed_at => {
                    let replay = row.observed_at == s.observed_at && row.same_content(s);
                    if !replay {
                        plan.late.push((key, row));
                    }
                }
                previous => {
                    let is_change = previous.as_ref().is_none_or(|s| !s.same_content(&row));
                    if is_change {
                        plan.history.push((key, row.clone()));
                        changed = true;
                    }
                    dirty = true;
                    state = Some(row);
                }
            }
        }
        if dirty && let Some(s) = state {
            plan.upserts.push((key, s, changed));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rev: &str, status: &'static str, at: i64) -> ObservedRow {
        ObservedRow {
            revision: rev.into(),
            status,
            message: None,
            job: None,
            commit_time: None,
            observed_at: at,
        }
    }

    const K: ObservedKey = (1, 1, 1);

    #[test]
    fn first_report_creates_current_and_history() {
        let p = plan(&HashMap::new(), vec![(K, row("r1", "succeeded", 10))]);
        assert_eq!(p.upserts, vec![(K, row("r1", "succeeded", 10), true)]);
        assert_eq!(p.history, vec![(K, row("r1", "succeeded", 10))]);
        assert!(p.late.is_empty());
    }

    #[test]
    fn unchanged_heartbeat_moves_time_without_history() {
        let current = HashMap::from([(K, row("r1", "succeeded", 10))]);
        let p = plan(&current, vec![(K, row("r1", "succeeded", 20))]);
        assert_eq!(p.upserts, vec![(K, row("r1", "succeeded", 20), false)]);
        assert!(p.history.is_empty());
    }

    #[test]
    fn replay_changes_nothing() {
        let current = HashMap::from([(K, row("r1", "succeeded", 10))]);
        let p = plan(&current, vec![(K, row("r1", "succeeded", 10))]);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn late_report_never_overwrites_current() {
        let current = HashMap::from([(K, row("r2", "succeeded", 20))]);
        let p = plan(&current, vec![(K, row("r1", "failed", 15))]);
        assert!(p.upserts.is_empty());
        assert_eq!(p.late, vec![(K, row("r1", "failed", 15))]);
    }

    #[test]
    fn a_batch_out_of_order_is_applied_in_time_order() {
        let p = plan(
            &HashMap::new(),
            vec![
                (K, row("r2", "succeeded", 30)),
                (K, row("r2", "in_progress", 20)),
                (K, row("r1", "succeeded", 10)),
                (K, row("r1", "succeeded", 12)),
            ],
        );
        assert_eq!(p.upserts, vec![(K, row("r2", "succeeded", 30), true)]);
        let times: Vec<i64> = p.history.iter().map(|(_, r)| r.observed_at).collect();
        assert_eq!(times, vec![10, 20, 30]);
    }
}
