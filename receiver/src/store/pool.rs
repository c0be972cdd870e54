//! Where statements meet a backend. Every read (`reads/`), and the stale
//! sweep, is written once against a [`StorePool`]: it builds a
//! [`Statement`] (SQL text and the values bound to it) and fetches typed
//! rows; the pool runs it. The backends differ only in the pool and, for
//! the few statements whose SQL differs by dialect ([`PerBackend`]:
//! `LATERAL`, `= ANY (ARRAY(…))`), in which text is run.

use sqlx::database::HasStatementCache;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::query::{Query, QueryAs};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Arguments, Database, Encode, FromRow, IntoArguments, Postgres, Sqlite, Type};

use super::{SourceFilter, StateQuery, StoreError, WorkloadRange};

/// One of a store's pools (its read pool, for the reads): the connections
/// a statement runs on, and by its variant the SQL dialect of the
/// statements written per backend.
#[derive(Debug, Clone, Copy)]
pub enum StorePool<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

/// A statement written once per backend: SQLite's text, PostgreSQL's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PerBackend {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// A row type a read fetches: decodable from both backends' rows.
pub(crate) trait ReadRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> ReadRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A value bound to a read statement. Text and integers, NULL or not, are
/// all the reads bind: each is bound with the type it had when the reads
/// were written per backend (`TEXT`, `BIGINT`), so PostgreSQL plans the
/// same statement as before.
#[derive(Debug, Clone)]
enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

/// A read statement: its SQL and the values of its `$n` parameters, in
/// order.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    sql: &'static str,
    params: Vec<Param>,
    persistent: bool,
}

impl Statement {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self {
            sql,
            params: Vec::with_capacity(16),
            persistent: true,
        }
    }

    /// Binds the next parameter to text (or NULL).
    pub(crate) fn text(mut self, value: impl Into<Option<String>>) -> Self {
        self.params.push(Param::Text(value.into()));
        self
    }

    /// Binds the next parameter to an integer (or NULL).
    pub(crate) fn int(mut self, value: impl Into<Option<i64>>) -> Self {
        self.params.push(Param::Int(value.into()));
        self
    }

    /// Not kept prepared on its connection: planned with its values every
    /// time it runs (see `reads/hosts.rs`).
    pub(crate) fn unprepared(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Binds the target filter (`sql::target_where`): `$1` tenant, then
    /// workspace, application, workload, environment and target.
    pub(crate) fn filter(self, tenant: &str, f: &StateQuery) -> Self {
        self.text(tenant.to_owned())
            .text(f.workspace.clone())
            .text(f.application.clone())
            .text(f.workload.clone())
            .text(f.environment.clone())
            .text(f.target.clone())
    }

    /// Binds a source filter (`sql::source_where`): the sources, then the
    /// reconciler name.
    pub(crate) fn source(self, f: &SourceFilter) -> Self {
        self.text(f.sources_param()).text(f.reconciler.clone())
    }

    /// Binds a page's range of workloads (`sql::workload_range`), when there
    /// is one: the key to start after (or NULLs), then the last key.
    pub(crate) fn range(self, range: Option<&WorkloadRange>) -> Self {
        let Some(range) = range else {
            return self;
        };
        let (a1, a2, a3) = match &range.after {
            Some((a, b, c)) => (Some(a.clone()), Some(b.clone()), Some(c.clone())),
            None => (None, None, None),
        };
        self.text(a1)
            .text(a2)
            .text(a3)
            .text(range.last.0.clone())
            .text(range.last.1.clone())
            .text(range.last.2.clone())
    }
}

impl Statement {
    /// The statement's values as backend `DB`'s arguments.
    fn arguments<DB>(self) -> Result<DB::Arguments, sqlx::Error>
    where
        DB: Database,
        Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
        Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    {
        let mut arguments = DB::Arguments::default();
        for param in self.params {
            match param {
                Param::Text(value) => arguments.add(value),
                Param::Int(value) => arguments.add(value),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(arguments)
    }

    /// The statement as a query of backend `DB` that returns rows `O`.
    fn query_as<DB, O>(self) -> Result<QueryAs<'static, DB, O, DB::Arguments>, sqlx::Error>
    where
        DB: Database + HasStatementCache,
        DB::Arguments: IntoArguments<DB>,
        O: for<'r> FromRow<'r, DB::Row>,
        Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
        Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    {
        let (sql, persistent) = (self.sql, self.persistent);
        Ok(sqlx::query_as_with(sql, self.arguments()?).persistent(persistent))
    }

    /// The statement as a query of backend `DB` that returns no rows.
    fn query<DB>(self) -> Result<Query<'static, DB, DB::Arguments>, sqlx::Error>
    where
        DB: Database + HasStatementCache,
        DB::Arguments: IntoArguments<DB>,
        Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
        Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    {
        let (sql, persistent) = (self.sql, self.persistent);
        Ok(sqlx::query_with(sql, self.arguments()?).persistent(persistent))
    }
}

impl StorePool<'_> {
    /// Whether the pool is PostgreSQL's.
    pub(crate) fn is_postgres(self) -> bool {
        matches!(self, StorePool::Postgres(_))
    }

    /// `sqlite` or `postgres`.
    pub(crate) fn backend(self) -> &'static str {
        match self {
            StorePool::Sqlite(_) => "sqlite",
            StorePool::Postgres(_) => "postgres",
        }
    }

    /// This backend's text of a statement written per backend.
    pub(crate) fn pick(self, statement: &PerBackend) -> &'static str {
        match self {
            StorePool::Sqlite(_) => statement.sqlite,
            StorePool::Postgres(_) => statement.postgres,
        }
    }

    /// Answers when the database answers.
    pub(crate) async fn ping(self) -> Result<(), StoreError> {
        self.execute(Statement::new("SELECT 1")).await.map(drop)
    }

    /// Runs `statement` and returns every row.
    pub(crate) async fn fetch_all<O: ReadRow>(
        self,
        statement: Statement,
    ) -> Result<Vec<O>, StoreError> {
        Ok(match self {
            StorePool::Sqlite(pool) => statement.query_as::<Sqlite, O>()?.fetch_all(pool).await?,
            StorePool::Postgres(pool) => {
                statement.query_as::<Postgres, O>()?.fetch_all(pool).await?
            }
        })
    }

    /// Runs `statement` and returns its one row.
    pub(crate) async fn fetch_one<O: ReadRow>(self, statement: Statement) -> Result<O, StoreError> {
        Ok(match self {
            StorePool::Sqlite(pool) => statement.query_as::<Sqlite, O>()?.fetch_one(pool).await?,
            StorePool::Postgres(pool) => {
                statement.query_as::<Postgres, O>()?.fetch_one(pool).await?
            }
        })
    }

    /// Runs a statement that returns no rows; returns how many rows it
    /// changed.
    pub(crate) async fn execute(self, statement: Statement) -> Result<u64, StoreError> {
        Ok(match self {
            StorePool::Sqlite(pool) => statement
                .query::<Sqlite>()?
                .execute(pool)
                .await?
                .rows_affected(),
            StorePool::Postgres(pool) => statement
                .query::<Postgres>()?
                .execute(pool)
                .await?
                .rows_affected(),
        })
    }

    /// Runs `statement` and returns its first row, if any.
    pub(crate) async fn fetch_optional<O: ReadRow>(
        self,
        statement: Statement,
    ) -> Result<Option<O>, StoreError> {
        Ok(match self {
            StorePool::Sqlite(pool) => {
                statement
                    .query_as::<Sqlite, O>()?
                    .fetch_optional(pool)
                    .await?
            }
            StorePool::Postgres(pool) => {
                statement
                    .query_as::<Postgres, O>()?
                    .fetch_optional(pool)
                    .await?
            }
        })
    }
}
