//! One SSH connection to a target: the credential, the host key check, the
//! handshake and authentication with timeouts, and exec channels.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use sextant_protocol::deploy::{ErrorKind, TaskOutcome};
use tokio::net::TcpStream;
use tracing::Instrument as _;

use super::known_hosts::{self, Verdict};
use crate::domain::SshConnection;

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The configuration is wrong (credential, host key line …).
    #[error("{0}")]
    Invalid(String),
    /// The host key was refused.
    #[error("{0}")]
    HostKey(String),
    /// The host could not be reached or the handshake failed; may pass later.
    #[error("{0}")]
    Unreachable(String),
    /// The host refused the key.
    #[error("{0}")]
    Auth(String),
}

impl ConnectError {
    /// The task outcome for a connection that failed before anything ran.
    pub fn outcome(&self) -> TaskOutcome {
        match self {
            ConnectError::Invalid(m) => TaskOutcome::failed(ErrorKind::Invalid, false, m.clone()),
            ConnectError::HostKey(m) => TaskOutcome::failed(ErrorKind::HostKey, false, m.clone()),
            ConnectError::Unreachable(m) => {
                TaskOutcome::failed(ErrorKind::Connection, true, m.clone())
            }
            ConnectError::Auth(m) => TaskOutcome::failed(ErrorKind::Connection, false, m.clone()),
        }
    }
}

/// How the server's key is trusted.
#[derive(Debug, Clone)]
enum HostKeyPolicy {
    Pinned(PublicKey),
    KnownHosts {
        path: PathBuf,
        trust_on_first_use: bool,
    },
}

/// A target's connection settings, checked: the key loaded, the policy set.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    key: Arc<PrivateKey>,
    key_path: PathBuf,
    policy: HostKeyPolicy,
}

impl Endpoint {
    /// Reads the credential and the host key settings; no network.
    pub fn new(conn: &SshConnection) -> Result<Self, ConnectError> {
        if conn.host.trim().is_empty() {
            return Err(ConnectError::Invalid("the SSH host is empty".into()));
        }
        if conn.user.trim().is_empty() {
            return Err(ConnectError::Invalid("the SSH user is empty".into()));
        }
        let (key, key_path) = load_key(&conn.credential)?;
        let policy = match &conn.host_key {
            Some(line) => {
                let key = PublicKey::from_openssh(line.trim()).map_err(|e| {
                    ConnectError::Invalid(format!(
                        "the pinned host_key for {} is not an OpenSSH public key line \
                         (`ssh-ed25519 AAAA…`): {e}",
                        conn.host
                    ))
                })?;
                HostKeyPolicy::Pinned(key)
            }
            None => {
                let path = match &conn.known_hosts {
                    Some(p) => expand_home(p).ok_or_else(|| {
                        ConnectError::Invalid(format!(
                            "known_hosts {p:?} starts with ~ but HOME is not set"
                        ))
                    })?,
                    None => home()
                        .ok_or_else(|| {
                            ConnectError::Invalid(
                                "no host_key is pinned and HOME is not set, so there is no \
                                 ~/.ssh/known_hosts to check the host key against"
                                    .into(),
                            )
                        })?
                        .join(".ssh/known_hosts"),
                };
                HostKeyPolicy::KnownHosts {
                    path,
                    trust_on_first_use: conn.trust_on_first_use,
                }
            }
        };
        Ok(Self {
            host: conn.host.trim().to_string(),
            port: conn.port,
            user: conn.user.clone(),
            key: Arc::new(key),
            key_path,
            policy,
        })
    }

    fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// Host key algorithms in the order to ask for them: the pinned or
    /// recorded key's first, so the server shows the key we can check.
    fn preferred_host_keys(&self) -> Vec<russh::keys::Algorithm> {
        let wanted: Vec<russh::keys::Algorithm> = match &self.policy {
            HostKeyPolicy::Pinned(key) => vec![key.algorithm()],
            HostKeyPolicy::KnownHosts { path, .. } => {
                known_hosts::recorded_algorithms(path, &self.host, self.port)
            }
        };
        let defaults = russh::Preferred::DEFAULT.key.to_vec();
        let mut ordered: Vec<russh::keys::Algorithm> = Vec::new();
        for want in &wanted {
            for algorithm in &defaults {
                let same = match (want, algorithm) {
                    (russh::keys::Algorithm::Rsa { .. }, russh::keys::Algorithm::Rsa { .. }) => {
                        true
                    }
                    (a, b) => a == b,
                };
                if same && !ordered.contains(algorithm) {
                    ordered.push(algorithm.clone());
                }
            }
        }
        for algorithm in defaults {
            if !ordered.contains(&algorithm) {
                ordered.push(algorithm);
            }
        }
        ordered
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn expand_home(path: &str) -> Option<PathBuf> {
    match path.strip_prefix("~/") {
        Some(rest) => home().map(|h| h.join(rest)),
        None => Some(PathBuf::from(path)),
    }
}

/// Loads the private key a credential reference names (`file:/path`).
fn load_key(credential: &str) -> Result<(PrivateKey, PathBuf), ConnectError> {
    let Some(path) = credential.strip_prefix("file:") else {
        let scheme = credential.split_once(':').map_or("", |(s, _)| s);
        return Err(ConnectError::Invalid(if scheme.is_empty() {
            "the SSH credential must be a reference such as `file:/path/to/private_key`".into()
        } else {
            format!(
                "the SSH credential scheme {scheme:?} is not supported (use `file:/path/to/private_key`)"
            )
        }));
    };
    let path = expand_home(path).ok_or_else(|| {
        ConnectError::Invalid(format!(
            "credential file {path:?} starts with ~ but HOME is not set"
        ))
    })?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConnectError::Invalid(format!(
            "cannot read the SSH credential file {}: {e}",
            path.display()
        ))
    })?;
    let key = russh::keys::decode_secret_key(&text, None).map_err(|e| {
        ConnectError::Invalid(match e {
            russh::keys::Error::KeyIsEncrypted => format!(
                "the SSH private key {} is encrypted; passphrases are not supported",
                path.display()
            ),
            other => format!(
                "the SSH credential file {} is not a usable private key: {other}",
                path.display()
            ),
        })
    })?;
    Ok((key, path))
}

/// The client handler: checks the server's key against the policy.
struct Verifier {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
}

#[derive(Debug, thiserror::Error)]
enum HandlerError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
}

/// Why the key a host presented is refused. `name` is the host as
/// known_hosts names it, `presented` the key's algorithm and fingerprint.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error(
        "host key mismatch for {name}: the host presented {presented}, but the pinned host_key \
         is {pinned}; refusing to connect (possible man-in-the-middle, or the host was \
         reinstalled)"
    )]
    PinnedMismatch {
        name: String,
        presented: String,
        pinned: String,
    },
    #[error("cannot read known_hosts {}: {source}", path.display())]
    ReadKnownHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "host key mismatch for {name}: the host presented {presented}, but {} records {}; \
         refusing to connect (possible man-in-the-middle, or the host was reinstalled: remove \
         the old line to accept the new key)",
        path.display(),
        recorded.join(", ")
    )]
    KnownHostsMismatch {
        name: String,
        presented: String,
        path: PathBuf,
        /// `<fingerprint> (line <n>)` for each line naming the host.
        recorded: Vec<String>,
    },
    #[error("the host key of {name} ({presented}) is revoked in {} line {line}", path.display())]
    Revoked {
        name: String,
        presented: String,
        path: PathBuf,
        line: usize,
    },
    #[error("cannot record the host key of {name} in {}: {source}", path.display())]
    Record {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the host key of {name} ({presented}) is unknown: it is not in {} and no host_key is \
         pinned; add it (ssh-keyscan) or set trust_on_first_use",
        path.display()
    )]
    Unknown {
        name: String,
        presented: String,
        path: PathBuf,
    },
    #[error("{name} presented a host certificate; only plain host keys are accepted")]
    Certificate { name: String },
}

impl Verifier {
    fn verify(&self, key: &PublicKey) -> Result<(), HostKeyError> {
        let name = known_hosts::host_name(&self.host, self.port);
        let presented = format!("{} {}", key.algorithm(), known_hosts::fingerprint(key));
        match &self.policy {
            HostKeyPolicy::Pinned(pinned) => {
                if pinned.key_data() == key.key_data() {
                    Ok(())
                } else {
                    Err(HostKeyError::PinnedMismatch {
                        name,
                        presented,
                        pinned: format!(
                            "{} {}",
                            pinned.algorithm(),
                            known_hosts::fingerprint(pinned)
                        ),
                    })
                }
            }
            HostKeyPolicy::KnownHosts {
                path,
                trust_on_first_use,
            } => {
                let verdict =
                    known_hosts::check(path, &self.host, self.port, key).map_err(|source| {
                        HostKeyError::ReadKnownHosts {
                            path: path.clone(),
                            source,
                        }
                    })?;
                match verdict {
                    Verdict::Trusted => Ok(()),
                    Verdict::Mismatch(recorded) => {
                        let recorded: Vec<String> = recorded
                            .iter()
                            .map(|(line, fp)| format!("{fp} (line {line})"))
                            .collect();
                        Err(HostKeyError::KnownHostsMismatch {
                            name,
                            presented,
                            path: path.clone(),
                            recorded,
                        })
                    }
                    Verdict::Revoked(line) => Err(HostKeyError::Revoked {
                        name,
                        presented,
                        path: path.clone(),
                        line,
                    }),
                    Verdict::Unknown if *trust_on_first_use => {
                        known_hosts::learn(path, &self.host, self.port, key).map_err(|source| {
                            HostKeyError::Record {
                                name: name.clone(),
                                path: path.clone(),
                                source,
                            }
                        })?;
                        tracing::warn!(
                            host = %name,
                            key = %presented,
                            known_hosts = %path.display(),
                            "Trusting an unknown host key on first use"
                        );
                        Ok(())
                    }
                    Verdict::Unknown => Err(HostKeyError::Unknown {
                        name,
                        presented,
                        path: path.clone(),
                    }),
                }
            }
        }
    }
}

impl client::Handler for Verifier {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.verify(key)?;
                Ok(true)
            }
            PublicKeyOrCertificate::Certificate(_) => Err(HostKeyError::Certificate {
                name: known_hosts::host_name(&self.host, self.port),
            }
            .into()),
        }
    }
}

/// An authenticated SSH connection.
pub struct Session {
    handle: Handle<Verifier>,
    label: String,
}

impl Session {
    /// Connects, checks the host key and authenticates, all within `timeout`.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Self, ConnectError> {
        let label = endpoint.label();
        let span = tracing::info_span!("ssh.connect", host = %endpoint.host, port = endpoint.port, user = %endpoint.user);
        async {
            let session = tokio::time::timeout(timeout, Self::connect_inner(endpoint, &label))
                .await
                .map_err(|_| {
                    ConnectError::Unreachable(format!(
                        "connecting to {label} timed out after {}s",
                        timeout.as_secs_f64()
                    ))
                })?;
            match &session {
                Ok(_) => tracing::debug!("Connected"),
                Err(error) => tracing::info!(%error, "SSH connection failed"),
            }
            session
        }
        .instrument(span)
        .await
    }

    async fn connect_inner(endpoint: &Endpoint, label: &str) -> Result<Self, ConnectError> {
        let socket = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| ConnectError::Unreachable(format!("cannot connect to {label}: {e}")))?;
        let _ = socket.set_nodelay(true);
        let config = client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            preferred: russh::Preferred {
                key: Cow::Owned(endpoint.preferred_host_keys()),
                ..russh::Preferred::DEFAULT
            },
            ..client::Config::default()
        };
        let verifier = Verifier {
            host: endpoint.host.clone(),
            port: endpoint.port,
            policy: endpoint.policy.clone(),
        };
        let mut handle = client::connect_stream(Arc::new(config), socket, verifier)
            .await
            .map_err(|e| match e {
                HandlerError::HostKey(e) => ConnectError::HostKey(e.to_string()),
                HandlerError::Ssh(e) => {
                    ConnectError::Unreachable(format!("SSH handshake with {label} failed: {e}"))
                }
            })?;
        let hash = if endpoint.key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| {
                    ConnectError::Unreachable(format!("SSH handshake with {label} failed: {e}"))
                })?
                .flatten()
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(
                endpoint.user.clone(),
                PrivateKeyWithHashAlg::new(endpoint.key.clone(), hash),
            )
            .await
            .map_err(|e| {
                ConnectError::Unreachable(format!("SSH authentication with {label} failed: {e}"))
            })?;
        if !auth.success() {
            return Err(ConnectError::Auth(format!(
                "{label} refused the key {} ({}) for user {}",
                endpoint.key_path.display(),
                known_hosts::fingerprint(endpoint.key.public_key()),
                endpoint.user
            )));
        }
        Ok(Self {
            handle,
            label: label.to_string(),
        })
    }

    /// `user@host:port`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Starts `command` in an exec channel, writing `stdin` to it first.
    /// The command is POSIX `sh`, whatever the user's login shell is (sshd
    /// hands exec requests to the login shell, which may be zsh or fish).
    pub async fn start(&self, command: &str, stdin: Option<&[u8]>) -> Result<Exec, russh::Error> {
        let channel = self.handle.channel_open_session().await?;
        channel
            .exec(true, format!("sh -c {}", super::script::quote(command)))
            .await?;
        if let Some(data) = stdin {
            channel.data(data).await?;
        }
        channel.eof().await?;
        Ok(Exec {
            channel,
            exit: None,
            signal: None,
            refused: false,
        })
    }

    /// Runs `command` to its end and collects its output (each stream capped
    /// to its last `cap` bytes).
    pub async fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cap: usize,
    ) -> Result<Output, russh::Error> {
        let mut exec = self.start(command, stdin).await?;
        let mut out = Output::default();
        while let Some(chunk) = exec.next().await {
            match chunk {
                Chunk::Stdout(data) => push_capped(&mut out.stdout, &data, cap),
                Chunk::Stderr(data) => push_capped(&mut out.stderr, &data, cap),
            }
        }
        out.exit = exec.exit_status()?;
        Ok(out)
    }

    /// Says goodbye; errors are of no interest any more.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Keeps the last `cap` bytes.
fn push_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize) {
    buf.extend_from_slice(data);
    if buf.len() > cap {
        let cut = buf.len() - cap;
        buf.drain(..cut);
    }
}

/// The collected output of a finished exec.
#[derive(Debug, Default)]
pub struct Output {
    pub exit: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Output of a running exec.
#[derive(Debug)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A running exec channel.
pub struct Exec {
    channel: russh::Channel<client::Msg>,
    exit: Option<u32>,
    signal: Option<String>,
    refused: bool,
}

impl Exec {
    /// The next piece of output, or `None` once the channel closed.
    pub async fn next(&mut self) -> Option<Chunk> {
        loop {
            match self.channel.wait().await? {
                ChannelMsg::Data { data } => return Some(Chunk::Stdout(data.to_vec())),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    return Some(Chunk::Stderr(data.to_vec()));
                }
                ChannelMsg::ExitStatus { exit_status } => self.exit = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    self.signal = Some(format!("{signal_name:?}"));
                }
                ChannelMsg::Failure => self.refused = true,
                ChannelMsg::Close => return None,
                _ => {}
            }
        }
    }

    /// How the command ended: its exit status, or an error if it was killed
    /// by a signal, the server refused it or the channel closed without one.
    pub fn exit_status(&self) -> Result<u32, russh::Error> {
        if self.refused {
            return Err(russh::Error::RequestDenied);
        }
        match (self.exit, &self.signal) {
            (Some(code), _) => Ok(code),
            (None, Some(_)) => Ok(255),
            (None, None) => Err(russh::Error::Disconnect),
        }
    }
}
