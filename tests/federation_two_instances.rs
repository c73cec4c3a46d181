//! Two servers on 127.0.0.1 with their own databases: A adds and trusts B, B's events reach
//! A's agenda (a series once, although its occurrences also arrive as objects of their own),
//! follow B's changes and disappear when B deletes them.
//!
//! Every activity goes from one server to the other through the sender's durable delivery
//! queue: the test only waits until the sender's worker has delivered it.

mod common;

use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use chrono::{Datelike, Duration, Utc};
use common::{Backend, TestServer, run_cli};
use diesel::prelude::*;
use rose_events::db::schema::jobs;
use rose_events::federation::outbox;
use serde_json::{Value, json};

fn start(backend: Backend) -> anyhow::Result<TestServer> {
    TestServer::start_with_env(
        backend,
        &[("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")],
    )
}

/// Waits until the worker of `from` has delivered every activity published after outbox row
/// `after` to the inboxes of `to` that it names, and returns the last row and the dedup keys
/// of the delivery jobs that finished.
fn deliver_outbox(
    from: &TestServer,
    to: &TestServer,
    after: i64,
) -> anyhow::Result<(i64, Vec<String>)> {
    let mut conn = from.db.connect()?;
    let recorded = outbox::since(&mut conn, after, 100)?;
    let last = recorded.last().map_or(after, |r| r.id);
    let mut expected = Vec::new();
    for activity in &recorded {
        let id = activity.activity["id"].as_str().unwrap_or_default();
        for inbox in activity
            .recipients
            .iter()
            .filter(|i| i.starts_with(&to.base))
        {
            expected.push(format!("activitypub/{id}/{inbox}"));
        }
    }
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        let states: Vec<(String, String, Option<String>, i32)> = jobs::table
            .filter(jobs::dedup_key.eq_any(&expected))
            .select((
                jobs::dedup_key,
                jobs::state,
                jobs::last_error,
                jobs::attempts,
            ))
            .load(&mut conn)?;
        if let Some((key, _, error, _)) = states.iter().find(|(_, state, _, _)| state == "dead") {
            anyhow::bail!("delivery {key} died: {error:?}");
        }
        // Between two healthy servers every delivery gets through the first time. A retry
        // means the receiver failed one, with a 500 from a race for example.
        if let Some((key, _, error, attempts)) = states.iter().find(|(_, _, _, n)| *n > 1) {
            anyhow::bail!("delivery {key} needed {attempts} attempts: {error:?}");
        }
        let done = states
            .iter()
            .filter(|(_, state, _, _)| state == "done")
            .count();
        if states.len() == expected.len() && done == expected.len() {
            return Ok((last, expected));
        }
        if Instant::now() > deadline {
            anyhow::bail!("deliveries not done within 60 s: {states:?} of {expected:?}");
        }
        std::thread::sleep(StdDuration::from_millis(100));
    }
}

fn agenda(server: &TestServer, from: &str, to: &str) -> anyhow::Result<Vec<Value>> {
    let reply = server.get(&format!("/api/v1/agenda?from={from}&to={to}"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(reply.json()?["occurrences"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn remote_events_follow_their_origin(backend: Backend) -> anyhow::Result<()> {
    // A adds B as a trusted peer; its Follow of B's instance actor is delivered and accepted.
    let (a, b, mut b_cursor) = trusted_pair(backend)?;
    let b_domain = b.base.trim_start_matches("http://").to_owned();
    let listing = run_cli(&a.db, &["peer", "list"])?;
    let listing = String::from_utf8(listing.stdout)?;
    assert!(
        listing.contains(&format!("{b_domain}\ttrusted\t")),
        "{listing}"
    );
    assert!(listing.trim_end().ends_with("\taccepted"), "{listing}");

    // B schedules a weekly event starting next Monday at 19:00 Berlin time.
    let today = Utc::now().date_naive();
    let monday = today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    let start = format!("{monday}T19:00:00");
    let reply = b.send_json(
        "POST",
        "/api/v1/calendars/choir/events",
        &json!({
            "title": "Rehearsal",
            "start": start,
            "zone": "Europe/Berlin",
            "duration": "PT2H",
            "rrule": "FREQ=WEEKLY;COUNT=3",
            "location": "Kulturhaus",
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let event_id = reply.json()?["id"].as_i64().context("event id")?;
    let (cursor, delivered) = deliver_outbox(&b, &a, b_cursor)?;
    b_cursor = cursor;
    assert_eq!(
        delivered.len(),
        4,
        "the Create of the series and of its three occurrences reach A"
    );

    let from = monday.to_string();
    let to = (monday + Duration::days(30)).to_string();
    let listed = agenda(&a, &from, &to)?;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|e| e["origin"] == b_domain.as_str()));
    assert!(listed.iter().all(|e| e["title"] == "Rehearsal"));
    assert_eq!(listed[0]["start"], b_local(&b, event_id, &from)?);

    // B moves the series an hour later; A's agenda follows.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let moved = format!("{monday}T20:00:00");
    let reply = b.send_json(
        "PUT",
        &format!("/api/v1/events/{event_id}"),
        &json!({
            "title": "Rehearsal",
            "start": moved,
            "zone": "Europe/Berlin",
            "duration": "PT2H",
            "rrule": "FREQ=WEEKLY;COUNT=3",
            "location": "Kulturhaus",
        }),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (cursor, delivered) = deliver_outbox(&b, &a, b_cursor)?;
    b_cursor = cursor;
    assert_eq!(
        delivered.len(),
        7,
        "the Update of the series, the Delete of the three occurrences at 19:00 and the \
         Create of the three at 20:00 reach A"
    );
    let listed = agenda(&a, &from, &to)?;
    assert_eq!(listed.len(), 3);
    let first = listed[0]["start"].as_str().unwrap_or_default();
    assert!(first.contains("T20:00:00"), "{first}");

    // B deletes it; A's agenda is empty again.
    let reply = agent_delete(&b, &format!("/api/v1/events/{event_id}"))?;
    assert_eq!(reply, 204);
    let (_, delivered) = deliver_outbox(&b, &a, b_cursor)?;
    assert_eq!(
        delivered.len(),
        4,
        "the Delete of the series and of its three occurrences reach A"
    );
    assert!(agenda(&a, &from, &to)?.is_empty());
    Ok(())
}

/// The first start of event `id` as B's own agenda shows it.
fn b_local(b: &TestServer, id: i64, from: &str) -> anyhow::Result<Value> {
    let to =
        (chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d")? + Duration::days(30)).to_string();
    let listed = agenda(b, from, &to)?;
    let own = listed
        .iter()
        .find(|e| e["event_id"] == id)
        .context("B lists its own event")?;
    Ok(own["start"].clone())
}

fn agent_delete(server: &TestServer, path: &str) -> anyhow::Result<u16> {
    let result = common::agent()
        .delete(&server.url(path))
        .set("Authorization", &format!("Bearer {}", server.token))
        .call();
    Ok(common::Reply::from_result(result)?.status)
}

/// Starts servers A and B, with a calendar on B, and makes A trust and follow B.
fn trusted_pair(backend: Backend) -> anyhow::Result<(TestServer, TestServer, i64)> {
    let a = start(backend)?;
    let b = start(backend)?;
    let b_domain = b.base.trim_start_matches("http://").to_owned();
    let reply = b.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "choir", "name": "Choir", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let out = run_cli(
        &a.db,
        &[
            "--federation-allow-localhost",
            "--public-url",
            &a.base,
            "peer",
            "add",
            &b_domain,
            "--trust",
        ],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, delivered) = deliver_outbox(&a, &b, 0)?;
    assert_eq!(delivered.len(), 1, "the Follow reaches B");
    let (b_cursor, delivered) = deliver_outbox(&b, &a, 0)?;
    assert_eq!(delivered.len(), 1, "the Accept reaches A");
    Ok((a, b, b_cursor))
}

fn rsvp_state(a: &TestServer, person: &str) -> anyhow::Result<Vec<Value>> {
    let reply = a.send("GET", &format!("/api/v1/people/{person}/rsvps"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(reply.json()?["rsvps"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// States of the remote RSVPs to one of `server`'s events, in the organizer's listing.
fn incoming_states(server: &TestServer, event: i64) -> anyhow::Result<Vec<String>> {
    let listed = server
        .send("GET", &format!("/api/v1/events/{event}/rsvps"))?
        .json()?;
    Ok(listed["rsvps"]
        .as_array()
        .context("rsvps")?
        .iter()
        .filter_map(|r| r["state"].as_str().map(str::to_owned))
        .collect())
}

/// Returns a person's reminders for one occurrence of a remote event.
fn remote_reminders(
    server: &TestServer,
    remote_id: i64,
    rid: chrono::DateTime<Utc>,
    person: &str,
) -> anyhow::Result<Vec<rose_events::notify::reminders::ReminderStatus>> {
    let mut conn = server.db.connect()?;
    Ok(rose_events::notify::reminders::jobs_of(
        &mut conn,
        rose_events::notify::reminders::OccurrenceRef {
            event_id: remote_id,
            recurrence_id: Some(rid),
            remote: true,
        },
        person,
    )?)
}

/// Books `person` on a new local event of `server` starting at `start` and returns the
/// verdict.
fn local_booking_at(
    server: &TestServer,
    start: chrono::DateTime<Utc>,
    person: &str,
) -> anyhow::Result<String> {
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "home", "name": "Home", "default_zone": "UTC"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/home/events",
        &json!({
            "title": "Dinner",
            "start": start.format("%Y-%m-%dT%H:%M:%S").to_string(),
            "zone": "UTC",
            "duration": "PT1H",
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().context("event id")?;
    let reply = server.send_json(
        "POST",
        &format!(
            "/api/v1/events/{id}/occurrences/{}/bookings",
            start.format("%Y%m%dT%H%M%SZ")
        ),
        &json!({"attendee": person}),
    )?;
    Ok(reply.json()?["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Gives `people` email reminders `minutes` before their occurrences.
fn remind_by_email(server: &TestServer, people: &[&str], minutes: i32) -> anyhow::Result<()> {
    for person in people {
        let reply = server.send_json(
            "PUT",
            &format!("/api/v1/people/{person}"),
            &json!({
                "email": format!("{person}@example.org"),
                "channels": ["email"],
                "reminder_offsets_minutes": [minutes],
            }),
        )?;
        assert!(reply.status < 300, "{}", reply.body);
    }
    Ok(())
}

/// Moves the occurrence of `event` on `server` with recurrence id `rid` an hour later with an
/// override, and returns its new start.
fn move_occurrence(
    server: &TestServer,
    event: i64,
    rid: chrono::DateTime<Utc>,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    let zone: chrono_tz::Tz = "Europe/Berlin".parse()?;
    let wall = rid.with_timezone(&zone).naive_local();
    let later = wall + Duration::hours(1);
    let reply = server.send_json(
        "PUT",
        &format!(
            "/api/v1/events/{event}/overrides/{}",
            wall.format("%Y-%m-%dT%H:%M")
        ),
        &json!({"start": later.format("%Y-%m-%dT%H:%M:%S").to_string()}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(rid + Duration::hours(1))
}

/// A's people RSVP to B's event: the first is accepted and gets reminders, the next is
/// refused with B's reason once B's own bookings fill the occurrence.
fn people_rsvp_to_a_peers_event(backend: Backend) -> anyhow::Result<()> {
    let (a, b, b_cursor) = trusted_pair(backend)?;
    let today = Utc::now().date_naive();
    let monday = today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    let reply = b.send_json(
        "POST",
        "/api/v1/calendars/choir/events",
        &json!({
            "title": "Rehearsal",
            "start": format!("{monday}T19:00:00"),
            "zone": "Europe/Berlin",
            "duration": "PT2H",
            "rrule": "FREQ=WEEKLY;COUNT=3",
            "capacity": 2,
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let b_event = reply.json()?["id"].as_i64().context("event id")?;
    let (b_cursor, _) = deliver_outbox(&b, &a, b_cursor)?;

    // A's agenda shows B's three occurrences; Alice joins the second.
    let listed = agenda(
        &a,
        &monday.to_string(),
        &(monday + Duration::days(30)).to_string(),
    )?;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let second = &listed[1];
    let remote_id = second["remote_event_id"]
        .as_i64()
        .context("remote_event_id")?;
    let occurrence = second["start_utc"]
        .as_str()
        .context("start_utc")?
        .to_owned();
    remind_by_email(&a, &["alice", "carl"], 60)?;
    let reply = a.send_json(
        "POST",
        "/api/v1/people/alice/rsvps",
        &json!({"remote_event_id": remote_id, "occurrence": occurrence}),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.json()?["state"], "requested");
    let (mut a_cursor, joins) = deliver_outbox(&a, &b, 0)?;
    assert!(!joins.is_empty(), "the Join reaches B");
    let (b_cursor, answers) = deliver_outbox(&b, &a, b_cursor)?;
    assert_eq!(answers.len(), 1, "B answers the Join");
    let alice = rsvp_state(&a, "alice")?;
    assert_eq!(alice[0]["state"], "accepted", "{alice:?}");

    let rid = chrono::DateTime::parse_from_rfc3339(&occurrence)?.to_utc();
    let reminders = remote_reminders(&a, remote_id, rid, "alice")?;
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(reminders[0].run_at, rid - Duration::minutes(60));
    assert_eq!(
        local_booking_at(&a, rid, "alice")?,
        "conflict",
        "the remote occurrence makes Alice busy on A"
    );

    // B's own booking takes the last seat; Carl's Join is refused with B's reason.
    let b_rid = rid.format("%Y%m%dT%H%M%SZ").to_string();
    let reply = b.send_json(
        "POST",
        &format!("/api/v1/events/{b_event}/occurrences/{b_rid}/bookings"),
        &json!({"attendee": "bert"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = a.send_json(
        "POST",
        "/api/v1/people/carl/rsvps",
        &json!({"remote_event_id": remote_id, "occurrence": occurrence}),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let (cursor, _) = deliver_outbox(&a, &b, a_cursor)?;
    a_cursor = cursor;
    let (b_cursor, answers) = deliver_outbox(&b, &a, b_cursor)?;
    assert_eq!(answers.len(), 1, "B answers Carl");
    let carl = rsvp_state(&a, "carl")?;
    assert_eq!(carl[0]["state"], "refused", "{carl:?}");
    let reason = carl[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("full") && reason.contains("Rehearsal"),
        "{reason}"
    );

    // B moves that occurrence an hour later; Alice's reminder on A moves with it.
    let moved_start = move_occurrence(&b, b_event, rid)?;
    deliver_outbox(&b, &a, b_cursor)?;
    let reminders = remote_reminders(&a, remote_id, rid, "alice")?;
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(reminders[0].run_at, moved_start - Duration::minutes(60));

    // Alice withdraws: B frees her seat and her reminders are gone.
    let rsvp_id = alice[0]["id"].as_i64().context("rsvp id")?;
    let reply = a.send("DELETE", &format!("/api/v1/people/alice/rsvps/{rsvp_id}"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()?["state"], "left");
    deliver_outbox(&a, &b, a_cursor)?;
    assert!(remote_reminders(&a, remote_id, rid, "alice")?.is_empty());
    assert_eq!(incoming_states(&b, b_event)?, vec!["left", "refused"]);
    Ok(())
}

on_both_backends!(
    remote_events_follow_their_origin,
    people_rsvp_to_a_peers_event
);
