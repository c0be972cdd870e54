//! A real `sextant orchestrator` process (target/debug/sextant; build it
//! with `cargo build --bin sextant` first) and the `sextant` client
//! commands run against it.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A `sextant orchestrator` process; SIGKILLed when dropped.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`, read from the `API` line of its banner.
    pub base: String,
}

impl Process {
    /// Starts `sextant orchestrator --no-hub` on 127.0.0.1 port 0 with a
    /// 2 s lease and a 200 ms poll, plus `extra` flags.
    pub fn start(data: &Path, database_url: &str, replica: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(sextant_e2e::sextant_binary())
            .args(["orchestrator", "--listen", "127.0.0.1:0", "--no-hub"])
            .arg("--data-dir")
            .arg(data)
            .args(["--database-url", database_url])
            .args(["--lease", "2s", "--poll", "200ms", "--replica", replica])
            .args(extra)
            .env_remove("SEXTANT_CONFIG")
            .env_remove("SEXTANT_INSECURE_REGISTRIES")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sextant orchestrator");
        let stdout = child.stdout.take().expect("stdout");
        let mut base = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("banner line");
            if let Some(url) = line.trim().strip_prefix("API") {
                base = Some(url.trim().trim_end_matches("/api/v1").to_owned());
                break;
            }
        }
        let base = base.expect("the orchestrator printed its API address");
        Self { child, base }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown code runs.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Runs a `sextant` client command against this orchestrator as
    /// `actor`.
    pub fn sextant(&self, actor: &str, args: &[&str]) -> Output {
        Command::new(sextant_e2e::sextant_binary())
            .args(args)
            .args(["--orchestrator", &self.base, "--as", actor])
            .env_remove("SEXTANT_CONFIG")
            .env_remove("SEXTANT_TOKEN")
            .output()
            .expect("run sextant")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
