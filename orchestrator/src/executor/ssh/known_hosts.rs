//! Host key checking against an OpenSSH `known_hosts` file.
//!
//! Understands what OpenSSH writes and reads: plain and hashed (`|1|salt|hash`)
//! host names, `[host]:port` for ports other than 22, comma-separated
//! patterns with `*`, `?` and `!` negation, `@revoked` lines, and comments.
//! `@cert-authority` lines are skipped: host certificates are not accepted.
//! A line that does not parse is skipped, as OpenSSH does.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// What a known_hosts file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for the host records this key.
    Trusted,
    /// No line names the host.
    Unknown,
    /// Lines name the host, none with this key: `(line number, fingerprint)`.
    Mismatch(Vec<(usize, String)>),
    /// An `@revoked` line lists this key.
    Revoked(usize),
}

/// The name known_hosts files use for `host` on `port`.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// SHA256 fingerprint of a key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

struct Entry {
    line: usize,
    revoked: bool,
    key: PublicKey,
}

/// The entries of `path` naming `host` on `port` (a missing file has none).
fn entries(path: &Path, host: &str, port: u16) -> io::Result<Vec<Entry>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let name = host_name(host, port).to_ascii_lowercase();
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(mut hosts) = fields.next() else {
            continue;
        };
        let mut revoked = false;
        if let Some(marker) = hosts.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                // Host certificates are not accepted; their CAs do not apply.
                _ => continue,
            }
            let Some(next) = fields.next() else { continue };
            hosts = next;
        }
        let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(hosts, &name) {
            continue;
        }
        let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) else {
            tracing::debug!(path = %path.display(), line = index + 1, "Skipping an unreadable known_hosts line");
            continue;
        };
        found.push(Entry {
            line: index + 1,
            revoked,
            key,
        });
    }
    Ok(found)
}

/// Checks `key` for `host`:`port` against the known_hosts file at `path`.
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let found = entries(path, host, port)?;
    if let Some(e) = found
        .iter()
        .find(|e| e.revoked && e.key.key_data() == key.key_data())
    {
        return Ok(Verdict::Revoked(e.line));
    }
    let recorded: Vec<&Entry> = found.iter().filter(|e| !e.revoked).collect();
    if recorded.is_empty() {
        return Ok(Verdict::Unknown);
    }
    if recorded.iter().any(|e| e.key.key_data() == key.key_data()) {
        return Ok(Verdict::Trusted);
    }
    Ok(Verdict::Mismatch(
        recorded
            .iter()
            .map(|e| (e.line, fingerprint(&e.key)))
            .collect(),
    ))
}

/// The key algorithms recorded for the host, so the handshake can ask the
/// server for a key the file knows (as OpenSSH does).
pub fn recorded_algorithms(path: &Path, host: &str, port: u16) -> Vec<Algorithm> {
    entries(path, host, port)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.revoked)
        .map(|e| e.key.algorithm())
        .collect()
}

/// Appends a line recording `key` for `host`:`port`, creating the file
/// (mode 0600) and its folder (0700) if needed.
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent)?;
    }
    let bare = PublicKey::new(key.key_data().clone(), "");
    let encoded = bare
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // Start on a line of our own if the file does not end with one.
    let needs_newline = fs::read(path)
        .map(|bytes| !bytes.is_empty() && !bytes.ends_with(b"\n"))
        .unwrap_or(false);
    let line = format!(
        "{}{} {}\n",
        if needs_newline { "\n" } else { "" },
        host_name(host, port),
        encoded.trim()
    );
    // One write, so concurrent appends do not interleave.
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// Whether a comma-separated host pattern list matches `name` (lowercase).
/// A matching negated pattern rejects the line outright.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_match(hashed, name) {
                matched = true;
            }
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard(&negated.to_ascii_lowercase(), name) {
                return false;
            }
        } else if wildcard(&pattern.to_ascii_lowercase(), name) {
            matched = true;
        }
    }
    matched
}

/// `salt|hash`, both base64: HMAC-SHA1(salt, name) == hash.
fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Glob match with `*` (any run) and `?` (one character).
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjPvieanL9BRwF0b5FiNdSlaYq7BLtEVzIY6GdW2igE";
    const KEY_C: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImZ74Q9RpR68oM807GsseVuksV0/UVtWal4mUrbh1vE";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFMjtapSJbQgiaygngRXQKUUV8J42Hj9aKvvX+ZrGnoW";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).expect("test key")
    }

    #[test]
    fn globs() {
        assert!(wildcard("*.example.com", "web.example.com"));
        assert!(wildcard("web-?", "web-1"));
        assert!(!wildcard("web-?", "web-12"));
        assert!(wildcard("*", "anything"));
        assert!(!wildcard("a*b", "acd"));
        assert!(hosts_match("a,b,[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(!hosts_match(
            "*.example.com,!bad.example.com",
            "bad.example.com"
        ));
    }

    #[test]
    fn plain_hashed_ported_and_revoked_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        // A hashed entry for "web-1", made with ssh-keygen -H.
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).expect("hmac");
        mac.update(b"web-1");
        let hash = mac.finalize().into_bytes();
        let hashed = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&hash));
        let text = format!(
            "# comment\n\
             garbage line\n\
             {hashed} {KEY_A}\n\
             [db]:2222 {KEY_A} a comment\n\
             db {KEY_B}\n\
             @revoked * {KEY_B}\n\
             @cert-authority * {KEY_A}\n"
        );
        fs::write(&path, text).expect("write");
        let (a, b) = (key(KEY_A), key(KEY_B));
        assert_eq!(
            check(&path, "web-1", 22, &a).expect("check"),
            Verdict::Trusted
        );
        assert_eq!(
            check(&path, "web-2", 22, &a).expect("check"),
            Verdict::Unknown
        );
        assert_eq!(
            check(&path, "db", 2222, &a).expect("check"),
            Verdict::Trusted
        );
        assert!(matches!(
            check(&path, "db", 2222, &key(KEY_C)),
            Ok(Verdict::Mismatch(lines)) if lines[0].0 == 4
        ));
        assert_eq!(
            check(&path, "db", 22, &b).expect("check"),
            Verdict::Revoked(6)
        );
        assert_eq!(
            check(&dir.path().join("missing"), "db", 22, &a).expect("check"),
            Verdict::Unknown
        );
    }

    #[test]
    fn learning_appends_a_line_that_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/known_hosts");
        let a = key(KEY_A);
        learn(&path, "127.0.0.1", 2200, &a).expect("learn");
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("[127.0.0.1]:2200 {KEY_A}\n"));
        assert_eq!(
            check(&path, "127.0.0.1", 2200, &a).expect("check"),
            Verdict::Trusted
        );
        assert_eq!(
            check(&path, "127.0.0.1", 22, &a).expect("check"),
            Verdict::Unknown
        );
    }
}
