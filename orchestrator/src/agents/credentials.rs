//! Registry credentials for agent tasks (`sextant orchestrator
//! --registry-auth FILE`, Docker's `config.json` format). They are never
//! written to the mailbox: each replica adds the credentials of the image's
//! registry to a task as it delivers it, so they exist only on the wire (TLS
//! in production) and in the agent's memory for that one pull.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sextant_protocol::deploy::{ComposeLock, DeploySpec};
use sextant_protocol::v1::{self as pb, task::Payload};

/// Docker Hub's key in `config.json`.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// Credentials by registry host (`registry.example.com`, `127.0.0.1:5000`).
#[derive(Clone, Default)]
pub struct RegistryAuths(BTreeMap<String, pb::RegistryAuth>);

impl std::fmt::Debug for RegistryAuths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The registries, never the secrets.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Why a credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

/// Why a Docker `config.json` is refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a Docker config.json: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("auths.{key}.auth is not base64 of user:password")]
    NotBase64 { key: String },
    #[error("auths.{key}.auth is not user:password")]
    NotUserPassword { key: String },
    #[error("auths.{key} has neither auth nor username and password")]
    NoCredentials { key: String },
}

#[derive(serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    /// base64 of `username:password`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl RegistryAuths {
    /// Reads a Docker `config.json` (`{"auths": {"HOST": {"auth": …}}}`).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| LoadError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses a Docker `config.json`.
    pub fn parse(json: &str) -> Result<Self, ParseError> {
        let file: ConfigFile =
            serde_json::from_str(json).map_err(|source| ParseError::Json { source })?;
        let mut auths = BTreeMap::new();
        for (key, entry) in file.auths {
            let (username, password) = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| ParseError::NotBase64 { key: key.clone() })?;
                    let (u, p) = decoded
                        .split_once(':')
                        .ok_or_else(|| ParseError::NotUserPassword { key: key.clone() })?;
                    (u.to_owned(), p.to_owned())
                }
                (None, Some(u), Some(p)) => (u, p),
                _ => {
                    return Err(ParseError::NoCredentials { key });
                }
            };
            let host = host_of_key(&key);
            auths.insert(
                host.clone(),
                pb::RegistryAuth {
                    username,
                    password,
                    server_address: if host == "docker.io" {
                        DOCKER_HUB.to_owned()
                    } else {
                        host
                    },
                },
            );
        }
        Ok(Self(auths))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The credentials for `image`'s registry, if any.
    pub fn for_image(&self, image: &str) -> Option<&pb::RegistryAuth> {
        self.0.get(&registry_of(image))
    }

    /// Adds the credentials of the task's image registry (for a
    /// compose-lock, its first service with credentials). Returns whether
    /// it added any.
    pub fn attach(&self, task: &mut pb::Task) -> bool {
        if self.0.is_empty() || task.registry_auth.is_some() {
            return false;
        }
        let auth = match &task.payload {
            Some(Payload::DeployJson(json)) => serde_json::from_str::<DeploySpec>(json)
                .ok()
                .and_then(|spec| self.for_image(&spec.image).cloned()),
            Some(Payload::ComposeJson(json)) => serde_json::from_str::<ComposeLock>(json)
                .ok()
                .and_then(|lock| {
                    lock.services
                        .iter()
                        .find_map(|s| self.for_image(&s.image).cloned())
                }),
            Some(Payload::Check(_)) | None => None,
        };
        task.registry_auth = auth;
        task.registry_auth.is_some()
    }
}

/// A `config.json` key (`https://registry.example.com/v2/`, `host:5000`)
/// as a registry host.
fn host_of_key(key: &str) -> String {
    if key == DOCKER_HUB || key.contains("index.docker.io") || key == "docker.io" {
        return "docker.io".into();
    }
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The registry host of an image reference, as Docker reads it: the first
/// path component when it looks like a host (has `.` or `:`, or is
/// `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"auths": {
        "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0"},
        "https://registry.example.com/v2/": {"username": "bob", "password": "pw"},
        "https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="}
    }}"#;

    fn deploy(image: &str) -> pb::Task {
        let spec = serde_json::json!({
            "task_id": "t.1", "name": "web", "image": image,
            "application": "shop", "workload": "web", "target": "eu",
        });
        pb::Task {
            run_key: "t.1".into(),
            payload: Some(Payload::DeployJson(spec.to_string())),
            ..pb::Task::default()
        }
    }

    #[test]
    fn images_get_their_own_registrys_credentials_only() {
        let auths = RegistryAuths::parse(CONFIG).unwrap();
        let mut task = deploy("127.0.0.1:5000/shop/web@sha256:aa");
        assert!(auths.attach(&mut task));
        let a = task.registry_auth.unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("alice", "s3cret")
        );
        assert_eq!(a.server_address, "127.0.0.1:5000");

        let mut task = deploy("registry.example.com/web@sha256:aa");
        assert!(auths.attach(&mut task));
        assert_eq!(task.registry_auth.unwrap().username, "bob");

        let mut task = deploy("library/nginx@sha256:aa");
        assert!(auths.attach(&mut task));
        assert_eq!(task.registry_auth.unwrap().server_address, DOCKER_HUB);

        let mut task = deploy("other.example.org/web@sha256:aa");
        assert!(!auths.attach(&mut task));
        assert!(task.registry_auth.is_none());
        // The secrets never show in Debug output.
        assert!(!format!("{auths:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_file_is_refused_with_the_reason() {
        let err = RegistryAuths::parse(r#"{"auths": {"h:1": {"auth": "%%%"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auths.h:1.auth"), "{err}");
        let err = RegistryAuths::parse(r#"{"auths": {"h:1": {}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither auth"), "{err}");
        assert!(RegistryAuths::parse("nope").is_err());
    }

    #[test]
    fn registry_hosts_are_read_as_docker_does() {
        assert_eq!(registry_of("nginx"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(
            registry_of("127.0.0.1:5000/web@sha256:aa"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_of("ghcr.io/o/web:1"), "ghcr.io");
    }
}
