//! Opening a service's database: which backend a URL names, the
//! connection settings both services use, and URLs with their password
//! hidden wherever they are logged or shown.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// How long a query waits for a pooled connection before it fails (and
/// the API answers 503) instead of queueing without end.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The two databases a service can keep its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: embedded, one file.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Backend {
    /// The backend `url` names.
    pub fn of(url: &str) -> Result<Self, DatabaseError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(DatabaseError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// `sqlite` or `postgres`, as metrics and health answers name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A database URL that cannot be opened, before any connection is tried.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// Neither SQLite nor PostgreSQL; the URL is shown with its password
    /// hidden.
    #[error("unsupported database URL {0:?}: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// The URL does not parse as the backend's options.
    #[error("invalid database URL {url:?}")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The directory of a SQLite file could not be made.
    #[error("cannot create the database directory {path}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `url` with its password replaced by `***`, for logs and messages; a
/// URL too broken to parse still loses what stands between `user:` and
/// `@`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => redact_unparsed(url),
    }
}

fn redact_unparsed(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = rest.find('/').map_or(rest, |end| &rest[..end]);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// The SQLite settings both services use: the file (and its directory)
/// created when missing, WAL with `synchronous = NORMAL` (a crash of the
/// process loses nothing; a power loss at most the last transactions,
/// never consistency), a 10 s busy timeout and foreign keys on.
pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, DatabaseError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| DatabaseError::InvalidUrl {
            url: redact_url(url),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    if let Some(dir) = Path::new(options.get_filename()).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| DatabaseError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(options)
}

/// The PostgreSQL options of `url`.
pub fn postgres_options(url: &str) -> Result<PgConnectOptions, DatabaseError> {
    PgConnectOptions::from_str(url).map_err(|source| DatabaseError::InvalidUrl {
        url: redact_url(url),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        let url = "postgres://sextant:hunter2@db:5432/hub";
        assert_eq!(redact_url(url), "postgres://sextant:***@db:5432/hub");
        assert_eq!(
            redact_url("sqlite://.sextant/hub.db"),
            "sqlite://.sextant/hub.db"
        );

        let err = Backend::of("mysql://root:hunter2@db/hub")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("mysql://root:***@db/hub"), "{err}");

        let err = postgres_options("postgres://u:hunter2@db:notaport/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("postgres://u:***@db:notaport/x"), "{err}");
        assert_eq!(redact_url("postgres://u@db:x/y"), "postgres://u@db:x/y");
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://h/d").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://h/d").unwrap(), Backend::Postgres);
        assert!(Backend::of("hub.db").is_err());
    }

    #[test]
    fn sqlite_makes_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/hub.db", dir.path().display());
        let options = sqlite_options(&url).unwrap();
        assert!(dir.path().join("nested").is_dir());
        assert!(options.get_filename().ends_with("nested/hub.db"));
    }
}
