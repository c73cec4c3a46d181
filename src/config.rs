//! Server settings, read once from flags and environment variables and validated together.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings shared by `serve` and the other subcommands.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Database URL: a SQLite file path, or `postgres://user@host:port/db` for PostgreSQL.
    /// Defaults to `rose-events.sqlite3` inside the data directory.
    #[arg(long, env = "ROSE_EVENTS_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Folder for the SQLite database and keys.
    #[arg(
        long,
        env = "ROSE_EVENTS_DATA_DIR",
        default_value = "data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Address and port the HTTP server listens on.
    #[arg(
        long,
        env = "ROSE_EVENTS_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Public base URL, used in ActivityPub ids and feed links. Defaults to `http://` plus the
    /// listen address.
    #[arg(long, env = "ROSE_EVENTS_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Database connections kept in the pool.
    #[arg(
        long,
        env = "ROSE_EVENTS_POOL_SIZE",
        default_value_t = 8,
        global = true
    )]
    pub pool_size: u32,

    /// Which peers' events are merged: `allow-list` (only peers marked trusted) or `open`
    /// (every peer that is not blocked).
    #[arg(
        long,
        env = "ROSE_EVENTS_FEDERATION_POLICY",
        value_enum,
        default_value = "allow-list",
        global = true
    )]
    pub federation_policy: crate::federation::TrustPolicy,

    /// Let outbound fetches reach localhost and 127.0.0.1 on an explicit port. For tests on
    /// one machine only: it opens the server to requests against its own host.
    #[arg(
        long,
        env = "ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST",
        hide = true,
        global = true
    )]
    pub federation_allow_localhost: bool,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self
                .data_dir
                .join("rose-events.sqlite3")
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// The public base URL in effect, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Federation settings derived from these.
    pub fn federation(&self) -> crate::federation::Settings {
        crate::federation::Settings {
            public_url: self.public_url(),
            policy: self.federation_policy,
            allow_localhost: self.federation_allow_localhost,
            clock: crate::federation::Clock::System,
        }
    }

    /// Checks the settings that flags alone cannot check.
    pub fn validate(&self) -> Result<(), String> {
        if self.pool_size == 0 || self.pool_size > 256 {
            return Err(format!(
                "pool size {} is out of range: use 1 to 256",
                self.pool_size
            ));
        }
        let public = self.public_url();
        if !(public.starts_with("http://") || public.starts_with("https://")) {
            return Err(format!(
                "public URL {public:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }
}
