#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Storage behaviour, identical on SQLite and PostgreSQL.

mod common;

use chrono::{NaiveDate, NaiveDateTime};
use common::{Backend, TestDb};
use rose_events::calendar::event::{
    EventDetails, EventStatus, ExtraDate, NewEvent, NewOverride, Place, Schedule,
};
use rose_events::calendar::time::{EventLength, Moment, TimeBasis};
use rose_events::calendar::{NewCalendar, Visibility, store};
use rose_events::db;

fn wall(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, min, 0))
        .unwrap_or_default()
}

fn calendar(slug: &str) -> NewCalendar {
    NewCalendar {
        slug: slug.to_owned(),
        name: format!("Calendar {slug}"),
        default_zone: chrono_tz::Europe::Berlin,
        visibility: Visibility::Public,
    }
}

fn rich_event(uid: &str) -> NewEvent {
    let basis = TimeBasis::Zoned(chrono_tz::Europe::Berlin);
    NewEvent {
        uid: uid.to_owned(),
        details: EventDetails {
            title: "Repair café".to_owned(),
            description: Some("Bring a broken toaster.\nCoffee provided.".to_owned()),
            location: Some("Werkstatt, Hauptstraße 5, Berlin".to_owned()),
            place: Some(Place {
                name: Some("Werkstatt".to_owned()),
                street: Some("Hauptstraße 5".to_owned()),
                locality: Some("Berlin".to_owned()),
                region: None,
                postal_code: Some("10115".to_owned()),
                country: Some("DE".to_owned()),
                latitude: Some(52.53),
                longitude: Some(13.38),
            }),
            online_url: Some("https://meet.example.org/repair".to_owned()),
            status: EventStatus::Confirmed,
        },
        schedule: Schedule {
            start: wall(2026, 3, 7, 14, 0),
            basis,
            length: EventLength {
                days: 0,
                seconds: 3 * 3600,
            },
            rrule: Some("FREQ=WEEKLY;BYDAY=SA;COUNT=10".to_owned()),
            rdates: vec![ExtraDate {
                at: Moment::Wall(wall(2026, 3, 11, 18, 0)),
                length: Some(EventLength {
                    days: 0,
                    seconds: 3600,
                }),
            }],
            exdates: vec![Moment::Utc(wall(2026, 3, 14, 13, 0).and_utc())],
        },
        capacity: Some(12),
        overrides: vec![NewOverride {
            recurrence_id: Moment::Wall(wall(2026, 3, 21, 14, 0)),
            start: Some(wall(2026, 3, 22, 10, 0)),
            basis: None,
            length: None,
            details: None,
        }],
    }
}

fn migrations_go_up_down_and_up(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend)?;
    let mut conn = db::connect(&test_db.url)?;
    let applied = db::run_migrations(&mut conn)?;
    assert!(
        !applied.is_empty(),
        "a fresh database has migrations to apply"
    );
    let status = db::migration_status(&mut conn)?;
    assert!(status.pending.is_empty());
    while !db::migration_status(&mut conn)?.applied.is_empty() {
        db::revert_last_migration(&mut conn)?;
    }
    assert_eq!(
        db::migration_status(&mut conn)?.pending.len(),
        applied.len()
    );
    assert_eq!(db::run_migrations(&mut conn)?, applied);
    Ok(())
}

fn event_round_trips_through_storage(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend)?;
    let mut conn = test_db.connect()?;
    let cal = store::insert_calendar(&mut conn, &calendar("repair"))?;
    let mut event = rich_event("repair-1@example.org");
    let stored = store::insert_event(&mut conn, cal.id, &event)?;
    // Overrides come back keyed by their instant.
    let basis = event.schedule.basis;
    event.overrides[0].recurrence_id = Moment::Utc(event.overrides[0].recurrence_id.to_utc(basis));
    assert_eq!(stored.event, event);
    assert_eq!(stored.sequence, 0);
    let loaded = store::find_event(&mut conn, stored.id)?.expect("event was stored");
    assert_eq!(loaded.event, event);
    Ok(())
}

fn reimport_by_uid_updates_instead_of_duplicating(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend)?;
    let mut conn = test_db.connect()?;
    let cal = store::insert_calendar(&mut conn, &calendar("club"))?;
    let mut event = rich_event("club-1@example.org");
    let (first, created) = store::upsert_event_by_uid(&mut conn, cal.id, &event)?;
    assert!(created);
    "Repair café (new room)".clone_into(&mut event.details.title);
    let (second, created_again) = store::upsert_event_by_uid(&mut conn, cal.id, &event)?;
    assert!(!created_again);
    assert_eq!(second.id, first.id);
    assert_eq!(second.sequence, 1);
    assert_eq!(second.event.details.title, "Repair café (new room)");
    assert_eq!(store::events_of_calendar(&mut conn, cal.id)?.len(), 1);
    Ok(())
}

fn duplicate_slug_and_uid_are_rejected(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend)?;
    let mut conn = test_db.connect()?;
    let cal = store::insert_calendar(&mut conn, &calendar("dup"))?;
    let again = store::insert_calendar(&mut conn, &calendar("dup"));
    assert!(matches!(
        again,
        Err(rose_events::calendar::Error::SlugTaken(_))
    ));
    store::insert_event(&mut conn, cal.id, &rich_event("same@example.org"))?;
    let twice = store::insert_event(&mut conn, cal.id, &rich_event("same@example.org"));
    assert!(matches!(
        twice,
        Err(rose_events::calendar::Error::UidTaken(_))
    ));
    Ok(())
}

fn deleting_calendar_removes_its_events(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend)?;
    let mut conn = test_db.connect()?;
    let cal = store::insert_calendar(&mut conn, &calendar("gone"))?;
    let stored = store::insert_event(&mut conn, cal.id, &rich_event("gone@example.org"))?;
    assert!(store::delete_calendar(&mut conn, "gone")?);
    assert!(store::find_event(&mut conn, stored.id)?.is_none());
    assert!(!store::delete_calendar(&mut conn, "gone")?);
    Ok(())
}

fn window_query_skips_events_outside_their_span(backend: Backend) -> anyhow::Result<()> {
    let test_db = TestDb::new(backend)?;
    let mut conn = test_db.connect()?;
    let cal = store::insert_calendar(&mut conn, &calendar("span"))?;
    let mut one_off = rich_event("one-off@example.org");
    one_off.schedule.rrule = None;
    one_off.schedule.rdates.clear();
    one_off.overrides.clear();
    store::insert_event(&mut conn, cal.id, &one_off)?;
    let before = store::events_meeting(
        &mut conn,
        &[cal.id],
        wall(2026, 1, 1, 0, 0),
        wall(2026, 2, 1, 0, 0),
    )?;
    assert!(before.is_empty());
    let during = store::events_meeting(
        &mut conn,
        &[cal.id],
        wall(2026, 3, 1, 0, 0),
        wall(2026, 4, 1, 0, 0),
    )?;
    assert_eq!(during.len(), 1);
    Ok(())
}

on_both_backends!(
    migrations_go_up_down_and_up,
    event_round_trips_through_storage,
    reimport_by_uid_updates_instead_of_duplicating,
    duplicate_slug_and_uid_are_rejected,
    deleting_calendar_removes_its_events,
    window_query_skips_events_outside_their_span,
);
