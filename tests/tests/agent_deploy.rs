//! `sextant agent deploy` as a process, end to end against the real Docker
//! engine and the kit's registry: a spec file deploys v1, a broken version
//! rolls back with a non-zero exit, a repeat reports the recorded result, a
//! tag is refused, and a compose-lock file applies.

use std::process::Command;

use sextant_e2e::docker::{self as kit, DockerScope, test_images};
use sextant_e2e::sextant_binary;

fn spec_yaml(scope: &DockerScope, task: &str, image: &str) -> String {
    format!(
        "task_id: {id}-{task}\n\
         name: {name}\n\
         image: '{image}'\n\
         application: shop\n\
         workload: web\n\
         target: cli-host\n\
         release: {task}\n\
         labels: {{'{label}': '{id}'}}\n\
         ports: [{{container_port: 8080, host_ip: 127.0.0.1}}]\n\
         stop_timeout: 1s\n\
         health: {{check: http, url: 'http://127.0.0.1:{{port:8080}}/health', interval: 300ms, retries: 3}}\n",
        id = scope.id(),
        name = scope.name("web"),
        label = kit::TEST_LABEL,
    )
}

/// Runs `sextant agent deploy ARGS --data-dir DIR`; returns (exit code, stdout).
fn deploy(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(sextant_binary())
        .args(["agent", "deploy"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SEXTANT_DATA_DIR")
        .output()
        .expect("run sextant agent deploy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr ---\n{stderr}"),
    )
}

#[tokio::test]
async fn sextant_agent_deploy_end_to_end() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let name = scope.name("web");
    let write = |file: &str, text: String| {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };

    let v1 = write("v1.yaml", spec_yaml(&scope, "v1", &images.v1));
    let (code, out) = deploy(dir.path(), &["--spec", &v1]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[pulling]"), "events are printed: {out}");
    assert!(out.contains(": succeeded"), "{out}");
    assert!(out.contains(kit::digest_of(&images.v1)), "{out}");
    assert!(kit::is_running(&name));
    let v1_id = kit::container_id(&name).unwrap();

    let broken = write("broken.yaml", spec_yaml(&scope, "broken", &images.broken));
    let (code, out) = deploy(dir.path(), &["--spec", &broken]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    assert!(out.contains("404"), "the reason is printed: {out}");
    assert_eq!(kit::container_id(&name), Some(v1_id.clone()));

    let (code, out) = deploy(dir.path(), &["--spec", &v1, "--json"]);
    assert_eq!(code, 0, "{out}");
    let finished = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event: {out}"));
    assert_eq!(finished["outcome"]["status"], "succeeded");
    assert!(!out.contains("\"pulling\""), "a repeat does nothing: {out}");
    assert_eq!(kit::container_id(&name), Some(v1_id));

    let tagged = write(
        "tag.yaml",
        spec_yaml(
            &scope,
            "tag",
            &format!("{}/sextant-test/web:v1", images.registry),
        ),
    );
    let (code, out) = deploy(dir.path(), &["--spec", &tagged]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not pinned by digest"), "{out}");

    let lock = write(
        "shop.lock.yaml",
        format!(
            "task_id: {id}-lock\nproject: {project}\napplication: shop\ntarget: cli-host\n\
             labels: {{'{label}': '{id}'}}\n\
             services:\n\
             \x20 - name: api\n    image: '{v2}'\n    health: {{check: docker, interval: 300ms}}\n\
             \x20 - name: web\n    image: '{v1}'\n    health: {{check: command, argv: [/bin/busybox, wget, -q, -O, /dev/null, 'http://127.0.0.1:8080/health']}}\n",
            id = scope.id(),
            project = scope.name("shop"),
            label = kit::TEST_LABEL,
            v1 = images.v1,
            v2 = images.v2,
        ),
    );
    let (code, out) = deploy(dir.path(), &["--compose-lock", &lock]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("service api: succeeded"), "{out}");
    assert!(out.contains("service web: succeeded"), "{out}");
    assert!(kit::is_running(&format!("{}-api", scope.name("shop"))));
}
