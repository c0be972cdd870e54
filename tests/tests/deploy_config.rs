//! The alerting that ships in `deploy/`, checked by the real tools from
//! Debian: `promtool check rules` and `promtool test rules` for the alert
//! rules and their unit tests, `amtool check-config` and `amtool config
//! routes test` for Alertmanager's routing. Also: every alert has a unit
//! test, the alerts issue 7 names exist, and every metric the rules read is
//! in the metric contract (docs/telemetry.md).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sextant_e2e::workspace_root;

const PROMTOOL: &str = "/usr/bin/promtool";
const AMTOOL: &str = "/usr/bin/amtool";

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

/// Runs a tool; panics with its output unless it succeeds.
fn run(tool: &str, args: &[&str], dir: &Path) -> String {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's prometheus and prometheus-alertmanager (./scripts/test.sh does)"
    );
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

fn yaml(path: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_at<'a>(v: &'a serde_norway::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|v| v.as_str())
}

/// The alert names and expressions of the rules file.
fn alerts() -> Vec<(String, String)> {
    let rules = yaml(&deploy("prometheus/rules/sextant.yml"));
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(name) = str_at(rule, "alert") {
                out.push((name.to_owned(), str_at(rule, "expr").unwrap().to_owned()));
            }
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("prometheus/rules");
    let checked = run(PROMTOOL, &["check", "rules", "sextant.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run(PROMTOOL, &["test", "rules", "sextant_test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_is_unit_tested_and_the_issue_s_alerts_exist() {
    let names: BTreeSet<String> = alerts().into_iter().map(|(n, _)| n).collect();
    for wanted in [
        "DeploymentFailureRateHigh",
        "DeploymentDurationHigh",
        "RollbackRateHigh",
        "AgentOffline",
        "AgentPoolLow",
        "ApprovalBacklogHigh",
        "ApprovalWaitLong",
        "HostDrift",
        "HostsStale",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}: {names:?}");
    }
    // An alert is tested when some case expects it to fire.
    let tests = yaml(&deploy("prometheus/rules/sextant_test.yml"));
    let mut fired = BTreeSet::new();
    for case in tests["tests"].as_sequence().expect("tests") {
        for t in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let firing = t["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty());
            if firing {
                fired.insert(str_at(t, "alertname").unwrap().to_owned());
            }
        }
    }
    let untested: Vec<_> = names.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts no unit test sees firing: {untested:?}"
    );
}

#[test]
fn every_metric_the_rules_read_is_in_the_contract() {
    let contract = std::fs::read_to_string(workspace_root().join("docs/telemetry.md"))
        .expect("docs/telemetry.md");
    for (alert, expr) in alerts() {
        for metric in metric_names(&expr) {
            // Histograms are read through their _bucket series.
            let base = metric.strip_suffix("_bucket").unwrap_or(&metric);
            assert!(
                contract.contains(&format!("`{base}`")),
                "{alert} reads {metric}, which docs/telemetry.md does not define"
            );
        }
    }
}

/// The `sextant_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sextant_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        out.insert(expr[start..end].to_owned());
        i = end;
    }
    out
}

#[test]
fn alertmanager_config_is_valid_and_routes_by_severity() {
    let dir = deploy("alertmanager");
    let checked = run(AMTOOL, &["check-config", "alertmanager.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    // (labels, the receivers they must reach, in order)
    let cases: &[(&[&str], &str)] = &[
        (
            &["alertname=AgentOffline", "severity=critical"],
            "pager,chat",
        ),
        (
            &[
                "alertname=DeploymentFailureRateHigh",
                "severity=critical",
                "env=prod",
            ],
            "pager,chat",
        ),
        (
            &["alertname=HostDrift", "severity=warning", "env=prod"],
            "chat",
        ),
        (&["alertname=SomethingElse"], "chat"),
    ];
    for (labels, receivers) in cases {
        let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.yml"];
        let verify = format!("--verify.receivers={receivers}");
        args.push(&verify);
        args.extend_from_slice(labels);
        let out = run(AMTOOL, &args, &dir);
        assert!(out.contains(receivers), "{labels:?}: {out}");
    }
    // The verification itself can fail: a warning never pages.
    let out = Command::new(AMTOOL)
        .args([
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            "--verify.receivers=pager",
            "severity=warning",
        ])
        .current_dir(&dir)
        .output()
        .expect("amtool");
    assert!(!out.status.success(), "a warning must not reach the pager");
}
