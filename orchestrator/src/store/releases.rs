//! Releases: digest-pinned sets of components, drafted, then final.

use sqlx::Row;

use super::*;

impl Store {
    /// Creates a release; `None` if the name is taken.
    pub async fn create_release(
        &self,
        tenant: &str,
        name: &str,
        components: &[ReleaseComponent],
        created_by: &str,
        finalize: bool,
    ) -> Result<Option<Release>> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO releases (id, tenant, name, status, created_by, created_at) \
                 VALUES ($1, $2, $3, 'draft', $4, $5) ON CONFLICT (tenant, name) DO NOTHING",
            )
            .bind(&id)
            .bind(tenant)
            .bind(name)
            .bind(created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(None);
            }
            for c in components {
                sqlx::query(
                    "INSERT INTO release_components (release_id, component, image, digest, tag) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id)
                .bind(&c.component)
                .bind(&c.image)
                .bind(&c.digest)
                .bind(&c.tag)
                .execute(&mut *tx)
                .await?;
            }
            if finalize {
                sqlx::query(
                    "UPDATE releases SET status = 'finalized', finalized_at = $2 WHERE id = $1",
                )
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.release(tenant, &id).await
    }

    /// Finalizes a draft release; `false` if it was not a draft.
    pub async fn finalize_release(&self, tenant: &str, id: &str) -> Result<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "UPDATE releases SET status = 'finalized', finalized_at = $3 \
                 WHERE tenant = $1 AND id = $2 AND status = 'draft'",
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

    /// A release by id or by name.
    pub async fn release(&self, tenant: &str, id_or_name: &str) -> Result<Option<Release>> {
        on_pool!(self, |pool| {
            let Some(r) = sqlx::query(
                "SELECT id, name, status, created_by, created_at, finalized_at FROM releases \
                 WHERE tenant = $1 AND (id = $2 OR name = $2)",
            )
            .bind(tenant)
            .bind(id_or_name)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let id: String = r.try_get("id")?;
            let rows = sqlx::query(
                "SELECT component, image, digest, tag FROM release_components \
                 WHERE release_id = $1 ORDER BY component",
            )
            .bind(&id)
            .fetch_all(pool)
            .await?;
            let mut components = Vec::with_capacity(rows.len());
            for c in rows {
                components.push(ReleaseComponent {
                    component: c.try_get("component")?,
                    image: c.try_get("image")?,
                    digest: c.try_get("digest")?,
                    tag: c.try_get("tag")?,
                });
            }
            let status = match r.try_get::<String, _>("status")?.as_str() {
                "finalized" => ReleaseStatus::Finalized,
                _ => ReleaseStatus::Draft,
            };
            Ok(Some(Release {
                id,
                name: r.try_get("name")?,
                status,
                components,
                created_by: r.try_get("created_by")?,
                created_at: rfc3339(r.try_get("created_at")?),
                finalized_at: r.try_get::<Option<i64>, _>("finalized_at")?.map(rfc3339),
            }))
        })
    }

    /// A page of the releases, newest first ([`Page`]); `None` when
    /// `page.before` is not one of the tenant's releases.
    pub async fn releases(&self, tenant: &str, page: Page<'_>) -> Result<Option<Vec<Release>>> {
        let Some(cursor) = self.page_cursor("releases", tenant, page).await? else {
            return Ok(None);
        };
        let after = if cursor.is_some() {
            after_cursor("r", 3)
        } else {
            String::new()
        };
        // Index `releases_by_tenant` (tenant, created_at, id).
        let sql = format!(
            "SELECT r.id FROM releases r WHERE r.tenant = $1{after} \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $2"
        );
        let ids: Vec<String> = on_pool!(self, |pool| {
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(page.limit);
            if let Some((at, id)) = &cursor {
                q = q.bind(*at).bind(id.clone());
            }
            q.fetch_all(pool).await?
        });
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.release(tenant, &id).await? {
                out.push(r);
            }
        }
        Ok(Some(out))
    }

    // -- promotions ---------------------------------------------------------
}
