#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

//! Booking throughput through the HTTP API, side by side with pgbench running the equivalent
//! single-statement SQL against the same PostgreSQL server in the same run.
//!
//! Run: `cargo bench --bench booking` (needs `pgbench` and `psql` on the PATH; PostgreSQL from
//! `ROSE_EVENTS_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`). Scratch databases are
//! created and dropped; servers are started on 127.0.0.1 and stopped afterwards. Each phase
//! runs for `PHASE_SECONDS` with `CLIENTS` concurrent clients. The server keeps 16 database
//! connections, so that it and pgbench's 64 fit in PostgreSQL's default of 100 with room for
//! other sessions.
//!
//! Phases: one hot occurrence (every client books the same occurrence), and bookings spread
//! over 1,000 occurrences, each on PostgreSQL and SQLite; pgbench runs
//! `benches/pgbench/{hot,spread}.sql`. A last phase books a 200-seat occurrence to exhaustion
//! and checks that exactly 200 seats were sold, and `verify-ledger` must report no difference.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{Value, json};

const CLIENTS: usize = 64;
const PHASE_SECONDS: u64 = 10;
const SPREAD_OCCURRENCES: usize = 1_000;

fn main() -> anyhow::Result<()> {
    let server = std::env::var("ROSE_EVENTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
    let settings: Vec<Setting> =
        diesel::sql_query("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'max_connections') ORDER BY name")
            .load(&mut admin)?;
    for setting in &settings {
        println!("postgres {} = {}", setting.name, setting.setting);
    }

    let name = format!("rose_bench_booking_{}", std::process::id());
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let result = run_all(&server, &name);
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin)?;
    result
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    setting: String,
}

fn run_all(server: &str, name: &str) -> anyhow::Result<()> {
    let url = format!("{server}/{name}");
    let dir = tempfile::tempdir()?;
    let pg = Server::start(&url, dir.path())?;
    let hot = pg.occurrence("PT1H", None, 1_000_000)?;
    let spread = pg.occurrence("PT1H", Some(SPREAD_OCCURRENCES), 1_000_000)?;

    let pg_hot = load(&pg, &hot, "pg-hot")?;
    let bench_hot = pgbench(server, name, "hot.sql")?;
    let pg_spread = load(&pg, &spread, "pg-spread")?;
    let bench_spread = pgbench(server, name, "spread.sql")?;
    check_seats(&pg, &hot, pg_hot.booked)?;
    let limited = pg.occurrence("PT1H", None, 200)?;
    let exhausted = load_for(&pg, &limited, "pg-limit", Duration::from_secs(3))?;
    check_seats(&pg, &limited, 200)?;
    if exhausted.booked != 200 {
        bail!(
            "{} bookings succeeded on a 200-seat occurrence",
            exhausted.booked
        );
    }
    pg.verify_ledger()?;
    drop(pg);

    let sqlite_url = dir
        .path()
        .join("bench.sqlite3")
        .to_string_lossy()
        .into_owned();
    let lite = Server::start(&sqlite_url, dir.path())?;
    let lite_hot_path = lite.occurrence("PT1H", None, 1_000_000)?;
    let lite_spread_path = lite.occurrence("PT1H", Some(SPREAD_OCCURRENCES), 1_000_000)?;
    let lite_hot = load(&lite, &lite_hot_path, "sqlite-hot")?;
    let lite_spread = load(&lite, &lite_spread_path, "sqlite-spread")?;
    check_seats(&lite, &lite_hot_path, lite_hot.booked)?;
    lite.verify_ledger()?;

    println!();
    println!("| case | rose-events HTTP (bookings/s) | p50 ms | p99 ms | pgbench (tps) | ratio |");
    println!("| --- | --- | --- | --- | --- | --- |");
    report_row("PostgreSQL, 1 hot occurrence", &pg_hot, Some(bench_hot));
    report_row(
        "PostgreSQL, 1,000 occurrences",
        &pg_spread,
        Some(bench_spread),
    );
    report_row("SQLite, 1 hot occurrence", &lite_hot, None);
    report_row("SQLite, 1,000 occurrences", &lite_spread, None);
    Ok(())
}

fn report_row(case: &str, run: &LoadResult, baseline: Option<f64>) {
    let (bench, ratio) = baseline.map_or(("–".to_owned(), "–".to_owned()), |tps| {
        (format!("{tps:.0}"), format!("{:.2}", run.rate / tps))
    });
    println!(
        "| {case} | {:.0} | {:.1} | {:.1} | {bench} | {ratio} |",
        run.rate, run.p50_ms, run.p99_ms
    );
}

/// A `rose-events serve` process on 127.0.0.1, killed on drop.
struct Server {
    base: String,
    token: String,
    url: String,
    data_dir: std::path::PathBuf,
    child: Child,
}

impl Server {
    fn start(url: &str, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let token = cli(url, data_dir, &["token", "create"])?.trim().to_owned();
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rose-events"))
            .arg("serve")
            .env("ROSE_EVENTS_DATABASE_URL", url)
            .env("ROSE_EVENTS_DATA_DIR", data_dir)
            .env("ROSE_EVENTS_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROSE_EVENTS_LOG", "warn")
            .env("ROSE_EVENTS_POOL_SIZE", "16")
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start rose-events serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines.next().context("server exited before listening")??;
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let server = Server {
            base: format!("http://127.0.0.1:{port}"),
            token,
            url: url.to_owned(),
            data_dir: data_dir.to_owned(),
            child,
        };
        let _ = server.send(
            "POST",
            "/api/v1/calendars",
            &json!({"slug": "bench", "name": "Bench", "default_zone": "UTC"}),
        )?;
        Ok(server)
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = ureq::request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .send_json(body.clone());
        let response = match response {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(other) => return Err(other.into()),
        };
        Ok((response.status(), response.into_json()?))
    }

    /// Creates an event and returns the bookings paths of its occurrences: one for a one-off
    /// event, `daily` of them for a daily series.
    fn occurrence(
        &self,
        duration: &str,
        daily: Option<usize>,
        capacity: i64,
    ) -> anyhow::Result<Vec<String>> {
        let mut body = json!({"title": "Bench", "start": "2031-01-01T10:00",
                              "duration": duration, "capacity": capacity});
        if let Some(count) = daily {
            body["rrule"] = json!(format!("FREQ=DAILY;COUNT={count}"));
        }
        let (status, event) = self.send("POST", "/api/v1/calendars/bench/events", &body)?;
        if status != 201 {
            bail!("creating the event failed: {event}");
        }
        let id = event["id"].as_i64().context("event id")?;
        let start = chrono::NaiveDate::from_ymd_opt(2031, 1, 1).context("date")?;
        Ok((0..daily.unwrap_or(1))
            .map(|day| {
                let date = start + chrono::Duration::days(day as i64);
                format!(
                    "/api/v1/events/{id}/occurrences/{}T100000Z/bookings",
                    date.format("%Y%m%d")
                )
            })
            .collect())
    }

    fn verify_ledger(&self) -> anyhow::Result<()> {
        let text = cli(&self.url, &self.data_dir, &["verify-ledger"])?;
        println!("verify-ledger: {}", text.trim());
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(url: &str, data_dir: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_rose-events"))
        .args(args)
        .env("ROSE_EVENTS_DATABASE_URL", url)
        .env("ROSE_EVENTS_DATA_DIR", data_dir)
        .env("ROSE_EVENTS_LOG", "warn")
        .output()?;
    if !output.status.success() {
        bail!(
            "rose-events {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

struct LoadResult {
    booked: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn load(server: &Server, paths: &[String], label: &str) -> anyhow::Result<LoadResult> {
    load_for(server, paths, label, Duration::from_secs(PHASE_SECONDS))
}

/// Books from `CLIENTS` threads for `length`, each request for a new attendee with its own
/// idempotency key, on occurrences picked in turn from `paths`.
fn load_for(
    server: &Server,
    paths: &[String],
    label: &str,
    length: Duration,
) -> anyhow::Result<LoadResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let paths = Arc::new(paths.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (stop, paths) = (Arc::clone(&stop), Arc::clone(&paths));
            let (base, token, label) =
                (server.base.clone(), server.token.clone(), label.to_owned());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .build();
                let mut latencies = Vec::new();
                let mut booked = 0_usize;
                let mut n = 0_usize;
                while !stop.load(Ordering::Relaxed) {
                    let path = &paths[(client * 7919 + n * 104_729) % paths.len()];
                    let attendee = format!("{label}-{client}-{n}");
                    let sent = Instant::now();
                    let response = agent
                        .post(&format!("{base}{path}"))
                        .set("Authorization", &format!("Bearer {token}"))
                        .set("Idempotency-Key", &attendee)
                        .send_json(json!({"attendee": attendee, "waitlist": false}));
                    latencies.push(sent.elapsed());
                    if matches!(&response, Ok(r) if r.status() == 201) {
                        booked += 1;
                    }
                    n += 1;
                }
                (booked, latencies)
            })
        })
        .collect();
    std::thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut booked = 0;
    for worker in workers {
        let (count, mut own) = worker
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))?;
        booked += count;
        latencies.append(&mut own);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let count = f64::from(u32::try_from(latencies.len()).unwrap_or(u32::MAX));
    let quantile = |q: f64| {
        let index = ((count - 1.0) * q).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let result = LoadResult {
        booked,
        rate: count / elapsed,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
    };
    println!(
        "{label}: {} requests, {booked} booked, {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        result.rate,
        result.p50_ms,
        result.p99_ms
    );
    Ok(result)
}

/// Checks that the occurrence's seats taken equal the bookings that answered 201.
fn check_seats(server: &Server, paths: &[String], expected: usize) -> anyhow::Result<()> {
    let (status, body) = get(server, &paths[0])?;
    if status != 200 {
        bail!("reading seats failed: {body}");
    }
    let taken = body["seats_taken"].as_u64().context("seats_taken")? as usize;
    if taken != expected {
        bail!("seats taken {taken}, but {expected} bookings succeeded");
    }
    Ok(())
}

fn get(server: &Server, path: &str) -> anyhow::Result<(u16, Value)> {
    let response = ureq::get(&format!("{}{path}", server.base))
        .set("Authorization", &format!("Bearer {}", server.token))
        .call();
    let response = match response {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(other) => return Err(other.into()),
    };
    Ok((response.status(), response.into_json()?))
}

/// Runs pgbench with one of the committed scripts and returns its transactions per second.
fn pgbench(server: &str, database: &str, script: &str) -> anyhow::Result<f64> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pgbench");
    let host = server.trim_start_matches("postgres://");
    let (user, address) = host
        .split_once('@')
        .context("user in ROSE_EVENTS_TEST_PG")?;
    let (host, port) = address.split_once(':').unwrap_or((address, "5432"));
    let setup = Command::new("psql")
        .args([
            "-q", "-h", host, "-p", port, "-U", user, "-d", database, "-f",
        ])
        .arg(dir.join("setup.sql"))
        .output()?;
    if !setup.status.success() {
        bail!(
            "pgbench setup failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
    }
    let output = Command::new("pgbench")
        .args(["-n", "-h", host, "-p", port, "-U", user])
        .args(["-c", &CLIENTS.to_string(), "-j", "2"])
        .args(["-T", &PHASE_SECONDS.to_string(), "-f"])
        .arg(dir.join(script))
        .arg(database)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let latency = text
        .lines()
        .find(|line| line.starts_with("latency average"))
        .unwrap_or_default();
    println!("pgbench {script}: {tps:.0} tps, {latency}");
    Ok(tps)
}
