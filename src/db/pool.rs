//! Connections and the r2d2 pool.

use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::{PgConnection, SqliteConnection};

use super::{Backend, Error};

/// A connection to either backend. Business code takes `&mut AnyConnection`.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// PostgreSQL, for production and every multi-process deployment.
    Postgresql(PgConnection),
    /// SQLite, the embedded default.
    Sqlite(SqliteConnection),
}

/// A pool of [`AnyConnection`]s.
pub type DbPool = r2d2::Pool<Manager>;

/// Opens one connection, picking the backend from the URL scheme.
///
/// `AnyConnection::establish` would try both backends and drop the real error, so the scheme
/// decides here and the driver's error is kept.
pub fn connect(url: &str) -> Result<AnyConnection, Error> {
    let connection = match Backend::of_url(url) {
        Backend::Postgres => PgConnection::establish(url).map(AnyConnection::Postgresql),
        Backend::Sqlite => SqliteConnection::establish(sqlite_path(url)).map(AnyConnection::Sqlite),
    };
    let mut connection = connection.map_err(|source| Error::Connect {
        url: redact_password(url),
        source,
    })?;
    configure(&mut connection)?;
    Ok(connection)
}

/// Creates the pool; for SQLite also creates the file's folder.
pub fn create_pool(url: &str, max_size: u32) -> Result<DbPool, Error> {
    if Backend::of_url(url) == Backend::Sqlite {
        create_parent_dir(sqlite_path(url))?;
    }
    let manager = Manager {
        url: url.to_owned(),
    };
    Ok(r2d2::Pool::builder()
        .max_size(max_size)
        .connection_timeout(std::time::Duration::from_secs(30))
        .build(manager)?)
}

/// Builds pool connections through [`connect`].
#[derive(Debug)]
pub struct Manager {
    url: String,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = Error;

    fn connect(&self) -> Result<AnyConnection, Error> {
        connect(&self.url)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Error> {
        diesel::sql_query("SELECT 1").execute(conn)?;
        Ok(())
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

/// Session settings: WAL, a busy timeout and foreign keys for SQLite; UTC for PostgreSQL so
/// that nothing the server writes depends on the database's own zone.
fn configure(connection: &mut AnyConnection) -> Result<(), Error> {
    let statements: &[&str] = match connection {
        AnyConnection::Sqlite(_) => &[
            // The busy timeout comes first: switching to WAL needs a lock, and without the
            // timeout a connection opened while another one writes fails at once.
            "PRAGMA busy_timeout = 10000",
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = ON",
        ],
        AnyConnection::Postgresql(_) => &["SET TIME ZONE 'UTC'"],
    };
    for statement in statements {
        diesel::sql_query(*statement).execute(connection)?;
    }
    Ok(())
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

fn create_parent_dir(path: &str) -> Result<(), Error> {
    let Some(parent) = std::path::Path::new(path).parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() || path == ":memory:" {
        return Ok(());
    }
    std::fs::create_dir_all(parent).map_err(|source| Error::DataDir {
        path: parent.display().to_string(),
        source,
    })
}

/// Removes the password from a `postgres://user:password@host/db` URL for messages and logs.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
