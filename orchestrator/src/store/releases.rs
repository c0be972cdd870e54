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
            after_cursor("x", 3)
        } else {
            String::new()
        };
        // One statement for the page and its components: the page's ids by
        // index `releases_by_tenant` (tenant, created_at, id), then each
        // release's row and components by primary key. Reading each release
        // on its own (two statements a release) made a page of 1,000 cost
        // 2,000 round trips: the hub's /pipeline took 330 ms on SQLite
        // (cli/benches/ui_pages.rs).
        let sql = format!(
            "SELECT r.id, r.name, r.status, r.created_by, r.created_at, r.finalized_at, \
                 c.component, c.image, c.digest, c.tag \
             FROM (SELECT x.id FROM releases x WHERE x.tenant = $1{after} \
                   ORDER BY x.created_at DESC, x.id DESC LIMIT $2) ids \
             JOIN releases r ON r.id = ids.id \
             LEFT JOIN release_components c ON c.release_id = r.id \
             ORDER BY r.created_at DESC, r.id DESC, c.component"
        );
        on_pool!(self, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(page.limit);
            if let Some((at, id)) = &cursor {
                q = q.bind(*at).bind(id.clone());
            }
            let rows = q.fetch_all(pool).await?;
            let mut out: Vec<Release> = Vec::new();
            for r in &rows {
                let id: String = r.try_get("id")?;
                if out.last().is_none_or(|last| last.id != id) {
                    let status = match r.try_get::<String, _>("status")?.as_str() {
                        "finalized" => ReleaseStatus::Finalized,
                        _ => ReleaseStatus::Draft,
                    };
                    out.push(Release {
                        id,
                        name: r.try_get("name")?,
                        status,
                        components: Vec::new(),
                        created_by: r.try_get("created_by")?,
                        created_at: rfc3339(r.try_get("created_at")?),
                        finalized_at: r.try_get::<Option<i64>, _>("finalized_at")?.map(rfc3339),
                    });
                }
                if let (Some(release), Some(component)) =
                    (out.last_mut(), r.try_get::<Option<String>, _>("component")?)
                {
                    release.components.push(ReleaseComponent {
                        component,
                        image: r.try_get("image")?,
                        digest: r.try_get("digest")?,
                        tag: r.try_get("tag")?,
                    });
                }
            }
            Ok(Some(out))
        })
    }

    // -- promotions ---------------------------------------------------------
}
