//! Helpers of the delivery and notification tests: the stand-in push service and SMTP server
//! (Python, on 127.0.0.1), events to remind about, and a worker driven by a fixed clock.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use rose_events::calendar::event::{EventDetails, EventStatus, NewEvent, Schedule};
use rose_events::calendar::time::{EventLength, TimeBasis};
use rose_events::calendar::{NewCalendar, Visibility, store};
use rose_events::db::{AnyConnection, DbPool};
use rose_events::delivery::transport::web_push::VapidKey;
use rose_events::delivery::transport::{
    EmailTransport, SmtpSecurity, SmtpSettings, WebPushTransport,
};
use rose_events::delivery::{Clock, FixedClock, Worker, WorkerSettings, queue};
use rose_events::notify::jobs::{NotifyContext, handlers};

/// Returns the Python interpreter with the oracle packages.
pub fn python() -> PathBuf {
    std::env::var_os("ROSE_EVENTS_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    )
}

fn oracle(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(script)
}

/// Starts a helper that prints `PORT <n>` and returns the child and the port.
fn spawn_with_port(mut command: Command) -> anyhow::Result<(Child, u16)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!("cannot start {command:?}; run scripts/test.sh to create .venv")
        })?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(port) = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
    else {
        let _ = child.kill();
        bail!("helper printed {line:?} instead of its port");
    };
    Ok((child, port))
}

/// The stand-in push service.
pub struct PushService {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
}

impl PushService {
    /// Starts it on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let mut command = Command::new(python());
        command.arg(oracle("push_service.py"));
        let (child, port) = spawn_with_port(command)?;
        Ok(PushService {
            base: format!("http://127.0.0.1:{port}"),
            child,
        })
    }

    /// Creates a browser subscription whose endpoint responds with `responses`, then 201.
    pub fn subscription(&self, responses: &[&str]) -> anyhow::Result<serde_json::Value> {
        let reply = ureq::post(&format!("{}/subscriptions", self.base))
            .send_json(serde_json::json!({ "responses": responses }))?;
        Ok(reply.into_json()?)
    }

    /// Returns what the endpoint received: `requests` (each decrypted and VAPID-checked) and
    /// `shown` (messages by topic, as a browser would show them).
    pub fn log(&self, endpoint: &str) -> anyhow::Result<serde_json::Value> {
        let id = endpoint.rsplit('/').next().unwrap_or_default();
        Ok(ureq::get(&format!("{}/log/{id}", self.base))
            .call()?
            .into_json()?)
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scriptable SMTP server.
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    /// Starts it with one scripted step per connection.
    pub fn start(script: &serde_json::Value, auth_fails: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("messages.jsonl");
        let mut command = Command::new(python());
        command
            .arg(oracle("smtp_server.py"))
            .arg(&log)
            .arg(script.to_string());
        if auth_fails {
            command.arg("--auth-fails");
        }
        let (child, port) = spawn_with_port(command)?;
        Ok(SmtpServer {
            port,
            log,
            _dir: dir,
            child,
        })
    }

    /// Returns every message that reached the final dot, in order.
    pub fn messages(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let Ok(text) = std::fs::read_to_string(&self.log) else {
            return Ok(Vec::new());
        };
        text.lines()
            .map(|line| Ok(serde_json::from_str(line)?))
            .collect()
    }

    /// Settings for the email transport.
    pub fn settings(&self, credentials: bool) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            security: SmtpSecurity::None,
            username: credentials.then(|| "events".to_owned()),
            password: credentials.then(|| "wrong".to_owned()),
            from: "Rose Events <events@events.example>".to_owned(),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses an instant from RFC 3339 text.
pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap_or_default()
}

/// Parses a wall time from `YYYY-MM-DDTHH:MM`.
pub fn wall(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap_or_default()
}

/// Builds an event in Europe/Paris, weekly when `rrule` is given.
pub fn event(uid: &str, title: &str, start: &str, rrule: Option<&str>) -> NewEvent {
    NewEvent {
        uid: uid.to_owned(),
        details: EventDetails {
            title: title.to_owned(),
            description: None,
            location: Some("Atelier, 5 rue Haute".to_owned()),
            place: None,
            online_url: None,
            status: EventStatus::Confirmed,
        },
        schedule: Schedule {
            start: wall(start),
            basis: TimeBasis::Zoned(chrono_tz::Europe::Paris),
            length: EventLength {
                days: 0,
                seconds: 7200,
            },
            rrule: rrule.map(str::to_owned),
            rdates: Vec::new(),
            exdates: Vec::new(),
        },
        capacity: None,
        overrides: Vec::new(),
    }
}

/// Creates the calendar `slug` and stores `event` in it; returns the event id.
pub fn store_event(conn: &mut AnyConnection, slug: &str, event: &NewEvent) -> anyhow::Result<i64> {
    let calendar = match store::find_calendar(conn, slug)? {
        Some(calendar) => calendar,
        None => store::insert_calendar(
            conn,
            &NewCalendar {
                slug: slug.to_owned(),
                name: format!("Calendar {slug}"),
                default_zone: chrono_tz::Europe::Paris,
                visibility: Visibility::Public,
            },
        )?,
    };
    Ok(store::insert_event(conn, calendar.id, event)?.id)
}

/// Migrates the test database and opens a pool on it.
pub fn pool(url: &str) -> anyhow::Result<DbPool> {
    let mut conn = rose_events::db::connect(url)?;
    rose_events::db::run_migrations(&mut conn)?;
    Ok(rose_events::db::create_pool(url, 4)?)
}

/// A worker with real transports (either may be left out) and a fixed clock at `now`.
pub struct TestWorker {
    /// The worker.
    pub worker: Worker,
    /// Its clock.
    pub clock: Arc<FixedClock>,
    /// The push transport, when given.
    pub push: Option<Arc<WebPushTransport>>,
    /// The pool.
    pub pool: DbPool,
}

impl TestWorker {
    /// Builds the worker. The VAPID key is created in `key_dir`.
    pub fn new(
        pool: &DbPool,
        key_dir: &std::path::Path,
        smtp: Option<SmtpSettings>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let clock = Arc::new(FixedClock::new(now));
        let key = VapidKey::load_or_generate(key_dir)?;
        // The VAPID token is dated by the real clock: the push service checks its expiry
        // against its own time, not the test's.
        let push = Arc::new(WebPushTransport::new(
            key,
            "mailto:ops@events.example",
            Arc::new(rose_events::delivery::SystemClock),
        )?);
        let email = smtp
            .map(|s| EmailTransport::new(&s))
            .transpose()?
            .map(Arc::new);
        let context = NotifyContext {
            pool: pool.clone(),
            public_url: "https://events.example".to_owned(),
            push: Some(push.clone()),
            email,
        };
        let settings = WorkerSettings {
            batch: 16,
            ..WorkerSettings::default()
        };
        let shared: Arc<dyn Clock> = clock.clone();
        Ok(TestWorker {
            worker: Worker::new(
                pool.clone(),
                handlers(&context, chrono::Duration::days(30)),
                shared,
                settings,
            ),
            clock,
            push: Some(push),
            pool: pool.clone(),
        })
    }

    /// Runs batches, moving the clock to the next pending run-at whenever nothing is due,
    /// until no pending job is left before `until`. Returns the run-at times it jumped to.
    pub async fn drain_until(&self, until: DateTime<Utc>) -> anyhow::Result<Vec<DateTime<Utc>>> {
        let mut jumps = Vec::new();
        for _ in 0..500 {
            if self.worker.run_once().await? > 0 {
                continue;
            }
            let pool = self.pool.clone();
            let next =
                tokio::task::spawn_blocking(move || -> anyhow::Result<Option<DateTime<Utc>>> {
                    let mut conn = pool.get()?;
                    let pending = queue::list(&mut conn, Some(queue::JobState::Pending), 10_000)?;
                    Ok(pending.iter().map(|j| j.run_at.and_utc()).min())
                })
                .await??;
            match next {
                Some(next) if next < until => {
                    let now = self.clock.now();
                    let target = next.max(now);
                    self.clock.set(target);
                    jumps.push(target);
                }
                _ => return Ok(jumps),
            }
        }
        bail!("queue did not drain within 500 rounds")
    }

    /// Returns the worker clock's time.
    pub fn clock_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Loads every job.
    pub fn jobs(&self) -> anyhow::Result<Vec<queue::Job>> {
        let mut conn = self.pool.get()?;
        Ok(queue::list(&mut conn, None, 10_000)?)
    }
}

/// A `rose-events` process on a test database, killed on drop.
pub struct RoseProcess {
    /// `http://127.0.0.1:PORT` for `serve`.
    pub base: String,
    child: Child,
}

impl RoseProcess {
    /// Starts `rose-events <command>` with the database and data directory of `db`, extra
    /// environment variables, and waits until its log shows `ready` (at most 30 s).
    pub fn start(
        command: &str,
        db_url: &str,
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        ready: &'static str,
    ) -> anyhow::Result<Self> {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let mut process = Command::new(env!("CARGO_BIN_EXE_rose-events"));
        process
            .arg(command)
            .env("ROSE_EVENTS_DATABASE_URL", db_url)
            .env("ROSE_EVENTS_DATA_DIR", data_dir)
            .env("ROSE_EVENTS_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROSE_EVENTS_LOG", "info,rose_events::http=warn")
            .env("ROSE_EVENTS_POOL_SIZE", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            process.env(name, value);
        }
        let mut child = process.spawn().context("cannot start rose-events")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    let _ = ready_tx.send(());
                }
                eprintln!("[rose-events] {line}");
            }
        });
        let started = std::time::Instant::now();
        while ready_rx
            .recv_timeout(StdDuration::from_millis(100))
            .is_err()
        {
            if let Some(status) = child.try_wait()? {
                bail!("rose-events {command} exited early with {status}");
            }
            if started.elapsed() > StdDuration::from_secs(30) {
                let _ = child.kill();
                bail!("rose-events {command} did not log {ready:?} within 30 s");
            }
        }
        Ok(RoseProcess {
            base: format!("http://127.0.0.1:{port}"),
            child,
        })
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for RoseProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
