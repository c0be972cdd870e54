//! What last succeeded on each (target, component), and what ran before.

use sqlx::Row;

use super::*;

/// What a job deployed on one target ([`Store::set_deployed_all`]).
#[derive(Debug, Clone, Copy)]
pub struct DeployedOn<'a> {
    pub target: &'a str,
    pub component: &'a str,
    pub release_id: &'a str,
    pub image: &'a str,
    pub digest: &'a str,
    pub slot: Option<&'a str>,
}

/// What last succeeded on a (target, component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    pub target: String,
    pub component: String,
    pub release_id: String,
    pub image: String,
    pub digest: String,
    pub slot: Option<String>,
    pub job_id: String,
    pub deployed_at: String,
    /// What ran before, if anything.
    pub previous: Option<PreviousDeployment>,
}

/// The deployment before the current one on a (target, component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviousDeployment {
    pub release_id: String,
    pub image: String,
    pub digest: String,
    pub slot: Option<String>,
}

impl Store {
    /// Records what a job deployed on each of its targets, in one
    /// transaction.
    pub async fn set_deployed_all(
        &self,
        tenant: &str,
        job_id: &str,
        deployed: &[DeployedOn<'_>],
    ) -> Result<()> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for d in deployed {
                sqlx::query(
                    "INSERT INTO deployed (tenant, target, component, release_id, image, digest, slot, \
                         job_id, deployed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (tenant, target, component) DO UPDATE SET \
                         previous_release_id = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_release_id ELSE deployed.release_id END, \
                         previous_image = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_image ELSE deployed.image END, \
                         previous_digest = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_digest ELSE deployed.digest END, \
                         previous_slot = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_slot ELSE deployed.slot END, \
                         release_id = $4, image = $5, digest = $6, slot = $7, job_id = $8, \
                         deployed_at = $9",
                )
                .bind(tenant)
                .bind(d.target)
                .bind(d.component)
                .bind(d.release_id)
                .bind(d.image)
                .bind(d.digest)
                .bind(d.slot)
                .bind(job_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// What runs on each (target, component) of the tenant, by target.
    pub async fn deployed(&self, tenant: &str, target: Option<&str>) -> Result<Vec<Deployed>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT target, component, release_id, image, digest, slot, job_id, deployed_at, \
                     previous_release_id, previous_image, previous_digest, previous_slot \
                 FROM deployed WHERE tenant = $1 AND ($2 IS NULL OR target = $2) \
                 ORDER BY target, component",
            )
            .bind(tenant)
            .bind(target)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(Deployed {
                    target: r.try_get("target")?,
                    component: r.try_get("component")?,
                    release_id: r.try_get("release_id")?,
                    image: r.try_get("image")?,
                    digest: r.try_get("digest")?,
                    slot: r.try_get("slot")?,
                    job_id: r.try_get("job_id")?,
                    deployed_at: rfc3339(r.try_get("deployed_at")?),
                    previous: match r.try_get::<Option<String>, _>("previous_digest")? {
                        Some(digest) => Some(PreviousDeployment {
                            release_id: r
                                .try_get::<Option<String>, _>("previous_release_id")?
                                .unwrap_or_default(),
                            image: r
                                .try_get::<Option<String>, _>("previous_image")?
                                .unwrap_or_default(),
                            digest,
                            slot: r.try_get("previous_slot")?,
                        }),
                        None => None,
                    },
                });
            }
            Ok(out)
        })
    }
}
