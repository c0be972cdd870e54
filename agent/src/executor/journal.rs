//! The task journal: one JSON file per task id in `DATA_DIR/tasks/`, so a
//! repeated task reports its recorded result instead of deploying again.
//!
//! Files are written to a temporary file and moved into place. The first
//! write of a task is a hard link, which fails when the file exists, so only
//! one writer can start a given task id.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::ExecuteError;
use super::event::TaskOutcome;

/// What kind of task a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Deploy,
    Compose,
}

impl TaskKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Compose => "compose",
        }
    }
}

/// Whether a task has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Running,
    Finished,
}

/// One task's journal file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    pub kind: TaskKind,
    pub state: RecordState,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    /// The spec or compose-lock as given, without credentials.
    pub spec: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TaskOutcome>,
}

/// What [`Journal::begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// The task is new; its `running` record is written.
    Started,
    /// The task id has a record already.
    Exists(Box<TaskRecord>),
}

/// The journal folder.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Journal {
    /// Opens (creating) `data_dir/tasks`.
    pub fn open(data_dir: &Path) -> Result<Self, ExecuteError> {
        let dir = data_dir.join("tasks");
        std::fs::create_dir_all(&dir).map_err(|source| ExecuteError::Journal {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The file of a task id (already validated as a plain name).
    pub fn path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.json"))
    }

    /// Reads a task's record, if any.
    pub fn read(&self, task_id: &str) -> Result<Option<TaskRecord>, ExecuteError> {
        let path = self.path(task_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ExecuteError::Journal { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ExecuteError::JournalCorrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Records a new task as running, unless its id has a record already.
    pub fn begin(&self, record: &TaskRecord) -> Result<Begin, ExecuteError> {
        let path = self.path(&record.task_id);
        let tmp = self.write_tmp(record)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir();
                Ok(Begin::Started)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match self.read(&record.task_id)? {
                    Some(existing) => Ok(Begin::Exists(Box::new(existing))),
                    None => Err(ExecuteError::JournalCorrupt {
                        path,
                        message: "the record vanished while it was being read".into(),
                    }),
                }
            }
            Err(source) => Err(ExecuteError::Journal { path, source }),
        }
    }

    /// Replaces a task's record (normally with its finished state).
    pub fn write(&self, record: &TaskRecord) -> Result<(), ExecuteError> {
        let path = self.path(&record.task_id);
        let tmp = self.write_tmp(record)?;
        std::fs::rename(&tmp, &path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            ExecuteError::Journal { path, source }
        })?;
        self.sync_dir();
        Ok(())
    }

    /// Counts the recorded tasks by kind and result: `running` for a task
    /// not finished, else its outcome's status (`succeeded`, `failed`,
    /// `rolled_back`). A file that does not parse counts under kind
    /// `unknown`, result `unreadable`. Reads every file, so it costs one
    /// read per task ever run from this data directory.
    pub fn counts(&self) -> Result<BTreeMap<(String, String), u64>, ExecuteError> {
        let io = |source| ExecuteError::Journal {
            path: self.dir.clone(),
            source,
        };
        let mut counts = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
            if !is_record {
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<TaskRecord>(&bytes).ok());
            let key = match parsed {
                Some(record) => (
                    record.kind.name().to_owned(),
                    match (&record.state, &record.outcome) {
                        (RecordState::Finished, Some(outcome)) => outcome.status.to_string(),
                        _ => "running".to_owned(),
                    },
                ),
                None => ("unknown".to_owned(), "unreadable".to_owned()),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        Ok(counts)
    }

    fn write_tmp(&self, record: &TaskRecord) -> Result<PathBuf, ExecuteError> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            ".{}.{}.{n}.tmp",
            record.task_id,
            std::process::id()
        ));
        let io = |source| ExecuteError::Journal {
            path: tmp.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(record).map_err(|e| io(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(tmp)
    }

    /// Makes the rename durable; best effort (not every platform allows it).
    fn sync_dir(&self) {
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            kind: TaskKind::Deploy,
            state: RecordState::Running,
            started_at: 1,
            spec: serde_json::json!({"name": "web"}),
            outcome: None,
        }
    }

    #[test]
    fn begin_once_then_exists() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.read("t1").unwrap().is_none());
        assert!(matches!(j.begin(&record("t1")).unwrap(), Begin::Started));
        let Begin::Exists(found) = j.begin(&record("t1")).unwrap() else {
            panic!("second begin must find the record");
        };
        assert_eq!(found.state, RecordState::Running);
        let mut done = record("t1");
        done.state = RecordState::Finished;
        j.write(&done).unwrap();
        assert_eq!(j.read("t1").unwrap().unwrap().state, RecordState::Finished);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("tasks"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("t1.json")]);
    }

    #[test]
    fn counts_by_kind_and_result() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let finished = |id: &str, kind, status| {
            let mut r = record(id);
            r.kind = kind;
            r.state = RecordState::Finished;
            r.outcome = Some(TaskOutcome {
                task_id: id.into(),
                status,
                deployed_digest: None,
                container_id: None,
                previous: None,
                message: String::new(),
                logs: Vec::new(),
                services: Vec::new(),
                started_at: 1,
                finished_at: 2,
                replayed: false,
            });
            r
        };
        use super::super::event::TaskStatus;
        j.write(&finished("a", TaskKind::Deploy, TaskStatus::Succeeded))
            .unwrap();
        j.write(&finished("b", TaskKind::Deploy, TaskStatus::Succeeded))
            .unwrap();
        j.write(&finished("c", TaskKind::Deploy, TaskStatus::RolledBack))
            .unwrap();
        j.write(&finished("d", TaskKind::Compose, TaskStatus::Failed))
            .unwrap();
        assert!(matches!(j.begin(&record("e")).unwrap(), Begin::Started));
        std::fs::write(j.path("bad"), b"{not json").unwrap();
        // A writer's temporary file is not a task.
        std::fs::write(dir.path().join("tasks/.x.1.0.tmp"), b"{}").unwrap();
        let counts = j.counts().unwrap();
        let get = |k: &str, r: &str| counts.get(&(k.to_owned(), r.to_owned())).copied();
        assert_eq!(get("deploy", "succeeded"), Some(2));
        assert_eq!(get("deploy", "rolled_back"), Some(1));
        assert_eq!(get("compose", "failed"), Some(1));
        assert_eq!(get("deploy", "running"), Some(1));
        assert_eq!(get("unknown", "unreadable"), Some(1));
        assert_eq!(counts.values().sum::<u64>(), 6);
    }

    #[test]
    fn corrupt_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        std::fs::write(j.path("bad"), b"{not json").unwrap();
        assert!(matches!(
            j.read("bad"),
            Err(ExecuteError::JournalCorrupt { .. })
        ));
    }
}
