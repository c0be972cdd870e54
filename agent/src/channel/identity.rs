//! The identity registration gave this agent, kept in
//! `DATA_DIR/agent-identity.json`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The identity registration gave this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub credential: String,
}

const IDENTITY_FILE: &str = "agent-identity.json";

/// Why the identity file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an agent identity: {source}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Identity {
    /// Reads `DATA_DIR/agent-identity.json`, if present.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| IdentityError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// Writes the identity, readable by its owner only.
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        std::fs::create_dir_all(data_dir).map_err(|source| IdentityError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(IDENTITY_FILE);
        let tmp = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
        self.write_private(&tmp)
            .map_err(|source| IdentityError::Write {
                path: tmp.clone(),
                source,
            })?;
        std::fs::rename(&tmp, &path).map_err(|source| IdentityError::Write { path, source })
    }

    /// Writes and syncs `path`, created readable by its owner only.
    fn write_private(&self, path: &Path) -> std::io::Result<()> {
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()
    }
}
