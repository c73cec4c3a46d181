#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! The booking function against real databases: concurrency, the ledger's guards and
//! `verify`, on SQLite and PostgreSQL.

mod common;

use std::sync::{Arc, Barrier};

use chrono::{DateTime, NaiveDateTime, Utc};
use common::{Backend, TestDb};
use diesel::RunQueryDsl;
use rose_events::booking::apply::{Answer, apply};
use rose_events::booking::{
    BookRequest, BookingState, Command, OccurrenceKey, Outcome, Verdict, ledger, store,
};
use rose_events::calendar::event::{EventDetails, NewEvent, Schedule};
use rose_events::calendar::time::{EventLength, TimeBasis};
use rose_events::calendar::{NewCalendar, Visibility, store as calendar_store};
use serde_json::Value;

fn wall(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
}

/// Creates a one-off UTC event (far in the future, one hour long) and returns its occurrence.
fn event(db: &TestDb, start: &str, capacity: Option<i32>) -> anyhow::Result<OccurrenceKey> {
    let mut conn = db.connect()?;
    let calendar = match calendar_store::find_calendar(&mut conn, "club")? {
        Some(found) => found,
        None => calendar_store::insert_calendar(
            &mut conn,
            &NewCalendar {
                slug: "club".to_owned(),
                name: "Club".to_owned(),
                default_zone: chrono_tz::UTC,
                visibility: Visibility::Public,
            },
        )?,
    };
    let new = NewEvent {
        uid: format!("{}@test", uuid::Uuid::new_v4()),
        details: EventDetails {
            title: "Workshop".to_owned(),
            ..EventDetails::default()
        },
        schedule: Schedule {
            start: wall(start),
            basis: TimeBasis::Utc,
            length: EventLength {
                days: 0,
                seconds: 3600,
            },
            rrule: None,
            rdates: vec![],
            exdates: vec![],
        },
        capacity,
        overrides: vec![],
    };
    let stored = calendar_store::insert_event(&mut conn, calendar.id, &new)?;
    Ok(OccurrenceKey {
        event_id: stored.id,
        recurrence_id: wall(start).and_utc(),
    })
}

fn book_command(attendee: &str, seats: i64) -> Command {
    Command::Book(BookRequest {
        attendee: attendee.to_owned(),
        seats,
        hold_seconds: None,
        waitlist: true,
        idempotency: None,
    })
}

fn decided(answer: Answer) -> Outcome {
    match answer {
        Answer::Decided(outcome) => outcome,
        Answer::Replayed(stored) => panic!("unexpected replay {stored:?}"),
    }
}

/// Runs one command in its own transaction.
fn run_one(db: &TestDb, key: OccurrenceKey, command: Command) -> anyhow::Result<Outcome> {
    let mut conn = rose_events::db::connect(&db.url)?;
    let mut results = apply(&mut conn, key, &[command], Utc::now())?;
    Ok(decided(results.remove(0)?))
}

fn attendee_of(who: &str) -> String {
    // Case files spell people as `local:NAME` or `remote:https://HOST/users/NAME`; attendee ids
    // allow no slashes, so remote people become NAME@HOST.
    if let Some(url) = who.strip_prefix("remote:https://") {
        let (host, path) = url.split_once('/').unwrap();
        let name = path.rsplit('/').next().unwrap();
        return format!("{name}@{host}");
    }
    who.trim_start_matches("local:").to_owned()
}

fn verify_clean(db: &TestDb) -> anyhow::Result<ledger::Verification> {
    let mut conn = db.connect()?;
    let report = ledger::verify(&mut conn)?;
    assert_eq!(
        report.differences,
        Vec::<String>::new(),
        "ledger and projection agree"
    );
    Ok(report)
}

fn seats_taken(db: &TestDb, key: OccurrenceKey) -> anyhow::Result<i32> {
    let mut conn = db.connect()?;
    Ok(store::select_capacity_row(&mut conn, key, false)?.map_or(0, |row| row.seats_taken))
}

/// Runs every step of one case-file scenario at the same instant, each in its own thread and
/// transaction, and returns the verdicts.
fn race(db: &TestDb, key: OccurrenceKey, people: &[String]) -> anyhow::Result<Vec<Verdict>> {
    // Connect first: a thread that failed to connect would leave the others at the barrier.
    let connections = people
        .iter()
        .map(|_| rose_events::db::connect(&db.url))
        .collect::<Result<Vec<_>, _>>()?;
    let barrier = Arc::new(Barrier::new(people.len()));
    let handles: Vec<_> = people
        .iter()
        .zip(connections)
        .map(|(person, mut conn)| {
            let barrier = Arc::clone(&barrier);
            let person = person.clone();
            std::thread::spawn(move || -> anyhow::Result<Verdict> {
                barrier.wait();
                let mut results = apply(&mut conn, key, &[book_command(&person, 1)], Utc::now())?;
                Ok(decided(results.remove(0)?).verdict)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("booking thread panicked"))
        .collect()
}

fn count(verdicts: &[Verdict], wanted: Verdict) -> usize {
    verdicts.iter().filter(|&&v| v == wanted).count()
}

fn last_seats_race_never_overbooks(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let lines: Vec<Value> = include_str!("data/bugs/B11.jsonl")
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    for round in 0..10 {
        for scenario in ["S1", "S2", "S3"] {
            let of = |kind: &'static str| {
                lines
                    .iter()
                    .filter(move |l| l["kind"] == kind && l["scenario"] == scenario)
            };
            let setup = of("setup").next().unwrap();
            let expect = of("expect").next().unwrap();
            let capacity = setup["capacity"].as_i64().unwrap() as i32;
            let start = format!("2031-01-{:02}T{:02}:00", round + 1, 8 + scenario.len());
            let key = event(&db, &start, Some(capacity))?;
            if setup["waitlist"] == true {
                let mut conn = db.connect()?;
                store::save_settings(
                    &mut conn,
                    key.event_id,
                    &rose_events::availability::facts::EventSettings {
                        waitlist: true,
                        ..Default::default()
                    },
                    Utc::now(),
                )?;
            }
            for n in 0..setup["confirmed"].as_i64().unwrap() {
                let outcome = run_one(&db, key, book_command(&format!("early{n}"), 1))?;
                assert_eq!(outcome.verdict, Verdict::Booked);
            }
            let people: Vec<String> = of("step")
                .map(|step| attendee_of(step["who"].as_str().unwrap()))
                .collect();
            let verdicts = race(&db, key, &people)?;

            let confirmed = expect["confirmed"].as_i64().unwrap() as i32;
            assert_eq!(
                seats_taken(&db, key)?,
                confirmed,
                "{scenario} round {round}"
            );
            let new_bookings = confirmed - setup["confirmed"].as_i64().unwrap() as i32;
            assert_eq!(
                count(&verdicts, Verdict::Booked),
                new_bookings as usize,
                "{scenario}"
            );
            let waitlisted = expect["waitlisted"].as_u64().unwrap_or(0) as usize;
            assert_eq!(
                count(&verdicts, Verdict::Waitlisted),
                waitlisted,
                "{scenario}"
            );
            assert_eq!(
                count(&verdicts, Verdict::Full),
                people.len() - new_bookings as usize - waitlisted,
                "{scenario}"
            );
        }
    }
    verify_clean(&db)?;
    Ok(())
}

fn cancel_frees_seat_exactly_once(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-02-01T10:00", Some(2))?;
    let mut ids = std::collections::HashMap::new();
    for line in include_str!("data/bugs/B13.jsonl").lines() {
        let step: Value = serde_json::from_str(line)?;
        if step["kind"] != "step" {
            continue;
        }
        let who = attendee_of(step["who"].as_str().unwrap());
        let outcome = match step["op"].as_str().unwrap() {
            "book" => {
                let outcome = run_one(&db, key, book_command(&who, 1))?;
                if let Some(booking) = &outcome.booking {
                    ids.insert(who.clone(), booking.id);
                }
                outcome
            }
            _ => run_one(
                &db,
                key,
                Command::Cancel {
                    booking_id: ids[&who],
                },
            )?,
        };
        let expected = step["expect"].as_str().unwrap();
        match expected {
            "ok" => assert!(outcome.changed, "step {}: {outcome:?}", step["n"]),
            "full" => assert_eq!(outcome.verdict, Verdict::Full, "step {}", step["n"]),
            _ => assert!(!outcome.changed, "a repeated cancel changes nothing"),
        }
        assert_eq!(
            i64::from(seats_taken(&db, key)?),
            step["confirmed_after"].as_i64().unwrap(),
            "step {}",
            step["n"]
        );
    }
    let mut conn = db.connect()?;
    let row = store::select_capacity_row(&mut conn, key, false)?.unwrap();
    let mut booked: Vec<String> = store::bookings_of_occurrence(&mut conn, row.id, 100)?
        .into_iter()
        .filter(|b| b.state == BookingState::Booked)
        .map(|b| b.attendee)
        .collect();
    booked.sort();
    assert_eq!(booked, ["omar", "pia"]);
    verify_clean(&db)?;
    Ok(())
}

fn lapsed_hold_frees_seat_and_cannot_be_confirmed(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-03-01T10:00", Some(1))?;
    let hold = run_one(
        &db,
        key,
        Command::Book(BookRequest {
            attendee: "rosa".to_owned(),
            seats: 1,
            hold_seconds: Some(1),
            waitlist: false,
            idempotency: None,
        }),
    )?;
    assert_eq!(hold.verdict, Verdict::Held);
    let hold_id = hold.booking.unwrap().id;
    assert_eq!(
        run_one(&db, key, book_command("sami", 1))?.verdict,
        Verdict::Full
    );

    std::thread::sleep(std::time::Duration::from_millis(1_300));
    assert_eq!(
        run_one(&db, key, book_command("sami", 1))?.verdict,
        Verdict::Booked
    );
    let confirm = run_one(
        &db,
        key,
        Command::Confirm {
            booking_id: hold_id,
            order_ref: "order-1".to_owned(),
            idempotency: None,
        },
    )?;
    assert_eq!(confirm.verdict, Verdict::Rejected);
    assert_eq!(confirm.reasons[0].as_str(), "hold_expired");
    assert_eq!(seats_taken(&db, key)?, 1);
    verify_clean(&db)?;
    Ok(())
}

fn ledger_refuses_update_and_delete(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-04-01T10:00", Some(3))?;
    run_one(&db, key, book_command("ana", 1))?;
    let mut conn = db.connect()?;
    let update = diesel::sql_query("UPDATE ledger_entries SET seats = 2").execute(&mut conn);
    assert!(update.is_err(), "UPDATE on the ledger must fail");
    let delete = diesel::sql_query("DELETE FROM ledger_entries").execute(&mut conn);
    assert!(delete.is_err(), "DELETE on the ledger must fail");
    verify_clean(&db)?;
    Ok(())
}

fn check_constraint_stops_overbooking(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-05-01T10:00", Some(2))?;
    run_one(&db, key, book_command("ana", 2))?;
    let mut conn = db.connect()?;
    let overbook =
        diesel::sql_query("UPDATE occurrence_capacities SET seats_taken = seats_taken + 1")
            .execute(&mut conn);
    assert!(
        overbook.is_err(),
        "seats_taken above capacity must be refused"
    );
    Ok(())
}

fn verify_reports_tampered_projection(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-06-01T10:00", Some(5))?;
    run_one(&db, key, book_command("ana", 2))?;
    run_one(&db, key, book_command("ben", 1))?;
    let mut conn = db.connect()?;
    diesel::sql_query("UPDATE occurrence_capacities SET seats_taken = 2").execute(&mut conn)?;
    diesel::sql_query("UPDATE bookings SET state = 'cancelled' WHERE attendee = 'ben'")
        .execute(&mut conn)?;
    let report = ledger::verify(&mut conn)?;
    assert_eq!(report.entries, 2);
    assert_eq!(report.differences.len(), 2, "{:?}", report.differences);
    assert!(report.differences[0].contains("is cancelled in the projection, booked in the ledger"));
    assert!(report.differences[1].contains("2 seats taken in the projection, 3 in the ledger"));
    Ok(())
}

fn batch_decides_like_one_at_a_time(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-07-01T10:00", Some(3))?;
    let commands = vec![
        book_command("ana", 2),
        book_command("ana", 1),
        book_command("ben", 2),
        book_command("cy", 1),
        book_command("dan", 1),
    ];
    let mut conn = db.connect()?;
    let verdicts: Vec<Verdict> = apply(&mut conn, key, &commands, Utc::now())?
        .into_iter()
        .map(|r| decided(r.unwrap()).verdict)
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Booked,
            Verdict::Conflict,
            Verdict::Full,
            Verdict::Booked,
            Verdict::Full
        ]
    );
    assert_eq!(seats_taken(&db, key)?, 3);
    verify_clean(&db)?;
    Ok(())
}

fn unknown_occurrence_writes_nothing(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let key = event(&db, "2031-08-01T10:00", Some(3))?;
    let wrong = OccurrenceKey {
        recurrence_id: DateTime::<Utc>::from_timestamp(key.recurrence_id.timestamp() + 60, 0)
            .unwrap(),
        ..key
    };
    let mut conn = db.connect()?;
    let results = apply(&mut conn, wrong, &[book_command("ana", 1)], Utc::now())?;
    assert!(matches!(
        results[0],
        Err(rose_events::booking::Error::OccurrenceNotFound { .. })
    ));
    let report = verify_clean(&db)?;
    assert_eq!((report.entries, report.occurrences), (0, 0));
    Ok(())
}

fn busy_waitlisted_person_does_not_block_seats(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let workshop = event(&db, "2031-09-01T10:00", Some(1))?;
    let talk = event(&db, "2031-09-01T10:30", Some(5))?;
    let mut conn = db.connect()?;
    store::save_settings(
        &mut conn,
        workshop.event_id,
        &rose_events::availability::facts::EventSettings {
            waitlist: true,
            ..Default::default()
        },
        Utc::now(),
    )?;
    let ana = run_one(&db, workshop, book_command("ana", 1))?;
    assert_eq!(ana.verdict, Verdict::Booked);
    let waiting = run_one(&db, workshop, book_command("ben", 1))?;
    assert_eq!(waiting.verdict, Verdict::Waitlisted);
    assert_eq!(
        run_one(&db, talk, book_command("ben", 1))?.verdict,
        Verdict::Booked
    );

    // The seat frees up, but ben is now busy at that time: he keeps his place in line, and
    // the seat goes to the next person instead of staying empty.
    let cancelled = run_one(
        &db,
        workshop,
        Command::Cancel {
            booking_id: ana.booking.unwrap().id,
        },
    )?;
    assert_eq!(cancelled.promoted, Vec::<i64>::new());
    let cy = run_one(&db, workshop, book_command("cy", 1))?;
    assert_eq!(cy.verdict, Verdict::Booked);
    assert_eq!(seats_taken(&db, workshop)?, 1);
    let ben = store::find_booking(&mut conn, waiting.booking.unwrap().id)?.unwrap();
    assert_eq!(ben.state, BookingState::Waitlisted);
    verify_clean(&db)?;
    Ok(())
}

on_both_backends!(
    last_seats_race_never_overbooks,
    cancel_frees_seat_exactly_once,
    lapsed_hold_frees_seat_and_cannot_be_confirmed,
    ledger_refuses_update_and_delete,
    check_constraint_stops_overbooking,
    verify_reports_tampered_projection,
    batch_decides_like_one_at_a_time,
    unknown_occurrence_writes_nothing,
    busy_waitlisted_person_does_not_block_seats,
);
