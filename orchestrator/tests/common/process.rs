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
    /// `http://127.0.0.1:PORT`, where agents dial (the `agents` line).
    pub agents: Option<String>,
}

impl Process {
    /// Starts `sextant orchestrator` on 127.0.0.1 port 0 (its agent
    /// listener too) with a 2 s lease and a 200 ms poll, plus `extra` flags;
    /// `--no-hub` unless `extra` names a `--hub-url`.
    pub fn start(data: &Path, database_url: &str, replica: &str, extra: &[&str]) -> Self {
        Self::start_env(data, database_url, replica, extra, &[])
    }

    /// Like [`Process::start`], with `env` set for the process.
    pub fn start_env(
        data: &Path,
        database_url: &str,
        replica: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let no_hub: &[&str] = if extra.contains(&"--hub-url") {
            &[]
        } else {
            &["--no-hub"]
        };
        let mut child = Command::new(sextant_e2e::sextant_binary())
            .args(["orchestrator", "--listen", "127.0.0.1:0"])
            .args(no_hub)
            .arg("--data-dir")
            .arg(data)
            .args(["--database-url", database_url])
            .args(["--lease", "2s", "--poll", "200ms", "--replica", replica])
            .args(extra)
            .env_remove("SEXTANT_CONFIG")
            .env_remove("SEXTANT_INSECURE_REGISTRIES")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sextant orchestrator");
        let stdout = child.stdout.take().expect("stdout");
        let (mut base, mut agents) = (None, None);
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("banner line");
            let line = line.trim();
            if let Some(url) = line
                .strip_prefix("API ")
                .filter(|u| u.trim().starts_with("http"))
            {
                base = Some(url.trim().trim_end_matches("/api/v1").to_owned());
            } else if let Some(url) = line.strip_prefix("agents ") {
                agents = Some(url.trim().trim_end_matches("(gRPC)").trim().to_owned());
            } else if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let base = base.expect("the orchestrator printed its API address");
        Self {
            child,
            base,
            agents,
        }
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
