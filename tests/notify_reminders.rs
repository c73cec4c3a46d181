#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Reminders and digests on SQLite and PostgreSQL: scheduling, moves and cancellations of
//! the event, the check at send time, and digests at the person's local hour.

mod common;
#[path = "oracle/delivery_support.rs"]
mod support;

use chrono::{Duration, Utc};
use common::{Backend, TestDb};
use diesel::RunQueryDsl;
use rose_events::calendar::event::{EventDetails, EventStatus, NewOverride};
use rose_events::calendar::store;
use rose_events::calendar::time::Moment;
use rose_events::delivery::JobState;
use rose_events::delivery::queue;
use rose_events::notify::Channel;
use rose_events::notify::digests;
use rose_events::notify::people::{self, DigestFrequency, PreferencesChange};
use rose_events::notify::reminders::{self, OccurrenceRef};
use rose_events::notify::subscriptions::{self, BrowserSubscription};
use support::{PushService, SmtpServer, TestWorker, at, event, store_event, wall};

#[expect(
    clippy::too_many_lines,
    reason = "one scenario whose steps depend on each other, checked in order"
)]
fn reminders_follow_their_occurrence(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let now = at("2030-03-01T00:00:00Z");
    let weekly = event(
        "choir",
        "Chorale",
        "2030-03-04T18:30",
        Some("FREQ=WEEKLY;COUNT=4"),
    );
    let id = store_event(&mut conn, "choir", &weekly)?;
    let second = OccurrenceRef {
        event_id: id,
        recurrence_id: Some(at("2030-03-11T17:30:00Z")),
        remote: false,
    };
    let third = OccurrenceRef {
        event_id: id,
        recurrence_id: Some(at("2030-03-18T17:30:00Z")),
        remote: false,
    };

    assert_eq!(
        reminders::schedule(&mut conn, second, "ana", now)?,
        4,
        "2 channels x 2 offsets"
    );
    assert_eq!(
        reminders::schedule(&mut conn, second, "ana", now)?,
        0,
        "scheduling twice adds nothing"
    );
    assert_eq!(reminders::schedule(&mut conn, third, "ana", now)?, 4);
    let listed = reminders::jobs_of(&mut conn, second, "ana")?;
    let times: Vec<_> = listed
        .iter()
        .map(|r| (r.channel.as_str(), r.offset_minutes, r.run_at))
        .collect();
    assert_eq!(
        times,
        [
            ("email", 1440, at("2030-03-10T17:30:00Z")),
            ("email", 60, at("2030-03-11T16:30:00Z")),
            ("push", 1440, at("2030-03-10T17:30:00Z")),
            ("push", 60, at("2030-03-11T16:30:00Z")),
        ]
    );
    assert!(
        listed
            .iter()
            .all(|r| r.deadline == Some(at("2030-03-11T17:30:00Z")))
    );

    // An override moves the second occurrence to Tuesday 20:00 and cancels the third.
    let mut moved = weekly.clone();
    moved.overrides = vec![
        NewOverride {
            recurrence_id: Moment::Utc(at("2030-03-11T17:30:00Z")),
            start: Some(wall("2030-03-12T20:00")),
            basis: None,
            length: None,
            details: None,
        },
        NewOverride {
            recurrence_id: Moment::Utc(at("2030-03-18T17:30:00Z")),
            start: None,
            basis: None,
            length: None,
            details: Some(EventDetails {
                title: "Chorale".to_owned(),
                status: EventStatus::Cancelled,
                ..EventDetails::default()
            }),
        },
    ];
    store::replace_event(&mut conn, id, &moved)?;
    let listed = reminders::jobs_of(&mut conn, second, "ana")?;
    let push_day_before = listed
        .iter()
        .find(|r| r.channel == "push" && r.offset_minutes == 1440)
        .expect("kept");
    assert_eq!(
        push_day_before.run_at,
        at("2030-03-11T19:00:00Z"),
        "moved with the occurrence"
    );
    assert_eq!(push_day_before.deadline, Some(at("2030-03-12T19:00:00Z")));
    let hour_before = listed
        .iter()
        .find(|r| r.channel == "email" && r.offset_minutes == 60)
        .expect("kept");
    assert_eq!(hour_before.run_at, at("2030-03-12T18:00:00Z"));
    assert!(
        reminders::jobs_of(&mut conn, third, "ana")?.is_empty(),
        "a cancelled occurrence has none"
    );

    // A one-off event keeps its identity when it moves.
    let single = event("talk", "Talk", "2030-03-20T18:00", None);
    let talk = store_event(&mut conn, "choir", &single)?;
    let talk_ref = OccurrenceRef {
        event_id: talk,
        recurrence_id: None,
        remote: false,
    };
    reminders::schedule(&mut conn, talk_ref, "ana", now)?;
    let mut later = single.clone();
    later.schedule.start = wall("2030-03-21T09:00");
    store::replace_event(&mut conn, talk, &later)?;
    let listed = reminders::jobs_of(&mut conn, talk_ref, "ana")?;
    assert_eq!(listed.len(), 4);
    assert!(
        listed
            .iter()
            .all(|r| r.deadline == Some(at("2030-03-21T08:00:00Z")))
    );

    // Deleting the event removes its reminders and their pending jobs.
    let before = queue::count_by_state(&mut conn)?;
    store::delete_event(&mut conn, id)?;
    assert!(reminders::jobs_of(&mut conn, second, "ana")?.is_empty());
    let after = queue::count_by_state(&mut conn)?;
    assert_eq!(
        before[0] - after[0],
        4,
        "the moved occurrence's four pending jobs went"
    );

    // Deleting the calendar removes the reminders of the events it held.
    store::delete_calendar(&mut conn, "choir")?;
    assert!(reminders::jobs_of(&mut conn, talk_ref, "ana")?.is_empty());
    assert_eq!(
        queue::count_by_state(&mut conn)?[0],
        0,
        "no pending job is left"
    );
    Ok(())
}

fn schedule_skips_passed_offsets(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let id = store_event(
        &mut conn,
        "c",
        &event("e", "Late", "2030-03-11T18:30", None),
    )?;
    let occurrence = OccurrenceRef {
        event_id: id,
        recurrence_id: None,
        remote: false,
    };
    assert_eq!(
        reminders::schedule(&mut conn, occurrence, "ana", at("2030-03-11T16:00:00Z"))?,
        2
    );
    assert_eq!(
        reminders::schedule(&mut conn, occurrence, "bo", at("2030-03-11T17:00:00Z"))?,
        0
    );
    let missing = OccurrenceRef {
        event_id: id,
        recurrence_id: Some(at("2030-03-11T17:30:00Z")),
        remote: false,
    };
    assert!(reminders::schedule(&mut conn, missing, "ana", at("2030-03-01T00:00:00Z")).is_err());
    assert!(
        reminders::schedule(
            &mut conn,
            occurrence,
            "not/valid",
            at("2030-03-01T00:00:00Z")
        )
        .is_err()
    );

    assert_eq!(reminders::cancel(&mut conn, occurrence, "ana")?, 2);
    assert_eq!(
        queue::count_by_state(&mut conn)?[0],
        0,
        "cancel removed the pending jobs"
    );
    Ok(())
}

fn send_time_check_drops_cancelled_occurrence(backend: Backend) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let db = TestDb::new(backend)?;
    let pool = support::pool(&db.url)?;
    let service = PushService::start()?;
    let now = at("2030-04-01T08:00:00Z");
    let mut conn = pool.get()?;
    let change = PreferencesChange {
        channels: Some(vec![Channel::Push]),
        ..PreferencesChange::default()
    };
    people::update(&mut conn, "ana", &change, now)?;
    let browser: BrowserSubscription = serde_json::from_value(service.subscription(&[])?)?;
    subscriptions::subscribe(&mut conn, "ana", &browser, true, now)?;
    let id = store_event(
        &mut conn,
        "c",
        &event("e", "Picnic", "2030-04-03T12:00", None),
    )?;
    reminders::schedule(
        &mut conn,
        OccurrenceRef {
            event_id: id,
            recurrence_id: None,
            remote: false,
        },
        "ana",
        now,
    )?;
    // A write that bypasses the store (another tool, a hand edit) cancels the event.
    diesel::sql_query(format!(
        "UPDATE events SET status = 'cancelled' WHERE id = {id}"
    ))
    .execute(&mut *conn)?;
    drop(conn);

    let worker = TestWorker::new(&pool, db.dir.path(), None, now)?;
    runtime.block_on(worker.drain_until(at("2030-04-04T00:00:00Z")))?;
    let jobs = worker.jobs()?;
    assert_eq!(jobs.len(), 2, "two reminders, no sends: {jobs:?}");
    for job in jobs {
        assert_eq!(job.state, "done");
        assert_eq!(job.last_error.as_deref(), Some("occurrence was cancelled"));
    }
    assert_eq!(
        service.log(&browser.endpoint)?["requests"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    Ok(())
}

on_both_backends!(
    reminders_follow_their_occurrence,
    schedule_skips_passed_offsets,
    send_time_check_drops_cancelled_occurrence,
);

#[test]
fn digest_arrives_at_local_hour() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let db = TestDb::new(Backend::Sqlite)?;
    let pool = support::pool(&db.url)?;
    let server = SmtpServer::start(&serde_json::json!([]), false)?;
    // New events are dated by the real clock, so this test runs around the real time.
    let now = Utc::now();
    let mut conn = pool.get()?;

    let tomorrow = (now + Duration::days(1)).with_timezone(&chrono_tz::Europe::Paris);
    let start = tomorrow.format("%Y-%m-%dT%H:%M").to_string();
    let booked = store_event(
        &mut conn,
        "club",
        &event("booked", "Repair café", &start, None),
    )?;
    for n in 0..25 {
        store_event(
            &mut conn,
            "garden",
            &event(
                &format!("g{n}"),
                &format!("Garden day {n:02}"),
                "2031-06-01T10:00",
                None,
            ),
        )?;
    }
    let change = PreferencesChange {
        email: Some("ana@mail.example.net".to_owned()),
        channels: Some(vec![Channel::Email]),
        reminder_offsets_minutes: Some(vec![60]),
        digest: Some(DigestFrequency::Daily),
        digest_hour: Some(7),
        zone: Some("Europe/Paris".to_owned()),
    };
    let person = people::update(&mut conn, "ana", &change, now)?;
    people::follow(&mut conn, "ana", "garden", now)?;
    people::follow(&mut conn, "ana", "garden", now)?;
    reminders::schedule(
        &mut conn,
        OccurrenceRef {
            event_id: booked,
            recurrence_id: None,
            remote: false,
        },
        "ana",
        now,
    )?;

    let notice = digests::compose(
        &mut conn,
        &person,
        now + Duration::minutes(1),
        "https://events.example",
    )?
    .expect("something to report");
    assert_eq!(notice.lines[0], "Coming up:");
    assert!(
        notice.lines[1].ends_with("— Repair café"),
        "{:?}",
        notice.lines
    );
    assert_eq!(notice.lines[2], "New in calendars you follow:");
    assert_eq!(
        notice.lines.len(),
        2 + digests::MAX_ITEMS + 1,
        "capped: {:?}",
        notice.lines
    );
    assert_eq!(notice.lines.last().map(String::as_str), Some("…and 6 more"));
    drop(conn);

    let expected = digests::next_time(&person, now).expect("daily digest");
    assert_eq!(
        expected
            .with_timezone(&chrono_tz::Europe::Paris)
            .format("%H:%M")
            .to_string(),
        "07:00"
    );
    let worker = TestWorker::new(&pool, db.dir.path(), Some(server.settings(false)), now)?;
    let jumps = runtime.block_on(worker.drain_until(expected + Duration::minutes(1)))?;
    assert!(
        jumps.contains(&expected),
        "the digest ran at 07:00 Paris: {jumps:?}"
    );
    let digests_sent: Vec<_> = server
        .messages()?
        .into_iter()
        .filter(|m| {
            m["message"]
                .as_str()
                .is_some_and(|t| t.contains("Subject: Your events today"))
        })
        .collect();
    assert_eq!(digests_sent.len(), 1);
    let next = worker
        .jobs()?
        .into_iter()
        .filter(|j| j.kind == "digest" && j.job_state() == Some(JobState::Pending))
        .count();
    assert_eq!(next, 1, "the next digest is planned");
    Ok(())
}
