#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

//! Agenda latency over 10,000 events (a third of them recurring) for a one-month window, on
//! SQLite and PostgreSQL. Prints median and p99 of repeated queries.
//!
//! Run: `cargo bench --bench agenda` (PostgreSQL from `ROSE_EVENTS_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`; a scratch database is created and dropped).

use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use diesel::{Connection, PgConnection, RunQueryDsl};
use rose_events::calendar::agenda::{AgendaQuery, agenda};
use rose_events::calendar::event::{EventDetails, NewEvent, Schedule};
use rose_events::calendar::time::{EventLength, TimeBasis, Window};
use rose_events::calendar::{NewCalendar, Visibility, store};
use rose_events::db::{self, AnyConnection, write_transaction};

const EVENTS: usize = 10_000;
const QUERIES: usize = 200;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite_url = dir
        .path()
        .join("bench.sqlite3")
        .to_string_lossy()
        .into_owned();
    run("sqlite", &sqlite_url)?;

    let server = std::env::var("ROSE_EVENTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!("rose_bench_{}", std::process::id());
    let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let result = run("postgres", &format!("{server}/{name}"));
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin)?;
    result
}

fn run(label: &str, url: &str) -> anyhow::Result<()> {
    let mut conn = db::connect(url)?;
    db::run_migrations(&mut conn)?;
    let calendar_id = seed(&mut conn)?;
    let window = Window {
        from: Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .unwrap_or_default(),
        to: Utc
            .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
            .single()
            .unwrap_or_default(),
    };
    let query = AgendaQuery {
        calendar_ids: &[calendar_id],
        window,
        viewer: chrono_tz::UTC,
        include_cancelled: false,
        max_occurrences: 100_000,
    };
    let listed = agenda(&mut conn, &query)?.items.len();
    let mut latencies = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let started = Instant::now();
        std::hint::black_box(agenda(&mut conn, &query)?);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let median = latencies[QUERIES / 2];
    let p99 = latencies[QUERIES * 99 / 100];
    println!(
        "agenda/{label}: {EVENTS} events, one-month window, {listed} occurrences: \
         median {} ms, p99 {} ms over {QUERIES} queries",
        millis(median),
        millis(p99)
    );
    Ok(())
}

fn millis(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// Stores 10,000 events spread over 2026 in zones around the world; every third one repeats
/// weekly, daily or monthly.
fn seed(conn: &mut AnyConnection) -> anyhow::Result<i64> {
    let calendar = store::insert_calendar(
        conn,
        &NewCalendar {
            slug: "bench".to_owned(),
            name: "Bench".to_owned(),
            default_zone: chrono_tz::UTC,
            visibility: Visibility::Public,
        },
    )?;
    let zones = [
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Asia::Tokyo,
        chrono_tz::Australia::Sydney,
    ];
    let year_start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    write_transaction(conn, |conn| {
        for i in 0..EVENTS {
            let day = year_start + chrono::Duration::days((i * 7 % 365) as i64);
            let start = day
                .and_hms_opt(8 + (i % 12) as u32, 0, 0)
                .unwrap_or_default();
            let rrule = match i % 9 {
                0 => Some("FREQ=WEEKLY".to_owned()),
                3 => Some("FREQ=DAILY;COUNT=30".to_owned()),
                6 => Some("FREQ=MONTHLY;BYDAY=2TU".to_owned()),
                _ => None,
            };
            let event = NewEvent {
                uid: format!("bench-{i}@example.org"),
                details: EventDetails {
                    title: format!("Event {i}"),
                    ..EventDetails::default()
                },
                schedule: Schedule {
                    start,
                    basis: TimeBasis::Zoned(zones[i % zones.len()]),
                    length: EventLength {
                        days: 0,
                        seconds: 5_400,
                    },
                    rrule,
                    rdates: Vec::new(),
                    exdates: Vec::new(),
                },
                capacity: None,
                overrides: Vec::new(),
            };
            store::insert_event(conn, calendar.id, &event)?;
        }
        Ok::<_, rose_events::calendar::Error>(())
    })?;
    Ok(calendar.id)
}
