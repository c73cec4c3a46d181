#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! A booking schedules its attendee's reminders in the same transaction, and cancelling it
//! removes them, on both backends.

mod common;

use chrono::{DateTime, Utc};
use common::{Backend, Reply, TestServer, agent};
use rose_events::notify::reminders::{self, OccurrenceRef};
use serde_json::{Value, json};

fn create_event(server: &TestServer, body: &Value) -> anyhow::Result<i64> {
    let _ = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "club", "name": "Club", "default_zone": "UTC"}),
    )?;
    let reply = server.send_json("POST", "/api/v1/calendars/club/events", body)?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(reply.json()?["id"].as_i64().unwrap_or_default())
}

fn book(server: &TestServer, path: &str, attendee: &str) -> anyhow::Result<i64> {
    let reply = Reply::from_result(
        agent()
            .post(&server.url(&format!("{path}/bookings")))
            .set("Authorization", &format!("Bearer {}", server.token))
            .send_json(json!({"attendee": attendee, "seats": 1})),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(reply.json()?["booking"]["id"].as_i64().unwrap_or_default())
}

fn cancel(server: &TestServer, booking: i64) -> anyhow::Result<()> {
    let reply = Reply::from_result(
        agent()
            .delete(&server.url(&format!("/api/v1/bookings/{booking}")))
            .set("Authorization", &format!("Bearer {}", server.token))
            .call(),
    )?;
    assert!(reply.status < 300, "{}", reply.body);
    Ok(())
}

fn reminder_count(
    server: &TestServer,
    occurrence: OccurrenceRef,
    person: &str,
) -> anyhow::Result<usize> {
    let mut conn = server.db.connect()?;
    Ok(reminders::jobs_of(&mut conn, occurrence, person)?.len())
}

fn booking_schedules_and_cancel_removes_reminders(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let one_off = create_event(
        &server,
        &json!({"title": "Talk", "start": "2031-03-04T18:00", "duration": "PT1H", "capacity": 5}),
    )?;
    let weekly = create_event(
        &server,
        &json!({"title": "Choir", "start": "2031-03-05T19:00", "duration": "PT2H",
                "rrule": "FREQ=WEEKLY", "capacity": 5}),
    )?;

    let talk = OccurrenceRef {
        event_id: one_off,
        recurrence_id: None,
    };
    let second_rehearsal: DateTime<Utc> = "2031-03-12T19:00:00Z".parse()?;
    let choir = OccurrenceRef {
        event_id: weekly,
        recurrence_id: Some(second_rehearsal),
    };

    let talk_booking = book(
        &server,
        &format!("/api/v1/events/{one_off}/occurrences/20310304T180000Z"),
        "ada",
    )?;
    let choir_booking = book(
        &server,
        &format!("/api/v1/events/{weekly}/occurrences/20310312T190000Z"),
        "ada",
    )?;
    // Default preferences: push and email, 24 hours and 1 hour before.
    assert_eq!(reminder_count(&server, talk, "ada")?, 4);
    assert_eq!(reminder_count(&server, choir, "ada")?, 4);

    cancel(&server, talk_booking)?;
    assert_eq!(reminder_count(&server, talk, "ada")?, 0);
    assert_eq!(reminder_count(&server, choir, "ada")?, 4);

    cancel(&server, choir_booking)?;
    assert_eq!(reminder_count(&server, choir, "ada")?, 0);
    Ok(())
}

on_both_backends!(booking_schedules_and_cancel_removes_reminders);
