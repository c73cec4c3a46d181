#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Bookings follow their event: a booking schedules its attendee's reminders in the same
//! transaction and a cancel removes them; a moved occurrence moves its bookings, and a change
//! that would strand live bookings is refused. On both backends.

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
        remote: false,
    };
    let second_rehearsal: DateTime<Utc> = "2031-03-12T19:00:00Z".parse()?;
    let choir = OccurrenceRef {
        event_id: weekly,
        recurrence_id: Some(second_rehearsal),
        remote: false,
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

fn get_booking(server: &TestServer, booking: i64) -> anyhow::Result<Value> {
    let reply = Reply::from_result(
        agent()
            .get(&server.url(&format!("/api/v1/bookings/{booking}")))
            .set("Authorization", &format!("Bearer {}", server.token))
            .call(),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn moves_keep_bookings_with_their_occurrence(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let talk = create_event(
        &server,
        &json!({"title": "Talk", "start": "2031-03-04T18:00", "duration": "PT1H", "capacity": 3}),
    )?;
    book(
        &server,
        &format!("/api/v1/events/{talk}/occurrences/20310304T180000Z"),
        "mo",
    )?;
    // Moving the one-off event would leave the booking on a start that no longer exists.
    let reply = server.send_json(
        "PUT",
        &format!("/api/v1/events/{talk}"),
        &json!({"title": "Talk", "start": "2031-03-05T18:00", "duration": "PT1H", "capacity": 3}),
    )?;
    assert_eq!(reply.status, 409, "{}", reply.body);
    let unchanged = server.get(&format!("/api/v1/events/{talk}"))?.json()?;
    assert_eq!(unchanged["start"], "2031-03-04T18:00:00", "{unchanged}");

    let choir = create_event(
        &server,
        &json!({"title": "Choir", "start": "2031-03-05T19:00", "duration": "PT2H",
                "rrule": "FREQ=WEEKLY", "capacity": 5}),
    )?;
    let booking = book(
        &server,
        &format!("/api/v1/events/{choir}/occurrences/20310312T190000Z"),
        "mv",
    )?;
    let reply = server.send_json(
        "PUT",
        &format!("/api/v1/events/{choir}/overrides/2031-03-12T19:00"),
        &json!({"start": "2031-03-13T08:00"}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let moved = get_booking(&server, booking)?;
    assert_eq!(moved["starts_at"], "2031-03-13T08:00:00Z", "{moved}");
    assert_eq!(moved["ends_at"], "2031-03-13T10:00:00Z", "{moved}");

    // The attendee is now busy at the new time, not the old one.
    let breakfast = create_event(
        &server,
        &json!({"title": "Breakfast", "start": "2031-03-13T08:30", "duration": "PT1H"}),
    )?;
    let reply = Reply::from_result(
        agent()
            .post(&server.url(&format!(
                "/api/v1/events/{breakfast}/occurrences/20310313T083000Z/bookings"
            )))
            .set("Authorization", &format!("Bearer {}", server.token))
            .send_json(json!({"attendee": "mv", "seats": 1})),
    )?;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.json()?["verdict"], "conflict");
    Ok(())
}

on_both_backends!(
    booking_schedules_and_cancel_removes_reminders,
    moves_keep_bookings_with_their_occurrence,
);
