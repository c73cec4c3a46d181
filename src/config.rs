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

    /// Delivery settings: workers, Web Push and SMTP.
    #[command(flatten)]
    pub delivery: DeliveryConfig,
}

/// Settings of the delivery queue and its transports.
#[derive(Clone, Debug, clap::Args)]
pub struct DeliveryConfig {
    /// Worker loops that `serve` and `work` run; 0 makes `serve` run none. SQLite always gets
    /// at most one.
    #[arg(long, env = "ROSE_EVENTS_WORKERS", default_value_t = 1, global = true)]
    pub workers: u32,

    /// Seconds a claimed job stays leased to its worker. A crashed worker's jobs become
    /// claimable again after this. Keep it above the longest send (45 s for email, 20 s for
    /// Web Push), or a slow send can be taken over and sent twice.
    #[arg(
        long,
        env = "ROSE_EVENTS_JOB_LEASE_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub job_lease_seconds: u32,

    /// Days done and dead jobs are kept before the daily cleanup deletes them.
    #[arg(
        long,
        env = "ROSE_EVENTS_JOB_RETENTION_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub job_retention_days: u32,

    /// Hours a domain may keep failing every ActivityPub delivery before it is marked dead:
    /// its deliveries are then parked and one is tried as a probe every probe interval.
    #[arg(
        long,
        env = "ROSE_EVENTS_DOMAIN_DEAD_AFTER_HOURS",
        default_value_t = 72,
        global = true
    )]
    pub domain_dead_after_hours: u32,

    /// Minutes between two probes of a dead domain.
    #[arg(
        long,
        env = "ROSE_EVENTS_DOMAIN_PROBE_MINUTES",
        default_value_t = 360,
        global = true
    )]
    pub domain_probe_minutes: u32,

    /// VAPID subject (`mailto:` address or `https://` URL) that push services can contact.
    /// Web Push is off until it is set.
    #[arg(long, env = "ROSE_EVENTS_VAPID_SUBJECT", global = true)]
    pub vapid_subject: Option<String>,

    /// Accept push endpoints on http://127.0.0.1 and http://localhost: for tests with a local
    /// push service only.
    #[arg(long, env = "ROSE_EVENTS_ALLOW_LOOPBACK_PUSH", global = true)]
    pub allow_loopback_push: bool,

    /// SMTP relay host. Email is off until it and the sender address are set.
    #[arg(long, env = "ROSE_EVENTS_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,

    /// SMTP relay port.
    #[arg(
        long,
        env = "ROSE_EVENTS_SMTP_PORT",
        default_value_t = 587,
        global = true
    )]
    pub smtp_port: u16,

    /// SMTP connection protection: none, starttls or tls.
    #[arg(
        long,
        env = "ROSE_EVENTS_SMTP_SECURITY",
        value_enum,
        default_value = "starttls",
        global = true
    )]
    pub smtp_security: crate::delivery::transport::SmtpSecurity,

    /// SMTP login name.
    #[arg(long, env = "ROSE_EVENTS_SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,

    /// SMTP password; prefer the environment variable to the flag.
    #[arg(
        long,
        env = "ROSE_EVENTS_SMTP_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub smtp_password: Option<String>,

    /// Sender address of emails, e.g. `Rose Events <events@example.org>`.
    #[arg(long, env = "ROSE_EVENTS_SMTP_FROM", global = true)]
    pub smtp_from: Option<String>,
}

impl DeliveryConfig {
    /// Backoff, dead threshold and probe cadence of delivery domains.
    pub fn domain_policy(&self) -> crate::delivery::domains::DomainPolicy {
        crate::delivery::domains::DomainPolicy {
            dead_after: chrono::Duration::hours(i64::from(self.domain_dead_after_hours)),
            probe_interval: chrono::Duration::minutes(i64::from(self.domain_probe_minutes)),
            ..crate::delivery::domains::DomainPolicy::default()
        }
    }

    /// Checks the delivery settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers > 64 {
            return Err(format!(
                "workers {} is out of range: use 0 to 64",
                self.workers
            ));
        }
        if !(1..=86_400).contains(&self.job_lease_seconds) {
            return Err(format!(
                "job lease {} s is out of range: use 1 to 86400",
                self.job_lease_seconds
            ));
        }
        if !(1..=3650).contains(&self.job_retention_days) {
            return Err(format!(
                "job retention {} days is out of range: use 1 to 3650",
                self.job_retention_days
            ));
        }
        if !(1..=8760).contains(&self.domain_dead_after_hours) {
            return Err(format!(
                "domain dead threshold {} hours is out of range: use 1 to 8760",
                self.domain_dead_after_hours
            ));
        }
        if !(1..=10_080).contains(&self.domain_probe_minutes) {
            return Err(format!(
                "domain probe interval {} minutes is out of range: use 1 to 10080",
                self.domain_probe_minutes
            ));
        }
        if let Some(subject) = &self.vapid_subject {
            crate::delivery::transport::web_push::check_subject(subject)
                .map_err(|e| e.to_string())?;
        }
        if self.smtp_host.is_some() != self.smtp_from.is_some() {
            return Err("set both the SMTP host and the sender address, or neither".to_owned());
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err("set both the SMTP username and password, or neither".to_owned());
        }
        Ok(())
    }
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
        self.delivery.validate()?;
        let public = self.public_url();
        if !(public.starts_with("http://") || public.starts_with("https://")) {
            return Err(format!(
                "public URL {public:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }
}
