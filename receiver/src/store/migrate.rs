//! Schema migrations, embedded in the binary and applied at start.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql")).into_sql_str(),
            false,
        )),*]
    };
}

/// Migrations of the SQLite schema.
pub(crate) fn sqlite() -> Migrator {
    Migrator::with_migrations(migrations!("sqlite":
        1 => "0001_hub_model",
        2 => "0002_query_indexes",
    ))
}

/// Migrations of the PostgreSQL schema.
pub(crate) fn postgres() -> Migrator {
    Migrator::with_migrations(migrations!("postgres":
        1 => "0001_hub_model",
        2 => "0002_query_indexes",
    ))
}
