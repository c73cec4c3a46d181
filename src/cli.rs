//! The `rose-events` subcommands.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::db;

/// The events server of rose-ash.
#[derive(Debug, Parser)]
#[command(name = "rose-events", version, about)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub config: Config,

    /// What to do; `serve` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations and run the HTTP server.
    Serve,
    /// Run, revert or list database migrations.
    Migrate {
        /// What to do with migrations.
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Manage write tokens.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Manage calendars.
    Calendar {
        /// What to do with calendars.
        #[command(subcommand)]
        action: CalendarAction,
    },
    /// Import an iCalendar file into a calendar (created when missing); re-imports update
    /// events by UID.
    Import {
        /// The .ics file.
        file: PathBuf,
        /// Slug of the target calendar.
        #[arg(long)]
        calendar: String,
    },
    /// Write a calendar as iCalendar to standard output.
    Export {
        /// Slug of the calendar.
        #[arg(long)]
        calendar: String,
    },
    /// Expand recurrence test cases (JSON lines) and write one result line per case.
    Expand {
        /// Input file; standard input when left out.
        file: Option<PathBuf>,
    },
    /// Manage peers: other servers and how far their events are trusted.
    Peer {
        /// What to do with peers.
        #[command(subcommand)]
        action: PeerAction,
    },
    /// List the delivery health of remote domains that ever failed, failing ones first:
    /// domain, state, consecutive failures, failing since, next attempt or probe, last error.
    Domains,
    /// Load and validate the settings, then print them without secrets.
    CheckConfig,
    /// Rebuild seats taken and booking states from the booking ledger and report every
    /// difference from the stored projection; exits with failure when there is one.
    VerifyLedger,
    /// Run delivery workers only, without the HTTP server, until interrupted.
    Work,
    /// Inspect the delivery queue and retry dead jobs.
    Jobs {
        /// What to do with jobs.
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Manage the VAPID key of Web Push.
    Vapid {
        /// What to do with the key.
        #[command(subcommand)]
        action: VapidAction,
    },
}

/// Queue subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// List jobs, newest first, with counts per state.
    List {
        /// Only jobs in this state: pending, running, done or dead.
        #[arg(long)]
        state: Option<String>,
        /// Most jobs listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print one job with its payload and last error as JSON.
    Show {
        /// Job id.
        id: i64,
    },
    /// Make a dead job pending again, with its attempts reset.
    Retry {
        /// Job id.
        id: i64,
    },
}

/// VAPID subcommands.
#[derive(Debug, Subcommand)]
pub enum VapidAction {
    /// Create the VAPID key in the data directory and print its public key.
    Generate {
        /// Replace an existing key; browsers subscribed with the old key must subscribe again.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key, creating the key first if there is none.
    PublicKey,
}

/// Peer subcommands.
#[derive(Debug, Subcommand)]
pub enum PeerAction {
    /// Record a peer, find its application actor (NodeInfo, then WebFinger) and follow it.
    Add {
        /// Host name, with the port when it is not the default.
        domain: String,
        /// Trust it at once instead of leaving it pending.
        #[arg(long)]
        trust: bool,
    },
    /// Merge this peer's events into the agenda.
    Trust {
        /// Host name, with the port when it is not the default.
        domain: String,
    },
    /// Reject every request from this peer.
    Block {
        /// Host name, with the port when it is not the default.
        domain: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List peers: domain, state, application actor, state of our follow of it.
    List,
}

/// Migration subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration (the default).
    Run,
    /// Revert the most recent migration.
    Revert,
    /// List applied and pending migrations.
    Status,
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a write token and print it once.
    Create {
        /// A note saying who or what uses the token.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

/// Calendar subcommands.
#[derive(Debug, Subcommand)]
pub enum CalendarAction {
    /// Create a calendar.
    Create {
        /// URL name: a-z, 0-9, '-' and '_'.
        slug: String,
        /// Display name; the slug when left out.
        #[arg(long)]
        name: Option<String>,
        /// Default IANA zone for new events.
        #[arg(long, default_value = "UTC")]
        zone: String,
        /// Leave it out of listings.
        #[arg(long)]
        unlisted: bool,
    },
    /// List calendars, unlisted ones included.
    List,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    config.validate().map_err(anyhow::Error::msg)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::server::serve(&config),
        Command::Migrate { action } => migrate(&config, &action.unwrap_or(MigrateAction::Run)),
        Command::Token { action } => token(&config, action),
        Command::Calendar { action } => calendar(&config, action),
        Command::Import { file, calendar } => import(&config, &file, &calendar),
        Command::Export { calendar } => export(&config, &calendar),
        Command::Expand { file } => expand(file.as_deref()),
        Command::Peer { action } => peer(&config, action),
        Command::Domains => domains(&config),
        Command::CheckConfig => check_config(&config),
        Command::VerifyLedger => verify_ledger(&config),
        Command::Work => work(&config),
        Command::Jobs { action } => jobs(&config, action),
        Command::Vapid { action } => vapid(&config, &action),
    }
}

/// Opens a connection and applies pending migrations.
pub fn open_database(config: &Config) -> anyhow::Result<db::AnyConnection> {
    let url = config.database_url();
    if db::Backend::of_url(&url) == db::Backend::Sqlite {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    let mut conn = db::connect(&url)?;
    db::run_migrations(&mut conn)?;
    Ok(conn)
}

fn migrate(config: &Config, action: &MigrateAction) -> anyhow::Result<()> {
    let mut conn = db::connect(&config.database_url())?;
    let mut out = std::io::stdout().lock();
    match action {
        MigrateAction::Run => {
            let applied = db::run_migrations(&mut conn)?;
            if applied.is_empty() {
                writeln!(out, "no pending migrations")?;
            }
            for version in applied {
                writeln!(out, "applied {version}")?;
            }
        }
        MigrateAction::Revert => {
            let version = db::revert_last_migration(&mut conn)?;
            writeln!(out, "reverted {version}")?;
        }
        MigrateAction::Status => {
            let report = db::migration_status(&mut conn)?;
            for version in report.applied {
                writeln!(out, "applied  {version}")?;
            }
            for version in report.pending {
                writeln!(out, "pending  {version}")?;
            }
        }
    }
    Ok(())
}

fn token(config: &Config, action: TokenAction) -> anyhow::Result<()> {
    let mut conn = open_database(config)?;
    match action {
        TokenAction::Create { label } => {
            let token = crate::auth::create_token(&mut conn, &label)?;
            writeln!(std::io::stdout(), "{token}")?;
        }
    }
    Ok(())
}

fn calendar(config: &Config, action: CalendarAction) -> anyhow::Result<()> {
    use crate::calendar::{NewCalendar, Visibility, store, validate};
    let mut conn = open_database(config)?;
    let mut out = std::io::stdout().lock();
    match action {
        CalendarAction::Create {
            slug,
            name,
            zone,
            unlisted,
        } => {
            let Ok(default_zone) = zone.parse() else {
                bail!("zone {zone:?} is not an IANA time zone name");
            };
            let new = NewCalendar {
                name: name.unwrap_or_else(|| slug.clone()),
                slug,
                default_zone,
                visibility: if unlisted {
                    Visibility::Unlisted
                } else {
                    Visibility::Public
                },
            };
            validate::check_calendar(&new)?;
            let stored = store::insert_calendar(&mut conn, &new)?;
            writeln!(out, "created calendar {}", stored.slug)?;
        }
        CalendarAction::List => {
            for c in store::list_calendars(&mut conn, true)? {
                let visibility = c.visibility.as_str();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    c.slug, visibility, c.default_zone, c.name
                )?;
            }
        }
    }
    Ok(())
}

fn import(config: &Config, file: &std::path::Path, slug: &str) -> anyhow::Result<()> {
    let bytes = read_limited(file, crate::calendar::ics::MAX_FILE_BYTES)?;
    let mut conn = open_database(config)?;
    let report = crate::calendar::import::import_ics(&mut conn, slug, &bytes)
        .with_context(|| format!("cannot import {}", file.display()))?;
    writeln!(
        std::io::stdout(),
        "imported {} into {slug}: {} created, {} updated",
        file.display(),
        report.created,
        report.updated
    )?;
    Ok(())
}

fn export(config: &Config, slug: &str) -> anyhow::Result<()> {
    let mut conn = open_database(config)?;
    let public_url = config.public_url();
    let text = crate::calendar::import::export_ics(&mut conn, slug, &public_url)?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn expand(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::BufRead;
    let input: Box<dyn BufRead> = match file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let result = crate::calendar::recurrence::expand_corpus_line(&line);
        writeln!(out, "{result}")?;
    }
    out.flush()?;
    Ok(())
}

fn peer(config: &Config, action: PeerAction) -> anyhow::Result<()> {
    use crate::federation::{discovery, peers, peers::PeerState};
    let mut conn = open_database(config)?;
    let settings = config.federation();
    let mut out = std::io::stdout().lock();
    match action {
        PeerAction::Add { domain, trust } => {
            let domain = peers::normalise_domain(&domain)?;
            let state = if trust {
                PeerState::Trusted
            } else {
                PeerState::Pending
            };
            peers::set_state(&mut conn, &domain, state, None)?;
            let signer = discovery::instance_signer(&mut conn, &settings)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let actor = runtime
                .block_on(discovery::resolve_application_actor(
                    &settings, &signer, &domain,
                ))
                .with_context(|| {
                    format!(
                        "peer {domain} is recorded as {} but not followed",
                        state.as_str()
                    )
                })?;
            discovery::record_and_follow(&mut conn, &settings, &domain, &actor)?;
            writeln!(
                out,
                "added {domain} ({}), following {}",
                state.as_str(),
                actor.actor_id
            )?;
        }
        PeerAction::Trust { domain } => {
            let domain = peers::normalise_domain(&domain)?;
            peers::set_state(&mut conn, &domain, PeerState::Trusted, None)?;
            writeln!(out, "trusted {domain}")?;
        }
        PeerAction::Block { domain, reason } => {
            let domain = peers::normalise_domain(&domain)?;
            peers::set_state(&mut conn, &domain, PeerState::Blocked, reason.as_deref())?;
            writeln!(out, "blocked {domain}")?;
        }
        PeerAction::List => {
            for peer in peers::list(&mut conn)? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    peer.domain,
                    peer.state.as_str(),
                    peer.actor_id.as_deref().unwrap_or("-"),
                    peer.follow_state.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(())
}

fn domains(config: &Config) -> anyhow::Result<()> {
    let mut conn = open_database(config)?;
    let mut out = std::io::stdout().lock();
    let instant = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
    };
    for health in crate::delivery::domains::list(&mut conn)? {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            health.domain,
            health.state.as_str(),
            health.consecutive_failures,
            instant(health.first_failure_at),
            instant(health.next_attempt_at),
            health.last_error.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

fn check_config(config: &Config) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "database_url = {}",
        db::redact_password(&config.database_url())
    )?;
    writeln!(out, "data_dir = {}", config.data_dir.display())?;
    writeln!(out, "listen = {}", config.listen)?;
    writeln!(out, "public_url = {}", config.public_url())?;
    writeln!(out, "pool_size = {}", config.pool_size)?;
    writeln!(out, "federation_policy = {:?}", config.federation_policy)?;
    let delivery = &config.delivery;
    writeln!(out, "workers = {}", delivery.workers)?;
    writeln!(out, "job_lease_seconds = {}", delivery.job_lease_seconds)?;
    writeln!(out, "job_retention_days = {}", delivery.job_retention_days)?;
    writeln!(
        out,
        "domain_dead_after_hours = {}",
        delivery.domain_dead_after_hours
    )?;
    writeln!(
        out,
        "domain_probe_minutes = {}",
        delivery.domain_probe_minutes
    )?;
    writeln!(
        out,
        "vapid_subject = {}",
        delivery.vapid_subject.as_deref().unwrap_or("(off)")
    )?;
    writeln!(
        out,
        "smtp_host = {}",
        delivery.smtp_host.as_deref().unwrap_or("(off)")
    )?;
    writeln!(out, "smtp_port = {}", delivery.smtp_port)?;
    writeln!(out, "smtp_security = {:?}", delivery.smtp_security)?;
    writeln!(
        out,
        "smtp_username = {}",
        delivery.smtp_username.as_deref().unwrap_or("")
    )?;
    writeln!(
        out,
        "smtp_from = {}",
        delivery.smtp_from.as_deref().unwrap_or("")
    )?;
    Ok(())
}

/// Reads a whole file, failing once it passes `limit` bytes instead of filling memory.
fn read_limited(path: &std::path::Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;

    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > limit {
        anyhow::bail!(
            "{} is larger than {limit} bytes, the largest .ics file rose-events imports",
            path.display()
        );
    }
    Ok(bytes)
}

fn verify_ledger(config: &Config) -> anyhow::Result<()> {
    let mut conn = open_database(config)?;
    let report = crate::booking::ledger::verify(&mut conn)?;
    let mut out = std::io::stdout().lock();
    for difference in &report.differences {
        writeln!(out, "{difference}")?;
    }
    writeln!(
        out,
        "{} ledger entries, {} bookings, {} occurrences: {} differences",
        report.entries,
        report.bookings,
        report.occurrences,
        report.differences.len()
    )?;
    if !report.differences.is_empty() {
        bail!("the ledger and the projection differ");
    }
    Ok(())
}

fn jobs(config: &Config, action: JobsAction) -> anyhow::Result<()> {
    use crate::delivery::{JobState, queue};
    let mut conn = open_database(config)?;
    let mut out = std::io::stdout().lock();
    match action {
        JobsAction::List { state, limit } => {
            let state = match state.as_deref() {
                None => None,
                Some(text) => Some(JobState::parse(text).with_context(|| {
                    format!("job state {text:?} is invalid: use pending, running, done or dead")
                })?),
            };
            let [pending, running, done, dead] = queue::count_by_state(&mut conn)?;
            writeln!(
                out,
                "pending {pending}, running {running}, done {done}, dead {dead}"
            )?;
            for job in queue::list(&mut conn, state, limit)? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}/{}\t{}\t{}",
                    job.id,
                    job.state,
                    job.kind,
                    job.run_at.and_utc().to_rfc3339(),
                    job.attempts,
                    job.max_attempts,
                    job.dedup_key,
                    job.last_error.unwrap_or_default()
                )?;
            }
        }
        JobsAction::Show { id } => {
            let job = queue::find(&mut conn, id)?.with_context(|| format!("job {id} not found"))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&job)?)?;
        }
        JobsAction::Retry { id } => {
            let job = queue::retry_dead(&mut conn, id, chrono::Utc::now())?;
            writeln!(out, "job {} is pending again", job.id)?;
        }
    }
    Ok(())
}

fn vapid(config: &Config, action: &VapidAction) -> anyhow::Result<()> {
    use crate::delivery::transport::web_push::{self, VAPID_KEY_FILE, VapidKey};
    let path = config.data_dir.join(VAPID_KEY_FILE);
    let key = match action {
        VapidAction::Generate { force } => {
            web_push::generate_key_file(&path, *force)?;
            VapidKey::load(&path)?
        }
        VapidAction::PublicKey => VapidKey::load_or_generate(&config.data_dir)?,
    };
    writeln!(std::io::stdout(), "{}", key.public_key())?;
    Ok(())
}

/// Runs the `work` command: applies migrations, then runs worker loops until SIGINT or SIGTERM.
fn work(config: &Config) -> anyhow::Result<()> {
    drop(crate::cli::open_database(config)?);
    let pool = crate::db::create_pool(&config.database_url(), config.pool_size)?;
    let clock: std::sync::Arc<dyn crate::delivery::Clock> =
        std::sync::Arc::new(crate::delivery::SystemClock);
    let mut delivery = crate::notify::service::build(config, pool, &clock)?;
    delivery.workers = delivery.workers.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let loops = tokio::spawn(crate::notify::service::run_workers(
            delivery, clock, shutdown,
        ));
        wait_for_signal().await;
        tracing::info!("stopping workers after their current batch");
        let _ = stop.send(true);
        loops.await??;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
