//! The hub's answers survive a round trip: each type serializes to the
//! JSON the hub sends, deserializes from it to an equal value, and
//! serializes again to the same JSON. Clients (`sextant-kit`) depend on it.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::event::DeploymentStatus::{self, *};
use crate::report::{
    ApplicationItem, CompareCell, CompareRow, CompareTarget, Comparison, DeployedGroup,
    DriftReason, EnvironmentItem, HistoryEntry, HostDeployment, HostDetail, SourceHosts,
    StatusCounts, TargetItem, TargetSummary, WorkloadItem,
};
use crate::source::Source;
use crate::target::{DesiredView, TargetRef};
use crate::time::UnixNanos;
use crate::view::{
    ErrorBody, ErrorDetail, HostSummary, HostView, HostsListed, Page, Progress, Rollout,
    TargetState,
};

/// Serializes `value`, reads it back, and checks both the value and the
/// JSON; returns the JSON for further checks.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> serde_json::Value {
    let text = serde_json::to_string(value).expect("serializes");
    let back: T = serde_json::from_str(&text).expect("deserializes what it serialized");
    assert_eq!(&back, value, "{text}");
    let again = serde_json::to_string(&back).expect("serializes again");
    assert_eq!(again, text);
    serde_json::from_str(&text).expect("JSON")
}

const AT: UnixNanos = UnixNanos(1_794_000_000_123_456_789);

fn at(environment: &str, target: &str) -> TargetRef {
    TargetRef {
        workspace: "default".into(),
        application: "shop".into(),
        workload: "checkout".into(),
        environment: environment.into(),
        target: target.into(),
    }
}

fn desired(revision: &str) -> DesiredView {
    DesiredView {
        version: "1.2".into(),
        revision: revision.into(),
        at: AT,
        origin: None,
    }
}

fn host(name: &str, revision: &str, status: DeploymentStatus) -> HostView {
    HostView {
        host: name.into(),
        reconciler: Some("prod-flux".into()),
        source: Source::Flux,
        revision: revision.into(),
        version: None,
        status,
        message: (status == Failed).then(|| "image pull backoff".into()),
        observed_at: AT,
        in_sync: false,
    }
}

fn state() -> TargetState {
    let desired = desired("r2");
    TargetState {
        workspace: "default".into(),
        application: "shop".into(),
        workload: "checkout".into(),
        environment: "stage".into(),
        target: "eu".into(),
        hosts: vec![
            host("s1", "r2", Succeeded).with_sync(Some(&desired)),
            host("s2", "r2", Failed).with_sync(Some(&desired)),
            host("s3", "r1", InProgress).with_sync(Some(&desired)),
        ],
        desired: Some(desired),
    }
}

fn summary() -> TargetSummary {
    let group = |revision: &str, status, hosts| DeployedGroup {
        version: (revision == "r2").then(|| "1.2".into()),
        revision: revision.into(),
        status,
        hosts,
        desired: false,
    };
    TargetSummary::new(
        at("stage", "eu"),
        Some(desired("r2")),
        vec![group("r2", Succeeded, 8), group("r1", Failed, 2)],
    )
    .with_sources(vec![
        SourceHosts {
            reconciler: Some("prod-flux".into()),
            source: Source::Flux,
            hosts: 9,
        },
        SourceHosts {
            reconciler: None,
            source: Source::Otlp,
            hosts: 1,
        },
    ])
}

#[test]
fn times_keep_their_nanoseconds_and_refuse_other_text() {
    for t in [AT, UnixNanos(0), UnixNanos(-1), UnixNanos(i64::MAX)] {
        round_trip(&t);
    }
    assert!(serde_json::from_str::<UnixNanos>("\"yesterday\"").is_err());
    assert!(
        serde_json::from_str::<UnixNanos>("12").is_err(),
        "a string, not a number"
    );
}

#[test]
fn target_state() {
    let json = round_trip(&vec![state()]);
    assert_eq!(json[0]["hosts"][0]["in_sync"], json!(true));
    assert_eq!(
        json[0]["desired"]["at"],
        json!("2026-11-06T21:20:00.123456789Z")
    );
}

#[test]
fn rollout_of_all_hosts_and_of_those_needing_attention() {
    let all = Rollout::from_states(&[state()]);
    let json = round_trip(&all);
    assert_eq!(json["hosts_listed"], json!("all"));
    assert_eq!(json["hosts"][1]["progress"], json!("failed"));
    assert_eq!(json["hosts"][2]["progress"], json!("pending"));
    // The host's own fields sit beside `target` and `progress`.
    assert_eq!(json["hosts"][0]["host"], json!("s1"));

    let listed = vec![(
        "eu".to_owned(),
        Some("r2".to_owned()),
        host("s2", "r2", Failed),
    )];
    let attention = Rollout::from_summaries(&[summary()], listed);
    assert_eq!(attention.hosts_listed, HostsListed::Attention);
    assert_eq!(attention.hosts[0].progress, Progress::Failed);
    round_trip(&attention);
}

#[test]
fn environment_state() {
    let json = round_trip(&vec![summary()]);
    assert_eq!(
        json[0]["environment"],
        json!("stage"),
        "TargetRef is flattened"
    );
    assert_eq!(json[0]["sources"][1]["reconciler"], json!(null));
}

#[test]
fn comparison() {
    let mut environments = BTreeMap::new();
    environments.insert(
        "stage".to_owned(),
        CompareCell {
            targets: vec![CompareTarget {
                target: "eu".into(),
                desired: Some(desired("r2")),
                deployed: summary().deployed,
                total_hosts: 10,
                sources: summary().sources,
            }],
            desired_versions: vec!["1.2".into()],
            deployed_versions: vec!["1.2".into(), "r1".into()],
        },
    );
    round_trip(&Comparison {
        environments: vec!["stage".into(), "prod".into()],
        workloads: vec![CompareRow {
            workspace: "default".into(),
            application: "shop".into(),
            workload: "checkout".into(),
            environments,
            differs: true,
        }],
        next_cursor: Some("6162".into()),
    });
    round_trip(&Comparison::build(
        vec!["stage".into(), "prod".into()],
        vec![summary()],
    ));
}

fn deployment(job: Option<&str>) -> HostDeployment {
    HostDeployment {
        host: "s2".into(),
        reconciler: None,
        source: Source::Agent,
        at: at("stage", "eu"),
        desired: Some(desired("r2")),
        version: None,
        revision: "r1".into(),
        status: Failed,
        message: Some("exit 1".into()),
        job: job.map(str::to_owned),
        observed_at: AT,
        in_sync: false,
        drift: Vec::new(),
    }
    .measured(UnixNanos(AT.0 + 1))
}

#[test]
fn drift_and_the_host_view() {
    let page = Page {
        items: vec![deployment(None), deployment(Some("job-7"))],
        next_cursor: None,
    };
    let json = round_trip(&page);
    assert!(json["items"][0].get("job").is_none(), "no job, no field");
    assert_eq!(json["items"][1]["job"], json!("job-7"));
    assert_eq!(
        page.items[0].drift,
        [
            DriftReason::Failed,
            DriftReason::WrongRevision,
            DriftReason::Stale
        ]
    );
    round_trip(&HostDetail {
        host: "s2".into(),
        last_seen_at: AT,
        stale: true,
        deployments: page.items,
    });
}

#[test]
fn history_of_both_kinds() {
    let json = round_trip(&Page {
        items: vec![
            HistoryEntry::Desired {
                at: AT,
                target: at("stage", "eu"),
                version: "1.2".into(),
                revision: "r2".into(),
                hosts: StatusCounts {
                    succeeded: 8,
                    failed: 1,
                    in_progress: 0,
                },
                origin: None,
            },
            HistoryEntry::Observed {
                at: AT,
                target: at("stage", "eu"),
                host: "s2".into(),
                reconciler: Some("prod-flux".into()),
                source: Source::Flux,
                version: None,
                revision: "r2".into(),
                status: Failed,
                message: None,
                job: None,
            },
        ],
        next_cursor: Some("00ff".into()),
    });
    assert_eq!(json["items"][0]["kind"], json!("desired"));
    assert_eq!(json["items"][1]["kind"], json!("observed"));
    assert_eq!(json["items"][1]["workload"], json!("checkout"));
}

#[test]
fn lists() {
    round_trip(&Page {
        items: vec![HostSummary {
            host: "s1".into(),
            last_seen_at: AT,
            stale: false,
            workloads: 2,
            sources: vec![Source::Flux, Source::Otlp],
            succeeded: 2,
            failed: 0,
            in_progress: 1,
        }],
        next_cursor: None,
    });
    round_trip(&Page {
        items: vec![EnvironmentItem {
            name: "prod".into(),
            targets: 3,
            hosts: 40,
        }],
        next_cursor: Some("70726f64".into()),
    });
    round_trip(&Page {
        items: vec![ApplicationItem {
            workspace: "default".into(),
            application: "shop".into(),
            workloads: 2,
        }],
        next_cursor: None,
    });
    round_trip(&Page {
        items: vec![WorkloadItem {
            workspace: "default".into(),
            application: "shop".into(),
            workload: "checkout".into(),
            environments: 2,
            targets: 3,
        }],
        next_cursor: None,
    });
    round_trip(&Page {
        items: vec![TargetItem {
            at: at("prod", "eu"),
            hosts: 12,
        }],
        next_cursor: None,
    });
}

#[test]
fn errors() {
    let json = round_trip(&ErrorBody {
        error: ErrorDetail {
            code: "not_found".into(),
            message: "no workload \"w\" in environment \"prod\"".into(),
        },
    });
    assert_eq!(json["error"]["code"], json!("not_found"));
}
