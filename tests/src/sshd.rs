//! A real OpenSSH server (Debian's `openssh-server`) for one test.
//!
//! [`Sshd::start`] binds a listener on 127.0.0.1 port 0 and, for each
//! connection, runs `/usr/sbin/sshd -i` (inetd mode) with the socket as its
//! stdin and stdout: no port to pick, no race, no system sshd involved. The
//! host key, a client key and `authorized_keys` are generated into a
//! temporary folder; the login user is the one running the tests (root in
//! CI). Everything is killed and removed when the `Sshd` is dropped.
//!
//! The kit does not depend on the orchestrator (that would build it twice),
//! so [`Sshd::ssh_json`] hands out the connection settings as JSON for the
//! test to deserialize into its `SshConnection`.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Where Debian installs the server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A private OpenSSH server on 127.0.0.1; see the module docs.
pub struct Sshd {
    port: u16,
    user: String,
    dir: tempfile::TempDir,
    host_key_line: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    children: Arc<Mutex<Vec<Child>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Sshd {
    /// Generates keys and a config, and starts accepting connections.
    pub fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server (./scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        keygen(&path.join("host_ed25519"));
        keygen(&path.join("client_ed25519"));
        fs::copy(
            path.join("client_ed25519.pub"),
            path.join("authorized_keys"),
        )
        .expect("authorized_keys");
        let host_key_line = public_line(&path.join("host_ed25519.pub"));
        let user = current_user();
        let root = is_root();
        if root {
            // The privilege-separation chroot; Debian's init script makes it.
            fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let config = format!(
            "HostKey {host}\n\
             AuthorizedKeysFile {keys}\n\
             AuthenticationMethods publickey\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             StrictModes no\n\
             UsePAM no\n\
             PidFile none\n\
             PermitRootLogin prohibit-password\n\
             AllowUsers {user}\n\
             X11Forwarding no\n\
             AllowTcpForwarding no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             LogLevel VERBOSE\n",
            host = path.join("host_ed25519").display(),
            keys = path.join("authorized_keys").display(),
        );
        let config_path = path.join("sshd_config");
        fs::write(&config_path, config).expect("write sshd_config");
        // Fail here, with sshd's own words, rather than at the first connection.
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config_path)
            .output()
            .expect("run sshd -t");
        assert!(
            check.status.success(),
            "sshd rejects the test config: {}",
            String::from_utf8_lossy(&check.stderr)
        );

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let children: Arc<Mutex<Vec<Child>>> = Arc::default();
        let log = path.join("sshd.log");
        let acceptor = {
            let (stop, accepted, children) = (stop.clone(), accepted.clone(), children.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    match spawn_session(stream, &config_path, &log) {
                        Ok(child) => {
                            let mut children = children.lock().expect("children");
                            // Forget the sessions that have ended.
                            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                            children.push(child);
                        }
                        Err(e) => eprintln!("test sshd: cannot start {SSHD} -i: {e}"),
                    }
                }
            })
        };
        Self {
            port,
            user,
            dir,
            host_key_line,
            stop,
            accepted,
            children,
            acceptor: Some(acceptor),
        }
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login user: whoever runs the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The authorized client private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The credential reference for the client key (`file:/…`).
    pub fn credential(&self) -> String {
        format!("file:{}", self.client_key().display())
    }

    /// The server's public host key, `ssh-ed25519 AAAA…`.
    pub fn host_key_line(&self) -> &str {
        &self.host_key_line
    }

    /// A line for a known_hosts file: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key_line)
    }

    /// A scratch folder that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A work directory for the executor inside [`Sshd::dir`], so tests do
    /// not write into the user's home.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Connection settings with the host key pinned, as the JSON of the
    /// orchestrator's `SshConnection`.
    pub fn ssh_json(&self) -> serde_json::Value {
        serde_json::json!({
            "host": self.host(),
            "port": self.port,
            "user": self.user,
            "credential": self.credential(),
            "host_key": self.host_key_line,
            "work_dir": self.work_dir().display().to_string(),
        })
    }

    /// How many connections the server accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Cuts every open connection, as a network failure would: kills each
    /// session's sshd and everything it started in its process group
    /// (commands that left it with `setsid` survive, as on a real host).
    pub fn drop_connections(&self) {
        if let Ok(mut children) = self.children.lock() {
            for child in children.iter_mut() {
                kill_group(child);
            }
            children.clear();
        }
    }

    /// What the sshd processes logged (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A fresh ed25519 public key line that is not this server's.
    pub fn other_host_key_line(&self) -> String {
        let path = self
            .dir
            .path()
            .join(format!("other_{}", uuid::Uuid::new_v4().simple()));
        keygen(&path);
        public_line(&path.with_extension("pub"))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.drop_connections();
    }
}

/// Kills a session's whole process group, then reaps its sshd.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

fn spawn_session(stream: TcpStream, config: &Path, log: &Path) -> std::io::Result<Child> {
    let input = OwnedFd::from(stream.try_clone()?);
    let output = OwnedFd::from(stream);
    let log = fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(SSHD)
        // A group per session, so drop_connections can kill all of it.
        .process_group(0)
        .arg("-i")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(log))
        .spawn()
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sextant-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen (Debian's openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `type base64` of a `.pub` file, without its comment.
fn public_line(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("read public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "cannot tell the current user (id -un)");
    user
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether process `pid` exists and is not a zombie (containers may lack an
/// init that reaps orphans).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Kills process `pid` (TERM) if it runs; for cleaning up services a test
/// deployed.
pub fn kill_process(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}
