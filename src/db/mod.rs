//! Storage: one connection type over SQLite and PostgreSQL, the pool, migrations and the few
//! places where the two backends differ.
//!
//! The backend is chosen by the database URL: `postgres://` or `postgresql://` selects
//! PostgreSQL, anything else is a SQLite file path (optionally prefixed with `sqlite://`).

mod backend;
mod migrate;
mod pool;
/// Tables as diesel sees them.
#[rustfmt::skip]
#[expect(missing_docs, reason = "the table! macro generates undocumented items")]
pub mod schema;

pub use backend::{Backend, write_transaction};
pub use migrate::{MigrationReport, migration_status, revert_last_migration, run_migrations};
pub use pool::{AnyConnection, DbPool, connect, create_pool, redact_password};

/// Storage errors, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connection could not be opened.
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        /// The URL with any password removed.
        url: String,
        /// What the driver said.
        #[source]
        source: diesel::ConnectionError,
    },
    /// The pool could not hand out a connection in time.
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Running or reverting migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The SQLite data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
