//! The few things that differ between SQLite and PostgreSQL.

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;

use super::AnyConnection;

/// Which database a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `postgres://` and `postgresql://` select PostgreSQL; everything else is a SQLite path.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The backend of an open connection.
    pub fn of(connection: &AnyConnection) -> Backend {
        match connection {
            AnyConnection::Sqlite(_) => Backend::Sqlite,
            AnyConnection::Postgresql(_) => Backend::Postgres,
        }
    }
}

/// Runs `work` in a write transaction and commits it when `work` returns `Ok`.
///
/// SQLite starts with `BEGIN IMMEDIATE`: a deferred transaction that reads first and writes
/// later can deadlock on the lock upgrade, and `busy_timeout` does not help there.
pub fn write_transaction<T, E>(
    connection: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    // Inside an open transaction the work joins it: callers compose store functions that
    // each make their own writes atomic.
    let depth = <AnyConnection as Connection>::TransactionManager::transaction_manager_status_mut(
        connection,
    )
    .transaction_depth()?;
    if depth.is_some() {
        return work(connection);
    }
    match connection {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
        }
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?,
    }
    match work(connection) {
        Ok(value) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(connection)?;
            Ok(value)
        }
        Err(error) => {
            <AnyConnection as Connection>::TransactionManager::rollback_transaction(connection)?;
            Err(error)
        }
    }
}
