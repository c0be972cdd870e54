//! The agent channel's rows: registration tokens, agents and their
//! sessions, and the task mailbox (docs/agent-channel.md).
//!
//! Every change is a compare-and-set, so any replica may hold an agent's
//! stream and any replica may wait for a task's outcome: a mailbox row moves
//! queued → delivered → running → finished (or expired) exactly once, and a
//! reconnect puts the agent's delivered rows back to queued so the new
//! stream delivers them again (the agent's journal makes that safe).

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Pool, Result, Store, corrupt, json, now_ms, unjson};

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub credential_hash: String,
    pub registered_at: i64,
    pub revoked_at: Option<i64>,
    /// The open stream's id, if any.
    pub session: Option<String>,
    /// The replica holding that stream.
    pub replica: Option<String>,
    pub connected_at: Option<i64>,
    pub last_heartbeat: Option<i64>,
    /// Run keys running at the last heartbeat.
    pub running: Vec<String>,
}

/// Where a mailbox row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    Queued,
    Delivered,
    Running,
    Finished,
    Expired,
}

impl MailState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "delivered" => Self::Delivered,
            "running" => Self::Running,
            "finished" => Self::Finished,
            "expired" => Self::Expired,
            other => return Err(corrupt(format!("unknown mailbox state {other:?}"))),
        })
    }
}

/// One task run for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailItem {
    pub run_key: String,
    /// The orchestrator task it belongs to (empty for health checks).
    pub task_id: String,
    pub attempt: i64,
    pub tenant: String,
    pub agent_id: String,
    pub kind: String,
    /// The protobuf `Task`, encoded (credentials are never stored).
    pub payload: Vec<u8>,
    pub deadline: i64,
    pub state: MailState,
    pub session: Option<String>,
    pub deliveries: i64,
    /// The agent's result (JSON), once finished.
    pub outcome: Option<String>,
    pub created_at: i64,
}

/// A mailbox row without its payload: what waiting for a task and
/// recording its progress read, several times per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailStatus {
    pub run_key: String,
    /// The orchestrator task it belongs to (empty for health checks).
    pub task_id: String,
    pub attempt: i64,
    pub agent_id: String,
    pub deadline: i64,
    pub state: MailState,
    pub deliveries: i64,
    /// The agent's result (JSON), once finished.
    pub outcome: Option<String>,
}

/// Why a registration token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefusal {
    Unknown,
    Used,
    Expired,
}

const AGENT_COLUMNS: &str = "id, tenant, name, version, capabilities, labels, credential_hash, \
     registered_at, revoked_at, session, replica, connected_at, last_heartbeat, running";

const MAIL_COLUMNS: &str = "run_key, task_id, attempt, tenant, agent_id, kind, payload, deadline, \
     state, session, deliveries, outcome, created_at";

macro_rules! agent_row {
    ($r:expr) => {{
        let r = $r;
        AgentRow {
            id: r.try_get("id")?,
            tenant: r.try_get("tenant")?,
            name: r.try_get("name")?,
            version: r.try_get("version")?,
            capabilities: unjson(&r.try_get::<String, _>("capabilities")?)?,
            labels: unjson(&r.try_get::<String, _>("labels")?)?,
            credential_hash: r.try_get("credential_hash")?,
            registered_at: r.try_get("registered_at")?,
            revoked_at: r.try_get("revoked_at")?,
            session: r.try_get("session")?,
            replica: r.try_get("replica")?,
            connected_at: r.try_get("connected_at")?,
            last_heartbeat: r.try_get("last_heartbeat")?,
            running: unjson(&r.try_get::<String, _>("running")?)?,
        }
    }};
}

macro_rules! mail_row {
    ($r:expr) => {{
        let r = $r;
        let payload: String = r.try_get("payload")?;
        MailItem {
            run_key: r.try_get("run_key")?,
            task_id: r.try_get("task_id")?,
            attempt: r.try_get("attempt")?,
            tenant: r.try_get("tenant")?,
            agent_id: r.try_get("agent_id")?,
            kind: r.try_get("kind")?,
            payload: hex::decode(payload).map_err(corrupt)?,
            deadline: r.try_get("deadline")?,
            state: MailState::parse(&r.try_get::<String, _>("state")?)?,
            session: r.try_get("session")?,
            deliveries: r.try_get("deliveries")?,
            outcome: r.try_get("outcome")?,
            created_at: r.try_get("created_at")?,
        }
    }};
}

/// `text` as a literal inside a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What an agent says about itself when it registers or connects.
#[derive(Debug, Clone)]
pub struct AgentInfo<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub capabilities: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
}

impl Store {
    /// Stores a registration token by its hash.
    pub async fn create_agent_token(
        &self,
        tenant: &str,
        created_by: &str,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO agent_tokens (token_hash, tenant, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(tenant)
            .bind(created_by)
            .bind(now_ms())
            .bind(expires_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Uses a token (once) and creates the agent, in one transaction.
    pub async fn register_agent(
        &self,
        token_hash: &str,
        agent_id: &str,
        credential_hash: &str,
        info: &AgentInfo<'_>,
    ) -> Result<std::result::Result<String, RegisterRefusal>> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let used = sqlx::query(
                "UPDATE agent_tokens SET used_at = $2, agent_id = $3 \
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING tenant",
            )
            .bind(token_hash)
            .bind(now)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = used else {
                let why = sqlx::query("SELECT used_at FROM agent_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                return Ok(Err(match why {
                    None => RegisterRefusal::Unknown,
                    Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                        RegisterRefusal::Used
                    }
                    Some(_) => RegisterRefusal::Expired,
                }));
            };
            let tenant: String = row.try_get("tenant")?;
            sqlx::query(
                "INSERT INTO agents (id, tenant, name, version, capabilities, labels, \
                 credential_hash, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(agent_id)
            .bind(&tenant)
            .bind(info.name)
            .bind(info.version)
            .bind(json(&info.capabilities))
            .bind(json(info.labels))
            .bind(credential_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(tenant))
        })
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRow>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| Ok(agent_row!(r))).transpose()
        })
    }

    /// A tenant's agents, by name.
    pub async fn agents(&self, tenant: &str) -> Result<Vec<AgentRow>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant = $1 ORDER BY name, id"
            )))
            .bind(tenant)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok(agent_row!(r))).collect()
        })
    }

    /// A tenant's agents whose labels include every pair of `selector`, by
    /// name. Labels are stored as compact JSON (`{"k":"v",…}`), so every
    /// match contains the text `"k":"v"`; SQL keeps only rows containing
    /// each pair's text (SQLite's `LIKE` also ignores ASCII case, so it may
    /// keep more) and the exact comparison here drops the rest. A target
    /// resolves its agent with this once per task: reading every agent of
    /// the tenant instead made a job's cost grow with agents × targets.
    pub async fn agents_matching(
        &self,
        tenant: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<AgentRow>> {
        let patterns: Vec<String> = selector
            .iter()
            .map(|(k, v)| format!("%{}%", like_escape(&format!("{}:{}", json(k), json(v)))))
            .collect();
        let mut sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant = $1");
        for i in 0..patterns.len() {
            sql.push_str(&format!(" AND labels LIKE ${} ESCAPE '\\'", i + 2));
        }
        sql.push_str(" ORDER BY name, id");
        on_pool!(self, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant);
            for p in &patterns {
                query = query.bind(p);
            }
            let rows = query.fetch_all(pool).await?;
            let mut agents = Vec::with_capacity(rows.len());
            for r in &rows {
                let agent = agent_row!(r);
                if selector.iter().all(|(k, v)| agent.labels.get(k) == Some(v)) {
                    agents.push(agent);
                }
            }
            Ok(agents)
        })
    }

    /// Revokes an agent: its stream is refused from now on.
    pub async fn revoke_agent(&self, tenant: &str, id: &str) -> Result<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "UPDATE agents SET revoked_at = $3, session = NULL, replica = NULL \
                 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(tenant)
            .bind(id)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// Records a new stream of an agent on `replica` (replacing any older
    /// one) and queues again what was delivered but not finished, so this
    /// stream delivers it.
    pub async fn open_agent_session(
        &self,
        id: &str,
        session: &str,
        replica: &str,
        info: &AgentInfo<'_>,
        running: &[String],
    ) -> Result<()> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE agents SET session = $2, replica = $3, connected_at = $4, \
                 last_heartbeat = $4, version = $5, capabilities = $6, labels = $7, running = $8 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(session)
            .bind(replica)
            .bind(now)
            .bind(info.version)
            .bind(json(&info.capabilities))
            .bind(json(info.labels))
            .bind(json(&running))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE agent_tasks SET state = 'queued', session = NULL, updated_at = $2 \
                 WHERE agent_id = $1 AND state IN ('delivered', 'running')",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// A heartbeat on `session`; `false` when that stream was replaced (or
    /// the agent revoked) and should close.
    pub async fn agent_heartbeat(
        &self,
        id: &str,
        session: &str,
        running: &[String],
    ) -> Result<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "UPDATE agents SET last_heartbeat = $3, running = $4 \
                 WHERE id = $1 AND session = $2 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(session)
            .bind(now_ms())
            .bind(json(&running))
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// The stream `session` ended.
    pub async fn close_agent_session(&self, id: &str, session: &str) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE agents SET session = NULL, replica = NULL, running = '[]' \
                 WHERE id = $1 AND session = $2",
            )
            .bind(id)
            .bind(session)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Puts a task run in an agent's mailbox; `false` if its run key is
    /// there already (a resumed task keeps its first row and deadline).
    pub async fn enqueue_agent_task(&self, item: &MailItem) -> Result<bool> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "INSERT INTO agent_tasks (run_key, task_id, attempt, tenant, agent_id, kind, \
                 payload, deadline, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $9) \
                 ON CONFLICT (run_key) DO NOTHING",
            )
            .bind(&item.run_key)
            .bind(&item.task_id)
            .bind(item.attempt)
            .bind(&item.tenant)
            .bind(&item.agent_id)
            .bind(&item.kind)
            .bind(hex::encode(&item.payload))
            .bind(item.deadline)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// A mailbox row without its payload (the encoded task, which only
    /// delivery needs).
    pub async fn agent_task_status(&self, run_key: &str) -> Result<Option<MailStatus>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT run_key, task_id, attempt, agent_id, deadline, state, deliveries, outcome \
                 FROM agent_tasks WHERE run_key = $1",
            )
            .bind(run_key)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(MailStatus {
                    run_key: r.try_get("run_key")?,
                    task_id: r.try_get("task_id")?,
                    attempt: r.try_get("attempt")?,
                    agent_id: r.try_get("agent_id")?,
                    deadline: r.try_get("deadline")?,
                    state: MailState::parse(&r.try_get::<String, _>("state")?)?,
                    deliveries: r.try_get("deliveries")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .transpose()
        })
    }

    pub async fn agent_task(&self, run_key: &str) -> Result<Option<MailItem>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MAIL_COLUMNS} FROM agent_tasks WHERE run_key = $1"
            )))
            .bind(run_key)
            .fetch_optional(pool)
            .await?;
            row.map(|r| Ok(mail_row!(r))).transpose()
        })
    }

    /// Queued rows, before their deadline, of agents whose stream `replica`
    /// holds, with that stream's session id.
    pub async fn deliverable_agent_tasks(
        &self,
        replica: &str,
        limit: i64,
    ) -> Result<Vec<(MailItem, String)>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {cols}, a.session AS agent_session FROM agent_tasks t \
                 JOIN agents a ON a.id = t.agent_id \
                 WHERE t.state = 'queued' AND a.replica = $1 AND a.session IS NOT NULL \
                 AND a.revoked_at IS NULL AND t.deadline > $2 \
                 ORDER BY t.created_at, t.run_key LIMIT $3",
                cols = MAIL_COLUMNS
                    .split(", ")
                    .map(|c| format!("t.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
            .bind(replica)
            .bind(now_ms())
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((mail_row!(r), r.try_get("agent_session")?)))
                .collect()
        })
    }

    /// queued → delivered on `session` (compare-and-set).
    pub async fn deliver_agent_task(&self, run_key: &str, session: &str) -> Result<bool> {
        self.move_agent_task(
            run_key,
            &["queued"],
            MailState::Delivered,
            Some(session),
            None,
        )
        .await
    }

    /// delivered → running for `agent`'s row; its (task id, attempt) if it
    /// moved. One statement both moves the row and says whose task it is.
    pub async fn agent_task_running_of(
        &self,
        run_key: &str,
        agent: &str,
    ) -> Result<Option<(String, i64)>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "UPDATE agent_tasks SET state = 'running', updated_at = $3 \
                 WHERE run_key = $1 AND agent_id = $2 AND state = 'delivered' \
                 RETURNING task_id, attempt",
            )
            .bind(run_key)
            .bind(agent)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?;
            row.map(|r| Ok((r.try_get("task_id")?, r.try_get("attempt")?)))
                .transpose()
        })
    }

    /// delivered → running.
    pub async fn agent_task_running(&self, run_key: &str) -> Result<bool> {
        self.move_agent_task(run_key, &["delivered"], MailState::Running, None, None)
            .await
    }

    /// Records `agent`'s result; `false` if there is no such open row of
    /// that agent (finished or expired already, or another agent's: the
    /// result is then ignored).
    pub async fn finish_agent_task(
        &self,
        run_key: &str,
        agent: &str,
        outcome: &str,
    ) -> Result<bool> {
        self.move_agent_task_of(
            run_key,
            Some(agent),
            &["queued", "delivered", "running"],
            MailState::Finished,
            None,
            Some(outcome),
        )
        .await
    }

    /// Expires an unfinished row (its deadline passed); `false` if it had
    /// finished meanwhile.
    pub async fn expire_agent_task(&self, run_key: &str) -> Result<bool> {
        self.move_agent_task(
            run_key,
            &["queued", "delivered", "running"],
            MailState::Expired,
            None,
            None,
        )
        .await
    }

    async fn move_agent_task(
        &self,
        run_key: &str,
        from: &[&str],
        to: MailState,
        session: Option<&str>,
        outcome: Option<&str>,
    ) -> Result<bool> {
        self.move_agent_task_of(run_key, None, from, to, session, outcome)
            .await
    }

    /// Moves a row from one of `from` to `to` (of `agent` only, if given).
    async fn move_agent_task_of(
        &self,
        run_key: &str,
        agent: Option<&str>,
        from: &[&str],
        to: MailState,
        session: Option<&str>,
        outcome: Option<&str>,
    ) -> Result<bool> {
        let states = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let of_agent = if agent.is_some() {
            " AND agent_id = $7"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE agent_tasks SET state = $2, updated_at = $3, \
             session = COALESCE($4, session), outcome = COALESCE($5, outcome), \
             deliveries = deliveries + $6 WHERE run_key = $1 AND state IN ({states}){of_agent}"
        );
        let delivered = i64::from(to == MailState::Delivered);
        on_pool!(self, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(run_key)
                .bind(to.as_str())
                .bind(now_ms())
                .bind(session)
                .bind(outcome)
                .bind(delivered);
            if let Some(agent) = agent {
                query = query.bind(agent);
            }
            let n = query.execute(pool).await?.rows_affected();
            Ok(n == 1)
        })
    }

    /// Agents' open mailbox rows, for `sextant agents` (current task).
    pub async fn open_agent_tasks(&self, tenant: &str) -> Result<Vec<MailItem>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MAIL_COLUMNS} FROM agent_tasks \
                 WHERE tenant = $1 AND state IN ('queued', 'delivered', 'running') \
                 ORDER BY created_at"
            )))
            .bind(tenant)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok(mail_row!(r))).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn selectors_match_labels_exactly_whatever_characters_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("o.db").display());
        let store = Store::open(&url).await.unwrap();
        let agents: [(&str, &[(&str, &str)]); 7] = [
            ("a", &[("zone", "a"), ("role", "web")]),
            ("b", &[("zone", "b"), ("role", "web")]),
            ("upper", &[("zone", "A")]),
            ("pct", &[("zone", "5%")]),
            ("under", &[("z_ne", "a")]),
            ("quote", &[("zone", "say \"a\"")]),
            ("slash", &[("zone", "c:\\x")]),
        ];
        for (name, labels) in agents {
            let token = format!("token-{name}");
            store
                .create_agent_token("default", "test", &token, i64::MAX)
                .await
                .unwrap();
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let info = AgentInfo {
                name,
                version: "0",
                capabilities: &[],
                labels: &labels,
            };
            store
                .register_agent(&token, name, "hash", &info)
                .await
                .unwrap()
                .unwrap();
        }
        let names = |selector: &[(&str, &str)]| {
            let selector: BTreeMap<String, String> = selector
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let store = store.clone();
            async move {
                store
                    .agents_matching("default", &selector)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(names(&[("zone", "a")]).await, ["a"]);
        assert_eq!(names(&[("role", "web")]).await, ["a", "b"]);
        assert_eq!(names(&[("role", "web"), ("zone", "b")]).await, ["b"]);
        assert_eq!(names(&[("zone", "5%")]).await, ["pct"]);
        assert!(names(&[("zone", "%")]).await.is_empty());
        assert_eq!(names(&[("z_ne", "a")]).await, ["under"]);
        assert_eq!(names(&[("zone", "say \"a\"")]).await, ["quote"]);
        assert_eq!(names(&[("zone", "c:\\x")]).await, ["slash"]);
        assert!(names(&[("zone", "")]).await.is_empty());
        assert_eq!(names(&[]).await.len(), 7);
        assert!(
            store
                .agents_matching("other", &BTreeMap::new())
                .await
                .unwrap()
                .is_empty()
        );
    }
}
