//! Environments, targets and components: what `apply` writes, each
//! stored once per tenant with its definition as JSON.

use sqlx::Row;

use super::*;

impl Store {
    /// Creates or updates environment `spec` at `position`.
    pub async fn put_environment(
        &self,
        tenant: &str,
        spec: &EnvironmentSpec,
        position: i64,
    ) -> Result<Change> {
        let text = json(spec);
        self.put_config(
            "environments",
            tenant,
            &spec.name,
            &text,
            &[("position", position.to_string())],
        )
        .await
    }

    /// Creates or updates target `spec`.
    pub async fn put_target(&self, tenant: &str, spec: &TargetSpec) -> Result<Change> {
        let execution = spec
            .connection()
            .map_err(super::corrupt)?
            .execution()
            .to_owned();
        let text = json(spec);
        self.put_config(
            "targets",
            tenant,
            &spec.name,
            &text,
            &[
                ("environment", spec.environment.clone()),
                ("execution", execution),
            ],
        )
        .await
    }

    /// Creates or updates component `spec`.
    pub async fn put_component(&self, tenant: &str, spec: &ComponentSpec) -> Result<Change> {
        let text = json(spec);
        self.put_config("components", tenant, &spec.name, &text, &[])
            .await
    }

    async fn put_config(
        &self,
        table: &str,
        tenant: &str,
        name: &str,
        spec: &str,
        extra: &[(&str, String)],
    ) -> Result<Change> {
        let select = format!(
            "SELECT spec{} FROM {table} WHERE tenant = $1 AND name = $2",
            extra
                .iter()
                .map(|(c, _)| format!(", CAST({c} AS TEXT) AS {c}"))
                .collect::<String>()
        );
        let columns: String = extra.iter().map(|(c, _)| format!(", {c}")).collect();
        let placeholders: String = (0..extra.len()).map(|i| format!(", ${}", i + 5)).collect();
        let updates: String = extra
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!(", {c} = ${}", i + 5))
            .collect();
        let insert = format!(
            "INSERT INTO {table} (tenant, name, spec, updated_at{columns}) \
             VALUES ($1, $2, $3, $4{placeholders}) \
             ON CONFLICT (tenant, name) DO UPDATE SET spec = $3, updated_at = $4{updates}"
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let old = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                .bind(tenant)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let change = match old {
                None => Change::Created,
                Some(row) => {
                    let same_spec = row.try_get::<String, _>("spec")? == spec;
                    let mut same_extra = true;
                    for (column, value) in extra {
                        same_extra &= row.try_get::<String, _>(*column)? == *value;
                    }
                    if same_spec && same_extra {
                        Change::Unchanged
                    } else {
                        Change::Updated
                    }
                }
            };
            if change != Change::Unchanged {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                    .bind(tenant)
                    .bind(name)
                    .bind(spec)
                    .bind(now_ms());
                for (column, value) in extra {
                    q = if *column == "position" {
                        q.bind(value.parse::<i64>().unwrap_or_default())
                    } else {
                        q.bind(value.clone())
                    };
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(change)
        })
    }

    /// Environments in promotion order.
    pub async fn environments(&self, tenant: &str) -> Result<Vec<EnvironmentSpec>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT spec FROM environments WHERE tenant = $1 ORDER BY position, name",
            )
            .bind(tenant)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .collect()
        })
    }

    /// Targets, optionally of one environment, by name.
    pub async fn targets(
        &self,
        tenant: &str,
        environment: Option<&str>,
    ) -> Result<Vec<TargetSpec>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT spec FROM targets WHERE tenant = $1 AND ($2 IS NULL OR environment = $2) \
                 ORDER BY name",
            )
            .bind(tenant)
            .bind(environment)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .collect()
        })
    }

    pub async fn target(&self, tenant: &str, name: &str) -> Result<Option<TargetSpec>> {
        on_pool!(self, |pool| {
            let row = sqlx::query("SELECT spec FROM targets WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .transpose()
        })
    }

    pub async fn components(&self, tenant: &str) -> Result<Vec<ComponentSpec>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query("SELECT spec FROM components WHERE tenant = $1 ORDER BY name")
                .bind(tenant)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .collect()
        })
    }

    // -- releases -----------------------------------------------------------
}
