//! The tasks of a job: their moves, log lines and artifacts.

use std::time::Duration;

use sqlx::Row;

use super::*;

/// One task of a job: one component on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub job_id: String,
    pub position: i64,
    /// Strategy batch (rolling batch or canary stage), from 0.
    pub batch: i64,
    pub kind: TaskKind,
    /// The release whose digest this task deploys.
    pub release_id: String,
    pub target: String,
    pub component: String,
    pub image: String,
    pub digest: String,
    pub previous_digest: Option<String>,
    pub slot: Option<String>,
    pub state: TaskState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub error_type: Option<ErrorKind>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A task to create with its job.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub batch: i64,
    pub kind: TaskKind,
    pub release_id: String,
    pub target: String,
    pub component: String,
    pub image: String,
    pub digest: String,
    pub previous_digest: Option<String>,
    pub slot: Option<String>,
    pub max_attempts: i64,
    pub timeout_ms: i64,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskLogLine {
    pub id: i64,
    pub attempt: i64,
    pub at: String,
    pub stream: LogStream,
    pub line: String,
}

/// A stored artifact (content omitted from listings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactInfo {
    pub target: String,
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub created_at: String,
}

/// The result columns a terminal task move writes.
#[derive(Debug, Clone, Copy)]
pub struct TaskResultRow<'a> {
    pub exit_code: Option<i32>,
    pub error: Option<&'a str>,
    pub error_type: Option<ErrorKind>,
}

/// One compare-and-set move of a task: from `from` to `to`, with the
/// task's lease taken by `owner` for `lease`.
#[derive(Debug, Clone, Copy)]
pub struct TaskMove<'a> {
    pub from: TaskState,
    pub to: TaskState,
    pub owner: &'a str,
    pub lease: Duration,
    /// Counts a new attempt (queued → dispatched).
    pub new_attempt: bool,
    /// The result columns of a finished or retried attempt.
    pub result: Option<TaskResultRow<'a>>,
}

impl<'a> TaskMove<'a> {
    /// A plain move, no new attempt, no result.
    pub fn new(from: TaskState, to: TaskState, owner: &'a str, lease: Duration) -> Self {
        Self {
            from,
            to,
            owner,
            lease,
            new_attempt: false,
            result: None,
        }
    }

    /// The move starts a new attempt.
    pub fn new_attempt(self) -> Self {
        Self {
            new_attempt: true,
            ..self
        }
    }

    /// The move records an attempt's result.
    pub fn with_result(self, result: TaskResultRow<'a>) -> Self {
        Self {
            result: Some(result),
            ..self
        }
    }
}

impl Store {
    /// The tasks of a job, in position order.
    pub async fn tasks(&self, job_id: &str) -> Result<Vec<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 ORDER BY position");
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(job_id)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(task_row!(r));
            }
            Ok(out)
        })
    }

    pub async fn task(&self, id: &str) -> Result<Option<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(task_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// Moves a task (compare-and-set on its state, see [`TaskMove`]).
    /// Returns the task as the move left it, or `None` if it was not in
    /// `change.from` (the statement returns the row, so the caller need not
    /// read it again).
    pub async fn move_task(&self, id: &str, change: TaskMove<'_>) -> Result<Option<Task>> {
        let TaskMove {
            from,
            to,
            owner,
            lease,
            new_attempt,
            result,
        } = change;
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let finished = to.is_terminal().then_some(now);
        let started = matches!(to, TaskState::Dispatched).then_some(now);
        let (exit_code, error, error_type) = match &result {
            Some(r) => (r.exit_code, r.error, r.error_type.map(|t| enum_text(&t))),
            None => (None, None, None),
        };
        let sql = format!(
            "UPDATE tasks SET state = $3, updated_at = $4, lease_owner = $5, lease_until = $6, \
                 attempts = attempts + $7, started_at = COALESCE($8, started_at), \
                 finished_at = $9, \
                 exit_code = CASE WHEN $10 THEN $11 ELSE exit_code END, \
                 error = CASE WHEN $10 THEN $12 ELSE error END, \
                 error_type = CASE WHEN $10 THEN $13 ELSE error_type END \
             WHERE id = $1 AND state = $2 RETURNING {TASK_COLUMNS}"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(owner)
                .bind(until)
                .bind(i64::from(new_attempt))
                .bind(started)
                .bind(finished)
                .bind(result.is_some())
                .bind(exit_code.map(i64::from))
                .bind(error)
                .bind(error_type)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(task_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// Appends log lines of a task attempt.
    pub async fn append_logs(
        &self,
        task_id: &str,
        attempt: i64,
        lines: &[(LogStream, String)],
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for (stream, line) in lines {
                sqlx::query(
                    "INSERT INTO task_logs (task_id, attempt, at, stream, line) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(task_id)
                .bind(attempt)
                .bind(now)
                .bind(enum_text(stream))
                .bind(line)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Log lines of a task after line `after`.
    pub async fn task_logs(
        &self,
        task_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TaskLogLine>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (i64, i64, i64, String, String)>(
                "SELECT id, attempt, at, stream, line FROM task_logs \
                 WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(task_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|(id, attempt, at, stream, line)| {
                    Ok(TaskLogLine {
                        id,
                        attempt,
                        at: rfc3339(at),
                        stream: unjson(&format!("\"{stream}\""))?,
                        line,
                    })
                })
                .collect()
        })
    }

    // -- artifacts and deployed state ------------------------------------------

    /// Stores artifacts of a job once: existing ones are kept as they are.
    /// The artifacts of many targets of a job go in one transaction
    /// (a job to 1,000 targets is one commit, not 1,000).
    pub async fn put_job_artifacts(
        &self,
        job_id: &str,
        targets: &[(&str, &[crate::domain::task::Artifact])],
    ) -> Result<()> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for (target, artifacts) in targets {
                for a in *artifacts {
                    sqlx::query(
                        "INSERT INTO artifacts (job_id, target, name, sha256, content, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, target, name) DO NOTHING",
                    )
                    .bind(job_id)
                    .bind(*target)
                    .bind(&a.name)
                    .bind(&a.sha256)
                    .bind(&a.content)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The artifacts of a job for one target.
    pub async fn artifacts(
        &self,
        job_id: &str,
        target: &str,
    ) -> Result<Vec<crate::domain::task::Artifact>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, Vec<u8>, String)>(
                "SELECT name, content, sha256 FROM artifacts \
                 WHERE job_id = $1 AND target = $2 ORDER BY name",
            )
            .bind(job_id)
            .bind(target)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(name, content, sha256)| crate::domain::task::Artifact {
                    name,
                    content,
                    sha256,
                })
                .collect())
        })
    }

    /// Artifact listing of a job.
    pub async fn artifact_infos(&self, job_id: &str) -> Result<Vec<ArtifactInfo>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, String, String, i64, i64)>(
                "SELECT target, name, sha256, CAST(length(content) AS BIGINT), created_at \
                 FROM artifacts WHERE job_id = $1 ORDER BY target, name",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(target, name, sha256, size, at)| ArtifactInfo {
                    target,
                    name,
                    sha256,
                    size,
                    created_at: rfc3339(at),
                })
                .collect())
        })
    }
}
