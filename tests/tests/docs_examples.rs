//! Every `sh` example in `docs/otlp-conventions.md` runs as written against
//! a real `sextant up` (SQLite, no tokens, as on a developer's machine); only
//! the default addresses are swapped for the hub's port-0 addresses.

use std::process::Command;

use serde_json::Value;
use sextant_e2e::{Backend, Hub, workspace_root};

/// The fenced ```sh blocks of a Markdown document, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated ```sh block");
    blocks
}

/// Runs each block with bash against `hub`, with the default addresses
/// swapped for the hub's, and returns what each printed.
fn run_examples(hub: &Hub, blocks: &[String]) -> Vec<Value> {
    let mut outputs = Vec::new();
    for block in blocks {
        let script = block
            .replace("127.0.0.1:4317", &hub.grpc.to_string())
            .replace("127.0.0.1:4318", &hub.http.to_string())
            .replace("127.0.0.1:8080", &hub.api.to_string());
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &script])
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "example failed ({}):\n{block}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("example printed no JSON ({e}):\n{block}\n{stdout}"));
        if block.contains("/v1/") {
            assert!(
                answer.get("partialSuccess").is_none_or(Value::is_null),
                "the hub rejected part of an example:\n{block}\n{answer}"
            );
        }
        outputs.push(answer);
    }
    outputs
}

#[tokio::test]
async fn every_curl_example_in_the_conventions_doc_works() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/otlp-conventions.md"))
        .expect("read docs/otlp-conventions.md");
    let blocks = sh_blocks(&doc);
    assert!(
        blocks.len() >= 6,
        "expected the doc's examples, found {}",
        blocks.len()
    );
    for block in &blocks {
        assert!(block.contains("curl"), "not a curl example:\n{block}");
    }

    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let outputs = run_examples(&hub, &blocks);

    // The examples tell one story: checkout 1.4.2 assigned to stage/eu-west,
    // then rolled out on stage-eu-1 (logs) and stage-eu-2 (a gauge).
    let state = outputs
        .iter()
        .find(|o| o.is_array())
        .expect("a /api/v1/state example");
    let items = state.as_array().expect("array");
    assert_eq!(items.len(), 1, "{state}");
    assert_eq!(items[0]["target"], "eu-west", "{state}");
    assert_eq!(items[0]["desired"]["version"], "1.4.2", "{state}");
    let mut hosts: Vec<(&str, &str, bool)> = items[0]["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or_default(),
                h["status"].as_str().unwrap_or_default(),
                h["in_sync"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            ("stage-eu-1", "succeeded", true),
            ("stage-eu-2", "succeeded", true)
        ],
        "{state}"
    );

    let rollout = outputs
        .iter()
        .find(|o| o.get("total_hosts").is_some())
        .expect("a /api/v1/rollout example");
    assert_eq!(rollout["total_hosts"], 2, "{rollout}");
    assert_eq!(rollout["succeeded"], 2, "{rollout}");
    assert_eq!(rollout["pending"], 0, "{rollout}");
}

#[tokio::test]
async fn the_readme_example_works() {
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    // The opening block holds the two commands (`sextant up`, the tests);
    // the curl blocks are examples against a running hub.
    let blocks: Vec<String> = sh_blocks(&readme)
        .into_iter()
        .filter(|b| b.trim_start().starts_with("curl"))
        .collect();
    assert_eq!(blocks.len(), 1, "expected the README's curl example");

    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    // The block sends an observation, then reads state; curl prints both
    // JSON answers back to back.
    let script = blocks[0]
        .replace("127.0.0.1:4318", &hub.http.to_string())
        .replace("127.0.0.1:8080", &hub.api.to_string());
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON answers");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0]["partialSuccess"].is_null(), "{}", answers[0]);
    assert_eq!(answers[1][0]["target"], "prod-eu-1", "{}", answers[1]);
    assert_eq!(answers[1][0]["hosts"][0]["host"], "web-1", "{}", answers[1]);
    assert_eq!(
        answers[1][0]["hosts"][0]["status"], "succeeded",
        "{}",
        answers[1]
    );
}
