//! The rules of DORA's five metrics over a window (`docs/insights.md`):
//! the hub's store hands over each deployment's facts, kept at ingest, and
//! [`report`] turns them into a [`DoraReport`]. Pure, so that the API, the
//! `/metrics` gauges and the tests all count alike.

use crate::insights::{Band, Bucket, DoraGroup, DoraMetrics, DoraPoint, DoraReport};
use crate::time::UnixNanos;

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
/// A month, for the bands: 30 days.
const MONTH: i64 = 30 * DAY;

/// One deployment as the store keeps it (its baseline rows left out),
/// with the facts that need no other deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentFacts {
    /// Which (workspace, application, workload, environment) it belongs to:
    /// an index into the groups handed to [`report`].
    pub group: usize,
    /// Its target; a target's deployments come together, in start order.
    pub target: i64,
    /// When the target started running the revision.
    pub started_at: i64,
    /// The first `succeeded` report of its revision while it was current.
    pub first_succeeded_at: Option<i64>,
    /// When it failed: its first `failed` report while current, or the
    /// start of the rollback that undid it, whichever came first.
    pub failed_at: Option<i64>,
    /// Its first `failed` report while current, if any: where its recovery
    /// time starts. A deployment that only a rollback marked failed was
    /// failing from its start, and its recovery time starts there.
    pub failure_reported_at: Option<i64>,
    /// Whether the deployment before it on the target failed.
    pub rework: bool,
    /// Where its lead time starts: the revision's commit time, else its
    /// first sighting in the workload.
    pub lead_start: Option<i64>,
}

/// The groups' names: workspace, application, workload, environment.
pub type GroupKey = (String, String, String, String);

/// What is counted of one set of deployments before it becomes figures.
#[derive(Debug, Default, Clone)]
struct Tally {
    deployments: u64,
    lead_times: Vec<f64>,
    failed: u64,
    recoveries: Vec<f64>,
    unrecovered: u64,
    rework: u64,
}

impl Tally {
    fn metrics(mut self, days: f64) -> DoraMetrics {
        let per_day = if days > 0.0 {
            self.deployments as f64 / days
        } else {
            0.0
        };
        let lead = median(&mut self.lead_times);
        let recovery = median(&mut self.recoveries);
        let rate = |n: u64| (self.deployments > 0).then(|| n as f64 / self.deployments as f64);
        let change_fail_rate = rate(self.failed);
        DoraMetrics {
            deployments: self.deployments,
            deployments_per_day: per_day,
            deployment_frequency_band: (self.deployments > 0).then(|| frequency_band(per_day)),
            lead_time_seconds: lead,
            lead_time_deployments: self.lead_times.len() as u64,
            lead_time_band: lead.map(lead_time_band),
            failed_deployments: self.failed,
            change_fail_rate,
            change_fail_rate_band: change_fail_rate.map(change_fail_rate_band),
            recovery_time_seconds: recovery,
            recovered_failures: self.recoveries.len() as u64,
            unrecovered_failures: self.unrecovered,
            recovery_time_band: recovery.map(recovery_time_band),
            rework_deployments: self.rework,
            rework_rate: rate(self.rework),
        }
    }
}

/// The median of `values` (the mean of the middle two of an even count),
/// or `None` for none.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    // Selection, not a sort: linear in the count, which for the whole
    // estate's lead times is every deployment of the window.
    let even = values.len().is_multiple_of(2);
    let mid = values.len() / 2;
    let (lower, at_mid, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let at_mid = *at_mid;
    Some(if even {
        // The lower half's largest is the other middle value.
        let below = lower
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(at_mid);
        (below + at_mid) / 2.0
    } else {
        at_mid
    })
}

/// The first instant of the bucket `at` falls in: UTC midnight, or
/// Monday's for weeks (1970-01-05 was a Monday).
pub fn bucket_start(bucket: Bucket, at: i64) -> i64 {
    match bucket {
        Bucket::Day => at - at.rem_euclid(DAY),
        Bucket::Week => at - (at - 4 * DAY).rem_euclid(WEEK),
    }
}

/// Deployment frequency's band: elite at one or more a day (dora.dev:
/// "on demand"), high at one a week or more, medium at one a month (30
/// days) or more, else low.
pub fn frequency_band(per_day: f64) -> Band {
    if per_day >= 1.0 {
        Band::Elite
    } else if per_day >= 1.0 / 7.0 {
        Band::High
    } else if per_day >= 1.0 / 30.0 {
        Band::Medium
    } else {
        Band::Low
    }
}

/// Change lead time's band: elite under a day, high up to a week, medium
/// up to a month (30 days), else low.
pub fn lead_time_band(seconds: f64) -> Band {
    let nanos = seconds * SECOND as f64;
    if nanos < DAY as f64 {
        Band::Elite
    } else if nanos <= WEEK as f64 {
        Band::High
    } else if nanos <= MONTH as f64 {
        Band::Medium
    } else {
        Band::Low
    }
}

/// Change fail rate's band: elite up to 5 %, high up to 20 %, medium
/// under 40 %, low from 40 % (docs/insights.md says why these cuts).
pub fn change_fail_rate_band(rate: f64) -> Band {
    if rate <= 0.05 {
        Band::Elite
    } else if rate <= 0.20 {
        Band::High
    } else if rate < 0.40 {
        Band::Medium
    } else {
        Band::Low
    }
}

/// Failed deployment recovery time's band: elite under an hour, high
/// under a day, medium under a week, else low.
pub fn recovery_time_band(seconds: f64) -> Band {
    let nanos = seconds * SECOND as f64;
    if nanos < HOUR as f64 {
        Band::Elite
    } else if nanos < DAY as f64 {
        Band::High
    } else if nanos < WEEK as f64 {
        Band::Medium
    } else {
        Band::Low
    }
}

fn days(from: i64, to: i64) -> f64 {
    (to.saturating_sub(from)).max(0) as f64 / DAY as f64
}

/// DORA's metrics of the deployments that started in `[since, until]`,
/// as known at `until`: a failure, a success or a recovery after `until`
/// is not counted. `facts` come grouped by target, each target's in start
/// order; `groups` name their `group` indexes. Totals, a series of every
/// bucket from `since`'s to `until`'s (empty ones included) and one entry
/// per group with a deployment, by name.
pub fn report(
    since: i64,
    until: i64,
    bucket: Bucket,
    groups: &[GroupKey],
    facts: &[DeploymentFacts],
) -> DoraReport {
    let runs = facts.chunk_by(|a, b| a.target == b.target);
    report_runs(since, until, bucket, groups, runs)
}

/// [`report`] over each target's deployments handed over as one run, in
/// start order: what a caller that keeps them apart passes without
/// copying them into one slice. A run may hold deployments outside
/// `[since, until]`; they are not counted.
pub fn report_runs<'a>(
    since: i64,
    until: i64,
    bucket: Bucket,
    groups: &[GroupKey],
    runs: impl IntoIterator<Item = &'a [DeploymentFacts]>,
) -> DoraReport {
    let mut totals = Tally::default();
    // By index: a map keyed by four names cost more than the counting.
    let mut by_group: Vec<Option<Tally>> = vec![None; groups.len()];
    // A bucket that would start at `until` itself would hold nothing.
    let first = bucket_start(bucket, since);
    let last = bucket_start(bucket, until.saturating_sub(1).max(since));
    let buckets = usize::try_from((last - first) / bucket.nanos() + 1).unwrap_or(0);
    let mut by_bucket: Vec<Tally> = vec![Tally::default(); buckets];
    let known = |t: Option<i64>| t.filter(|t| *t <= until);
    for run in runs {
        // Walking back, the first later deployment that succeeded and did
        // not fail itself: what recovers a failure.
        let mut recovered_by = vec![None; run.len()];
        let mut next_good = None;
        for (i, f) in run.iter().enumerate().rev() {
            recovered_by[i] = next_good;
            if let (Some(ok), None) = (known(f.first_succeeded_at), known(f.failed_at)) {
                next_good = Some(ok);
            }
        }
        for (f, recovered) in run.iter().zip(recovered_by) {
            if f.started_at < since || f.started_at > until {
                continue;
            }
            let group = by_group
                .get_mut(f.group)
                .map(|t| t.get_or_insert_with(Tally::default));
            let index = (bucket_start(bucket, f.started_at) - first) / bucket.nanos();
            let point = usize::try_from(index)
                .ok()
                .and_then(|i| by_bucket.get_mut(i));
            for t in [Some(&mut totals), group, point].into_iter().flatten() {
                t.deployments += 1;
                if let (Some(done), Some(from)) = (known(f.first_succeeded_at), f.lead_start) {
                    t.lead_times
                        .push((done - from).max(0) as f64 / SECOND as f64);
                }
                if known(f.failed_at).is_some() {
                    t.failed += 1;
                    let failing_since = known(f.failure_reported_at).unwrap_or(f.started_at);
                    match recovered {
                        Some(ok) => t
                            .recoveries
                            .push((ok - failing_since).max(0) as f64 / SECOND as f64),
                        None => t.unrecovered += 1,
                    }
                }
                if f.rework {
                    t.rework += 1;
                }
            }
        }
    }
    let series = by_bucket
        .into_iter()
        .enumerate()
        .map(|(i, tally)| {
            let at = first + i as i64 * bucket.nanos();
            let next = at + bucket.nanos();
            DoraPoint {
                start: UnixNanos(at),
                metrics: tally.metrics(days(at.max(since), next.min(until))),
            }
        })
        .collect();
    let window = days(since, until);
    let mut named: Vec<(&GroupKey, Tally)> = groups
        .iter()
        .zip(by_group)
        .filter_map(|(key, t)| t.map(|t| (key, t)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    DoraReport {
        since: UnixNanos(since),
        until: UnixNanos(until),
        bucket,
        totals: totals.metrics(window),
        series,
        groups: named
            .into_iter()
            .map(
                |((workspace, application, workload, environment), t)| DoraGroup {
                    workspace: workspace.clone(),
                    application: application.clone(),
                    workload: workload.clone(),
                    environment: environment.clone(),
                    metrics: t.metrics(window),
                },
            )
            .collect(),
        rebuilding_targets: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(target: i64, started_at: i64) -> DeploymentFacts {
        DeploymentFacts {
            group: 0,
            target,
            started_at,
            first_succeeded_at: Some(started_at + 10 * SECOND),
            failed_at: None,
            failure_reported_at: None,
            rework: false,
            lead_start: Some(started_at - 50 * SECOND),
        }
    }

    fn groups() -> Vec<GroupKey> {
        vec![("w".into(), "a".into(), "k".into(), "prod".into())]
    }

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn weeks_start_on_monday_and_days_at_midnight() {
        // 1970-01-08T12:00Z is a Thursday: its week began 1970-01-05.
        let thursday = 7 * DAY + 12 * HOUR;
        assert_eq!(bucket_start(Bucket::Week, thursday), 4 * DAY);
        assert_eq!(bucket_start(Bucket::Day, thursday), 7 * DAY);
        assert_eq!(bucket_start(Bucket::Week, 4 * DAY), 4 * DAY);
    }

    #[test]
    fn bands_follow_the_documented_cuts() {
        assert_eq!(frequency_band(1.0), Band::Elite);
        assert_eq!(frequency_band(0.2), Band::High);
        assert_eq!(frequency_band(0.05), Band::Medium);
        assert_eq!(frequency_band(0.01), Band::Low);
        assert_eq!(lead_time_band(3600.0), Band::Elite);
        assert_eq!(lead_time_band(86_400.0), Band::High);
        assert_eq!(lead_time_band(8.0 * 86_400.0), Band::Medium);
        assert_eq!(lead_time_band(31.0 * 86_400.0), Band::Low);
        assert_eq!(change_fail_rate_band(0.05), Band::Elite);
        assert_eq!(change_fail_rate_band(0.2), Band::High);
        assert_eq!(change_fail_rate_band(0.3), Band::Medium);
        assert_eq!(change_fail_rate_band(0.4), Band::Low);
        assert_eq!(recovery_time_band(3599.0), Band::Elite);
        assert_eq!(recovery_time_band(3600.0), Band::High);
        assert_eq!(recovery_time_band(86_400.0), Band::Medium);
        assert_eq!(recovery_time_band(7.0 * 86_400.0), Band::Low);
    }

    /// Three deployments on one target: the first fails at 105 s, the
    /// second (a rollback's undoing of it) fails at its start, and the
    /// third, which succeeds at 310 s, recovers both: the second cannot,
    /// having failed itself.
    #[test]
    fn a_failure_is_recovered_by_the_next_good_deployment() {
        let mut one = facts(1, 100 * SECOND);
        one.failed_at = Some(105 * SECOND);
        one.failure_reported_at = Some(105 * SECOND);
        let mut two = facts(1, 200 * SECOND);
        two.failed_at = Some(200 * SECOND);
        two.rework = true;
        let mut three = facts(1, 300 * SECOND);
        three.rework = true;
        let r = report(0, DAY, Bucket::Day, &groups(), &[one, two, three]);
        let t = &r.totals;
        assert_eq!(t.deployments, 3);
        assert_eq!(t.failed_deployments, 2);
        // 310 - 105 = 205 and 310 - 200 = 110: median 157.5.
        assert_eq!(t.recovery_time_seconds, Some(157.5));
        assert_eq!(t.unrecovered_failures, 0);
        assert_eq!(t.rework_deployments, 2);
        assert_eq!(t.lead_time_seconds, Some(60.0));
        assert_eq!(r.series.len(), 1);
        assert_eq!(r.groups.len(), 1);
    }

    /// A deployment that succeeded and was then undone by a rollback was
    /// failing from its start: its recovery time runs from there to the
    /// rollback's success, not from the rollback's start.
    #[test]
    fn a_rolled_back_deployment_recovers_from_its_start() {
        let mut bad = facts(1, 100 * SECOND);
        bad.failed_at = Some(200 * SECOND);
        let back = facts(1, 200 * SECOND);
        let r = report(0, DAY, Bucket::Day, &groups(), &[bad, back]);
        // The rollback succeeded at 210 s: 210 - 100.
        assert_eq!(r.totals.recovery_time_seconds, Some(110.0));
        assert_eq!(r.totals.failed_deployments, 1);
    }

    #[test]
    fn what_happens_after_until_is_not_known() {
        let mut one = facts(1, 100 * SECOND);
        one.failed_at = Some(2 * DAY);
        one.first_succeeded_at = Some(2 * DAY);
        let r = report(0, DAY, Bucket::Day, &groups(), &[one]);
        assert_eq!(r.totals.deployments, 1);
        assert_eq!(r.totals.failed_deployments, 0);
        assert_eq!(r.totals.lead_time_seconds, None);
        assert_eq!(r.totals.lead_time_deployments, 0);
    }
}
