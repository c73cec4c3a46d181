//! Embedded migrations, one folder per backend.

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{AnyConnection, Error};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Applied and pending migration versions.
#[derive(Debug, Default, serde::Serialize)]
pub struct MigrationReport {
    /// Versions already applied, oldest first.
    pub applied: Vec<String>,
    /// Versions not yet applied, oldest first.
    pub pending: Vec<String>,
}

/// Applies every pending migration and returns the versions it applied.
pub fn run_migrations(connection: &mut AnyConnection) -> Result<Vec<String>, Error> {
    let applied = match connection {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE).map(versions),
        AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES).map(versions),
    };
    applied.map_err(|e| Error::Migration(e.to_string()))
}

/// Reverts the most recent migration and returns its version.
pub fn revert_last_migration(connection: &mut AnyConnection) -> Result<String, Error> {
    let reverted = match connection {
        AnyConnection::Sqlite(c) => c.revert_last_migration(SQLITE),
        AnyConnection::Postgresql(c) => c.revert_last_migration(POSTGRES),
    };
    reverted
        .map(|v| v.to_string())
        .map_err(|e| Error::Migration(e.to_string()))
}

/// Lists applied and pending migrations.
pub fn migration_status(connection: &mut AnyConnection) -> Result<MigrationReport, Error> {
    let report = match connection {
        AnyConnection::Sqlite(c) => report(c, SQLITE),
        AnyConnection::Postgresql(c) => report(c, POSTGRES),
    };
    report.map_err(|e| Error::Migration(e.to_string()))
}

type MigrationResult<T> = diesel::migration::Result<T>;

fn report<C>(connection: &mut C, source: EmbeddedMigrations) -> MigrationResult<MigrationReport>
where
    C: MigrationHarness<C::Backend> + diesel::Connection,
{
    let applied: Vec<String> = connection
        .applied_migrations()?
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    let pending = connection
        .pending_migrations(source)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    Ok(MigrationReport {
        applied: sorted(applied),
        pending,
    })
}

fn versions(list: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    list.into_iter().map(|v| v.to_string()).collect()
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}
