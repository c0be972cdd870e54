//! Deployment jobs: created with their tasks, claimed under leases, moved
//! by compare-and-set with their events.

use std::time::Duration;

use sqlx::Row;

use super::*;

/// A deployment job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub promotion_id: Option<String>,
    pub parent_job_id: Option<String>,
    pub release_id: String,
    pub release: String,
    pub environment: String,
    pub strategy: Strategy,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub error: Option<String>,
    /// The kind of the job's failure, when it failed or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// The W3C `traceparent` of the job's promotion (a rollback job's
    /// too): the job's spans are in its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(skip)]
    pub tenant: String,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub tenant: String,
    pub kind: JobKind,
    pub promotion_id: Option<String>,
    pub parent_job_id: Option<String>,
    pub release_id: String,
    pub environment: String,
    pub strategy: Strategy,
    pub max_attempts: i64,
    pub created_by: String,
    pub tasks: Vec<NewTask>,
}

/// The unfinished states, as the partial index `jobs_active_by_tenant`
/// (migration 0006) names them: a query must say the same for the
/// planner to use it.
const ACTIVE_STATES: &str = "'pending', 'preparing', 'running', 'completing', 'rolling_back'";

impl Store {
    /// Creates a job with its tasks, in `pending`. A deploy job of a
    /// promotion moves the promotion from `approved` to `deploying` in the
    /// same transaction; `None` if the promotion was no longer approved
    /// (another replica started it).
    pub async fn create_job(&self, job: &NewJob) -> Result<Option<String>> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if let (JobKind::Deploy, Some(promotion)) = (job.kind, &job.promotion_id) {
                let n = sqlx::query(
                    "UPDATE promotions SET state = 'deploying', job_id = $2, updated_at = $3 \
                     WHERE id = $1 AND state = 'approved'",
                )
                .bind(promotion)
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO promotion_events (promotion_id, at, actor, from_state, to_state, detail) \
                     VALUES ($1, $2, 'sextant', 'approved', 'deploying', $3)",
                )
                .bind(promotion)
                .bind(now)
                .bind(format!("job {id}"))
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO jobs (id, tenant, kind, promotion_id, parent_job_id, release_id, \
                     environment, strategy, state, max_attempts, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11)",
            )
            .bind(&id)
            .bind(&job.tenant)
            .bind(job.kind.as_str())
            .bind(&job.promotion_id)
            .bind(&job.parent_job_id)
            .bind(&job.release_id)
            .bind(&job.environment)
            .bind(json(&job.strategy))
            .bind(job.max_attempts)
            .bind(&job.created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO job_events (job_id, at, actor, from_state, to_state) \
                 VALUES ($1, $2, $3, NULL, 'pending')",
            )
            .bind(&id)
            .bind(now)
            .bind(&job.created_by)
            .execute(&mut *tx)
            .await?;
            for (position, t) in job.tasks.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO tasks (id, job_id, position, batch, kind, target, component, \
                         image, digest, previous_digest, slot, state, max_attempts, timeout_ms, \
                         updated_at, release_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13, $14, $15)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&id)
                .bind(position as i64)
                .bind(t.batch)
                .bind(t.kind.as_str())
                .bind(&t.target)
                .bind(&t.component)
                .bind(&t.image)
                .bind(&t.digest)
                .bind(&t.previous_digest)
                .bind(&t.slot)
                .bind(t.max_attempts)
                .bind(t.timeout_ms)
                .bind(now)
                .bind(&t.release_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(id))
        })
    }

    pub async fn job(&self, tenant: Option<&str>, id: &str) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs j JOIN releases r ON r.id = j.release_id \
             WHERE ($1 IS NULL OR j.tenant = $1) AND j.id = $2"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(job_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// A page of the jobs (only unfinished ones with `active_only`),
    /// newest first ([`Page`]); `None` when `page.before` is not one of
    /// the tenant's jobs.
    pub async fn jobs(
        &self,
        tenant: &str,
        active_only: bool,
        page: Page<'_>,
    ) -> Result<Option<Vec<Job>>> {
        let Some(cursor) = self.page_cursor("jobs", tenant, page).await? else {
            return Ok(None);
        };
        let mut filters = String::new();
        if cursor.is_some() {
            filters.push_str(&after_cursor("j", 3));
        }
        if active_only {
            filters.push_str(" AND j.state IN (");
            filters.push_str(ACTIVE_STATES);
            filters.push(')');
        }
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs j JOIN releases r ON r.id = j.release_id \
             WHERE j.tenant = $1{filters} ORDER BY j.created_at DESC, j.id DESC LIMIT $2"
        );
        on_pool!(self, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(page.limit);
            if let Some((at, id)) = &cursor {
                q = q.bind(*at).bind(id.clone());
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(job_row!(r));
            }
            Ok(Some(out))
        })
    }

    /// Takes the lease of one unfinished job whose lease expired (or that
    /// `owner` already holds but is not driving), for `lease`.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease: Duration,
        skip: &[String],
    ) -> Result<Option<String>> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        // The jobs this replica drives already, as bound parameters.
        let skip_list = if skip.is_empty() {
            String::new()
        } else {
            format!(
                " AND id NOT IN ({})",
                (0..skip.len())
                    .map(|i| format!("${}", i + 4))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let active = "state IN ('pending', 'preparing', 'running', 'completing', 'rolling_back')";
        on_pool!(self, |pool| {
            let lock = if matches!(self.pool, Pool::Postgres(_)) {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            // Each claim is an attempt at driving the job, counted in the
            // same statement: a replica that dies right after claiming has
            // still used one.
            let sql = format!(
                "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
                 WHERE id = ( \
                     SELECT id FROM jobs WHERE {active} \
                       AND (lease_until < $3 OR lease_owner = $1){skip_list} \
                     ORDER BY created_at, id LIMIT 1{lock}) \
                 RETURNING id"
            );
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(owner)
                .bind(until)
                .bind(now);
            for id in skip {
                query = query.bind(id);
            }
            Ok(query.fetch_optional(pool).await?)
        })
    }

    /// Extends `owner`'s lease on a job; `false` if it lost it.
    pub async fn renew_job_lease(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        let until = now_ms() + lease.as_millis() as i64;
        on_pool!(self, |pool| {
            let n =
                sqlx::query("UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id)
                    .bind(owner)
                    .bind(until)
                    .execute(pool)
                    .await?
                    .rows_affected();
            Ok(n == 1)
        })
    }

    /// Gives up a lease (the job may be claimed again at once).
    pub async fn release_job_lease(&self, id: &str, owner: &str) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET lease_owner = NULL, lease_until = 0 \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Moves a job (compare-and-set) and records the event. Moving to
    /// `failed` or `rolling_back` records `detail` as the job's error and
    /// `failure` as its kind (each kept when `None`).
    pub async fn move_job(
        &self,
        id: &str,
        from: JobState,
        to: JobState,
        actor: &str,
        detail: Option<&str>,
        failure: Option<FailureKind>,
    ) -> Result<bool> {
        let now = now_ms();
        let finished = to.is_terminal().then_some(now);
        let event = EventRow {
            id,
            at: now,
            actor,
            from: from.as_str(),
            to: to.as_str(),
            detail,
        };
        on_pool!(self, |pool| {
            move_and_record!(
                pool,
                sqlx::query(
                    "UPDATE jobs SET state = $3, updated_at = $4, finished_at = COALESCE($5, finished_at), \
                         error = CASE WHEN $3 IN ('failed', 'rolling_back') THEN COALESCE($6, error) ELSE error END, \
                         failure = CASE WHEN $3 IN ('failed', 'rolling_back') THEN COALESCE($7, failure) ELSE failure END \
                     WHERE id = $1 AND state = $2",
                )
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(finished)
                .bind(detail)
                .bind(failure.map(FailureKind::as_str)),
                "job_events"("job_id"),
                event
            )
        })
    }

    /// The job's moves, oldest first.
    pub async fn job_events(&self, id: &str) -> Result<Vec<StateEvent>> {
        self.state_events(
            "SELECT at, actor, from_state, to_state, detail FROM job_events \
             WHERE job_id = $1 ORDER BY id",
            id,
        )
        .await
    }

    /// The rollback job created for `job_id`, if any (there is at most one).
    pub async fn rollback_job_of(&self, job_id: &str) -> Result<Option<String>> {
        on_pool!(self, |pool| {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT id FROM jobs WHERE parent_job_id = $1 AND kind = 'rollback'",
            )
            .bind(job_id)
            .fetch_optional(pool)
            .await?)
        })
    }
}

#[cfg(test)]
mod active_tests {
    use super::*;

    #[test]
    fn the_active_states_are_the_unfinished_ones() {
        let unfinished: Vec<String> = JobState::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(ACTIVE_STATES, unfinished.join(", "));
        for backend in ["sqlite", "postgres"] {
            let migration = match backend {
                "sqlite" => include_str!("../../migrations/sqlite/0006_list_pages.sql"),
                _ => include_str!("../../migrations/postgres/0006_list_pages.sql"),
            };
            assert!(
                migration.contains(&format!("WHERE state IN ({ACTIVE_STATES})")),
                "{backend}"
            );
        }
    }
}
