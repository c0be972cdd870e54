//! `deploy/kubernetes` and `deploy/systemd`, checked with the tools this
//! machine has (no cluster): `kubectl kustomize` renders the manifests,
//! and the rendered objects must hang together — selectors match their
//! pods, Services point at named container ports, every ConfigMap a pod
//! mounts is rendered, probes use declared ports, and Sextant's containers
//! run with arguments the real `sextant` binary accepts. The agent's
//! systemd unit passes `systemd-analyze verify`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_norway::Value;
use sextant_e2e::{sextant_binary, workspace_root};

fn rendered() -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(workspace_root().join("deploy/kubernetes"))
        .output()
        .expect("kubectl (Debian's kubernetes-client; ./scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_norway::from_str::<Value>(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v.as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

#[test]
fn the_kubernetes_manifests_render_and_hang_together() {
    let objects = rendered();
    let kinds: Vec<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                s(o, &["kind"]).unwrap().to_owned(),
                s(o, &["metadata", "name"]).unwrap().to_owned(),
            )
        })
        .collect();
    for (kind, name) in [
        ("Deployment", "sextant-hub"),
        ("Deployment", "sextant-orchestrator"),
        ("Deployment", "sextant-collector"),
        ("Service", "sextant-hub"),
        ("Service", "sextant-orchestrator"),
    ] {
        assert!(
            kinds.iter().any(|(k, n)| k == kind && n == name),
            "no {kind} {name}: {kinds:?}"
        );
    }
    let configmaps: BTreeSet<&str> = objects
        .iter()
        .filter(|o| s(o, &["kind"]) == Some("ConfigMap"))
        .map(|o| s(o, &["metadata", "name"]).unwrap())
        .collect();
    let deployments: Vec<&Value> = objects
        .iter()
        .filter(|o| s(o, &["kind"]) == Some("Deployment"))
        .collect();
    let mut pods: Vec<(BTreeMap<String, String>, BTreeSet<String>)> = Vec::new();
    for d in &deployments {
        let name = s(d, &["metadata", "name"]).unwrap();
        assert_eq!(s(d, &["metadata", "namespace"]), Some("sextant"), "{name}");
        let selector = labels(&d["spec"]["selector"]["matchLabels"]);
        let pod_labels = labels(&d["spec"]["template"]["metadata"]["labels"]);
        assert!(
            !selector.is_empty() && subset(&selector, &pod_labels),
            "{name}: selector"
        );
        let spec = &d["spec"]["template"]["spec"];
        let mut ports = BTreeSet::new();
        for c in spec["containers"].as_sequence().unwrap() {
            for p in c["ports"].as_sequence().into_iter().flatten() {
                ports.insert(s(p, &["name"]).unwrap().to_owned());
            }
            for probe in ["readinessProbe", "livenessProbe"] {
                if let Some(port) = s(c, &[probe, "httpGet", "port"]) {
                    assert!(
                        ports.contains(port),
                        "{name}: {probe} uses undeclared port {port}"
                    );
                }
            }
            // Sextant's containers: the real binary accepts the arguments.
            let image = s(c, &["image"]).unwrap();
            if image.contains("sextant/sextant") {
                let args: Vec<&str> = c["args"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                check_args(name, &args);
            }
        }
        for v in spec["volumes"].as_sequence().into_iter().flatten() {
            if let Some(cm) = s(v, &["configMap", "name"]) {
                assert!(
                    configmaps.contains(cm),
                    "{name}: mounts missing ConfigMap {cm}"
                );
            }
        }
        pods.push((pod_labels, ports));
    }
    for svc in objects
        .iter()
        .filter(|o| s(o, &["kind"]) == Some("Service"))
    {
        let name = s(svc, &["metadata", "name"]).unwrap();
        let selector = labels(&svc["spec"]["selector"]);
        let matched: Vec<&(BTreeMap<String, String>, BTreeSet<String>)> =
            pods.iter().filter(|(l, _)| subset(&selector, l)).collect();
        assert_eq!(
            matched.len(),
            1,
            "Service {name} selects {} Deployments",
            matched.len()
        );
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            let target = s(p, &["targetPort"]).unwrap();
            assert!(
                matched[0].1.contains(target),
                "Service {name}: no container port {target}"
            );
        }
    }
}

/// Runs the real binary's argument parser on `args` (with `--help`
/// appended, so nothing starts): an unknown flag or bad value fails.
fn check_args(deployment: &str, args: &[&str]) {
    let out = Command::new(sextant_binary())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{deployment}: sextant {args:?} is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --help after a bad flag still fails, so the check can fail.
    let bad = Command::new(sextant_binary())
        .args(args)
        .arg("--no-such-flag")
        .arg("--help")
        .output()
        .unwrap();
    assert!(!bad.status.success(), "the argument check cannot fail");
}

#[test]
fn the_agent_systemd_unit_passes_systemd_analyze() {
    let dir = tempfile::tempdir().unwrap();
    // The unit names /usr/local/bin/sextant; point it at this build so the
    // verifier finds an executable.
    let unit =
        std::fs::read_to_string(workspace_root().join("deploy/systemd/sextant-agent.service"))
            .unwrap()
            .replace(
                "/usr/local/bin/sextant",
                &sextant_binary().display().to_string(),
            );
    let path = dir.path().join("sextant-agent.service");
    std::fs::write(&path, &unit).unwrap();
    let verify = |p: &std::path::Path| {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(p)
            .output()
            .expect("systemd-analyze")
    };
    let out = verify(&path);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && !text.contains("Unknown"),
        "systemd-analyze verify: {text}"
    );
    // The ExecStart arguments are ones `sextant agent run` accepts.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    check_args("sextant-agent.service", &args);
    // A misspelt key is caught.
    let bad = dir.path().join("bad.service");
    std::fs::write(&bad, unit.replace("ExecStart=", "ExecStrat=")).unwrap();
    assert!(!verify(&bad).status.success());
}
