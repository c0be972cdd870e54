//! Promotions with their events, approvals, manual gates and the
//! decision record.

use sqlx::Row;

use super::*;

/// A promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    pub id: String,
    pub release_id: String,
    pub release: String,
    pub environment: String,
    pub state: PromotionState,
    pub requested_by: String,
    pub strategy: Strategy,
    pub reason: Option<String>,
    pub job_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The W3C `traceparent` of the promotion's span: its trace holds the
    /// approval wait, the gates, the deployment and every task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// An approval or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub at: String,
}

/// A promotion to create, in `requested`.
#[derive(Debug, Clone, Copy)]
pub struct NewPromotion<'a> {
    pub tenant: &'a str,
    pub release_id: &'a str,
    pub environment: &'a str,
    pub requested_by: &'a str,
    pub strategy: &'a Strategy,
    pub reason: Option<&'a str>,
    /// The W3C `traceparent` of the span requesting it.
    pub traceparent: Option<&'a str>,
}

/// Which promotions a list shows: all of them when every field is empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromotionFilter<'a> {
    /// In one of these states.
    pub states: &'a [PromotionState],
    /// Into this environment.
    pub environment: Option<&'a str>,
    /// Of this release (its id).
    pub release_id: Option<&'a str>,
}

/// A decision record: each gate's and approval's result, written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecord {
    pub promotion_id: String,
    pub outcome: String,
    pub record: serde_json::Value,
    pub decided_at: String,
}

impl Store {
    pub async fn create_promotion(&self, new: &NewPromotion<'_>) -> Result<Promotion> {
        let NewPromotion {
            tenant,
            release_id,
            environment,
            requested_by,
            strategy,
            reason,
            traceparent,
        } = *new;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO promotions (id, tenant, release_id, environment, state, requested_by, \
                     strategy, reason, created_at, updated_at, traceparent) \
                 VALUES ($1, $2, $3, $4, 'requested', $5, $6, $7, $8, $8, $9)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(release_id)
            .bind(environment)
            .bind(requested_by)
            .bind(json(strategy))
            .bind(reason)
            .bind(now)
            .bind(traceparent)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO promotion_events (promotion_id, at, actor, from_state, to_state, detail) \
                 VALUES ($1, $2, $3, NULL, 'requested', $4)",
            )
            .bind(&id)
            .bind(now)
            .bind(requested_by)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.promotion(tenant, &id)
            .await?
            .ok_or_else(|| corrupt("promotion vanished"))
    }

    pub async fn promotion(&self, tenant: &str, id: &str) -> Result<Option<Promotion>> {
        let sql = format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions p JOIN releases r ON r.id = p.release_id \
             WHERE p.tenant = $1 AND p.id = $2"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(promotion_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// A page of the promotions that pass `filter`, newest first
    /// ([`Page`]); `None` when `page.before` is not one of the tenant's
    /// promotions.
    pub async fn promotions(
        &self,
        tenant: &str,
        filter: &PromotionFilter<'_>,
        page: Page<'_>,
    ) -> Result<Option<Vec<Promotion>>> {
        let Some(cursor) = self.page_cursor("promotions", tenant, page).await? else {
            return Ok(None);
        };
        // Placeholders: $1 tenant, $2 limit, then what is there of the
        // cursor, the environment and the release, in that order. Each
        // filter has its index (0006_list_pages), all ending in
        // (created_at, id).
        let mut next = 3;
        let mut filters = String::new();
        if cursor.is_some() {
            filters.push_str(&after_cursor("p", next));
            next += 2;
        }
        if !filter.states.is_empty() {
            filters.push_str(&format!(
                " AND p.state IN ({})",
                filter
                    .states
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if filter.environment.is_some() {
            filters.push_str(&format!(" AND p.environment = ${next}"));
            next += 1;
        }
        if filter.release_id.is_some() {
            filters.push_str(&format!(" AND p.release_id = ${next}"));
        }
        let sql = format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions p JOIN releases r ON r.id = p.release_id \
             WHERE p.tenant = $1{filters} ORDER BY p.created_at DESC, p.id DESC LIMIT $2"
        );
        on_pool!(self, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(page.limit);
            if let Some((at, id)) = &cursor {
                q = q.bind(*at).bind(id.clone());
            }
            if let Some(environment) = filter.environment {
                q = q.bind(environment);
            }
            if let Some(release) = filter.release_id {
                q = q.bind(release);
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(promotion_row!(r));
            }
            Ok(Some(out))
        })
    }

    /// Tenants with promotions in `states` (for the gate loop).
    pub async fn promotions_in(&self, states: &[PromotionState]) -> Result<Vec<(String, String)>> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT tenant, id FROM promotions WHERE state IN ({list}) ORDER BY created_at, id"
        );
        on_pool!(self, |pool| {
            Ok(
                sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// Moves a promotion from `from` to `to` (compare-and-set) and records
    /// the event; `false` if it was not in `from`.
    pub async fn move_promotion(
        &self,
        id: &str,
        from: PromotionState,
        to: PromotionState,
        actor: &str,
        detail: Option<&str>,
        job_id: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
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
                    "UPDATE promotions SET state = $3, updated_at = $4, job_id = COALESCE($5, job_id) \
                     WHERE id = $1 AND state = $2",
                )
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(job_id),
                "promotion_events"("promotion_id"),
                event
            )
        })
    }

    /// The promotion's moves, oldest first.
    pub async fn promotion_events(&self, id: &str) -> Result<Vec<StateEvent>> {
        self.state_events(
            "SELECT at, actor, from_state, to_state, detail FROM promotion_events \
             WHERE promotion_id = $1 ORDER BY id",
            id,
        )
        .await
    }

    /// Records an approval; `false` if this approver already decided.
    pub async fn add_approval(
        &self,
        promotion_id: &str,
        approver: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "INSERT INTO approvals (promotion_id, approver, decision, comment, at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (promotion_id, approver) DO NOTHING",
            )
            .bind(promotion_id)
            .bind(approver)
            .bind(if approve { "approve" } else { "reject" })
            .bind(comment)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    pub async fn approvals(&self, promotion_id: &str) -> Result<Vec<Approval>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, String, Option<String>, i64)>(
                "SELECT approver, decision, comment, at FROM approvals \
                 WHERE promotion_id = $1 ORDER BY id",
            )
            .bind(promotion_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(approver, decision, comment, at)| Approval {
                    approver,
                    decision,
                    comment,
                    at: rfc3339(at),
                })
                .collect())
        })
    }

    /// Opens or closes a manual gate of a promotion.
    pub async fn set_manual_gate(
        &self,
        promotion_id: &str,
        gate: &str,
        open: bool,
        actor: &str,
        comment: Option<&str>,
    ) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO manual_gates (promotion_id, gate, open, actor, comment, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (promotion_id, gate) \
                 DO UPDATE SET open = $3, actor = $4, comment = $5, at = $6",
            )
            .bind(promotion_id)
            .bind(gate)
            .bind(i64::from(open))
            .bind(actor)
            .bind(comment)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Manual gates of a promotion: name → (open, actor, at, comment).
    pub async fn manual_gates(
        &self,
        promotion_id: &str,
    ) -> Result<BTreeMap<String, (bool, String, String, Option<String>)>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, i64, String, i64, Option<String>)>(
                "SELECT gate, open, actor, at, comment FROM manual_gates WHERE promotion_id = $1",
            )
            .bind(promotion_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(gate, open, actor, at, comment)| {
                    (gate, (open != 0, actor, rfc3339(at), comment))
                })
                .collect())
        })
    }

    /// Writes the decision record once; later calls keep the first.
    pub async fn write_decision(
        &self,
        promotion_id: &str,
        outcome: &str,
        record: &serde_json::Value,
    ) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO decision_records (promotion_id, outcome, record, decided_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (promotion_id) DO NOTHING",
            )
            .bind(promotion_id)
            .bind(outcome)
            .bind(record.to_string())
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn decision(&self, promotion_id: &str) -> Result<Option<DecisionRecord>> {
        on_pool!(self, |pool| {
            let row = sqlx::query_as::<_, (String, String, i64)>(
                "SELECT outcome, record, decided_at FROM decision_records WHERE promotion_id = $1",
            )
            .bind(promotion_id)
            .fetch_optional(pool)
            .await?;
            row.map(|(outcome, record, at)| {
                Ok(DecisionRecord {
                    promotion_id: promotion_id.to_owned(),
                    outcome,
                    record: unjson(&record)?,
                    decided_at: rfc3339(at),
                })
            })
            .transpose()
        })
    }

    // -- jobs and tasks -----------------------------------------------------
}
