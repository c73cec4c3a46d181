//! Recurring events over ActivityPub. A series goes out as its upcoming occurrences, each an
//! `Event` of its own that is created, updated and deleted as the series, its overrides and
//! its bookings change. The hourly horizon run publishes occurrences that time brings near,
//! and a receiver merges a peer's occurrence objects into the series they belong to.

mod common;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use common::peer::{FakePeer, deliver};
use common::{Backend, TestDb, TestServer, agent, run_cli};
use diesel::prelude::*;
use rose_events::calendar::event::{EventDetails, NewEvent, Schedule};
use rose_events::calendar::store;
use rose_events::calendar::time::{EventLength, TimeBasis};
use rose_events::db::schema::jobs;
use rose_events::delivery::{FixedClock, Handlers, Worker, WorkerSettings, queue};
use rose_events::federation::outbox;
use rose_events::federation::refresh::{self, HORIZON_KIND, HorizonHandler};
use rose_events::federation::{publish, series};
use serde_json::{Value, json};

fn start(backend: Backend) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with_env(
        backend,
        &[("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")],
    )?;
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "choir", "name": "Choir", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(server)
}

/// Returns the Monday after today, so that every test occurrence lies within the horizon.
fn next_monday() -> NaiveDate {
    let today = Utc::now().date_naive();
    today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()))
}

/// Activities published after outbox row `after`, and the last row.
fn published_since(server: &TestServer, after: i64) -> anyhow::Result<(i64, Vec<Value>)> {
    let mut conn = server.db.connect()?;
    let recorded = outbox::since(&mut conn, after, 500)?;
    let last = recorded.last().map_or(after, |r| r.id);
    Ok((last, recorded.into_iter().map(|r| r.activity).collect()))
}

/// Activities about occurrence objects (those linked to a series), or about their ids.
fn about_occurrences<'a>(activities: &'a [Value], kind: &str) -> Vec<&'a Value> {
    activities
        .iter()
        .filter(|a| a["type"] == kind)
        .filter(|a| {
            a["object"]["id"]
                .as_str()
                .is_some_and(|id| id.contains("/occurrences/"))
        })
        .collect()
}

/// Waits until the server's worker has run every seats-left job, then returns what was
/// published after `after`.
fn after_seats_jobs(server: &TestServer, after: i64) -> anyhow::Result<(i64, Vec<Value>)> {
    let mut conn = server.db.connect()?;
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        let open: i64 = jobs::table
            .filter(jobs::kind.eq(refresh::SEATS_KIND))
            .filter(jobs::state.ne_all(["done", "dead"]))
            .count()
            .get_result(&mut conn)?;
        let ran: i64 = jobs::table
            .filter(jobs::kind.eq(refresh::SEATS_KIND))
            .count()
            .get_result(&mut conn)?;
        if open == 0 && ran > 0 {
            return published_since(server, after);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "seats-left jobs still open after 30 s"
        );
        std::thread::sleep(StdDuration::from_millis(100));
    }
}

fn book(server: &TestServer, event: i64, recurrence_id: &str, who: &str) -> anyhow::Result<i64> {
    let reply = server.send_json(
        "POST",
        &format!(
            "/api/v1/events/{event}/occurrences/{}/bookings",
            compact(recurrence_id)
        ),
        &json!({"attendee": who}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()?["booking"]["id"]
        .as_i64()
        .context("booking id")
}

fn delete(server: &TestServer, path: &str) -> anyhow::Result<u16> {
    let result = agent()
        .delete(&server.url(path))
        .set("Authorization", &format!("Bearer {}", server.token))
        .call();
    Ok(common::Reply::from_result(result)?.status)
}

/// Returns the recurrence id of an occurrence object, compact as in its id (`20270105T180000Z`).
fn compact(recurrence_id: &str) -> String {
    recurrence_id.replace(['-', ':'], "")
}

#[expect(
    clippy::too_many_lines,
    reason = "one series through its life, each step building on the one before"
)]
fn series_goes_out_as_occurrences(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let monday = next_monday();
    let series_body = json!({
        "title": "Rehearsal",
        "start": format!("{monday}T19:00:00"),
        "zone": "Europe/Berlin",
        "duration": "PT2H",
        "rrule": "FREQ=WEEKLY;COUNT=4",
        "capacity": 2,
    });
    let reply = server.send_json("POST", "/api/v1/calendars/choir/events", &series_body)?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().context("event id")?;

    // Create of the series, then of each occurrence, with its own key and seats.
    let (cursor, sent) = published_since(&server, 0)?;
    let series_id = format!("{}/events/{id}", server.base);
    assert_eq!(sent.len(), 5, "{sent:#?}");
    assert_eq!(sent[0]["type"], "Create");
    assert_eq!(sent[0]["object"]["id"], series_id.as_str());
    let created = about_occurrences(&sent, "Create");
    assert_eq!(created.len(), 4);
    let mut keys = Vec::new();
    for activity in &created {
        let object = &activity["object"];
        assert_eq!(object["rose:series"], series_id.as_str());
        assert_eq!(object["remainingAttendeeCapacity"], 2);
        assert_eq!(object["status"], "CONFIRMED");
        let key = object["rose:recurrenceId"]
            .as_str()
            .context("rose:recurrenceId")?
            .to_owned();
        assert_eq!(
            object["id"],
            format!("{series_id}/occurrences/{}", compact(&key)).as_str()
        );
        keys.push(key);
    }
    keys.sort();
    let ids: Vec<String> = keys
        .iter()
        .map(|k| format!("{series_id}/occurrences/{}", compact(k)))
        .collect();

    // Moving the second occurrence updates that occurrence object and no other.
    let second_day = monday + Duration::days(7);
    let reply = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/overrides/{}", keys[1]),
        &json!({"start": format!("{second_day}T21:00:00")}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (cursor, sent) = published_since(&server, cursor)?;
    let updated = about_occurrences(&sent, "Update");
    assert_eq!(updated.len(), 1, "{sent:#?}");
    assert_eq!(updated[0]["object"]["id"], ids[1].as_str());
    assert_eq!(updated[0]["object"]["rose:recurrenceId"], keys[1].as_str());
    let moved_start = updated[0]["object"]["startTime"]
        .as_str()
        .unwrap_or_default();
    assert!(moved_start.contains("T21:00:00"), "{moved_start}");
    assert!(about_occurrences(&sent, "Create").is_empty());
    assert!(about_occurrences(&sent, "Delete").is_empty());

    // Excluding the third occurrence deletes its object.
    let mut excluded = series_body.clone();
    excluded["exdate"] = json!([keys[2]]);
    let reply = server.send_json("PUT", &format!("/api/v1/events/{id}"), &excluded)?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (cursor, sent) = published_since(&server, cursor)?;
    let deleted = about_occurrences(&sent, "Delete");
    assert_eq!(deleted.len(), 1, "{sent:#?}");
    assert_eq!(deleted[0]["object"]["id"], ids[2].as_str());
    assert_eq!(deleted[0]["object"]["type"], "Tombstone");
    assert!(about_occurrences(&sent, "Update").is_empty(), "{sent:#?}");

    // Filling the first occurrence: the two bookings end in one Update with no seat left.
    book(&server, id, &keys[0], "ada@example.org")?;
    let bob = book(&server, id, &keys[0], "bob@example.org")?;
    let (cursor, sent) = after_seats_jobs(&server, cursor)?;
    let updated = about_occurrences(&sent, "Update");
    assert_eq!(updated.len(), 1, "{sent:#?}");
    assert_eq!(updated[0]["object"]["id"], ids[0].as_str());
    assert_eq!(updated[0]["object"]["remainingAttendeeCapacity"], 0);
    assert_eq!(
        sent.len(),
        1,
        "only the filled occurrence changed: {sent:#?}"
    );

    // Cancelling a booking reopens it.
    assert_eq!(delete(&server, &format!("/api/v1/bookings/{bob}"))?, 200);
    let (cursor, sent) = after_seats_jobs(&server, cursor)?;
    let updated = about_occurrences(&sent, "Update");
    assert_eq!(updated.len(), 1, "{sent:#?}");
    assert_eq!(updated[0]["object"]["remainingAttendeeCapacity"], 1);
    let first_version = updated[0]["id"].as_str().unwrap_or_default();
    assert!(first_version.starts_with(&ids[0]), "{first_version}");

    // Deleting the event deletes the series and every occurrence object peers hold.
    assert_eq!(delete(&server, &format!("/api/v1/events/{id}"))?, 204);
    let (_, sent) = published_since(&server, cursor)?;
    let mut deleted: Vec<&str> = about_occurrences(&sent, "Delete")
        .iter()
        .filter_map(|a| a["object"]["id"].as_str())
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, [ids[0].as_str(), ids[1].as_str(), ids[3].as_str()]);
    assert!(
        sent.iter()
            .any(|a| a["type"] == "Delete" && a["object"]["id"] == series_id.as_str())
    );
    Ok(())
}

fn one_off_event_reports_seats_left(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let day = next_monday();
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/choir/events",
        &json!({
            "title": "Concert",
            "start": format!("{day}T20:00:00"),
            "zone": "Europe/Berlin",
            "duration": "PT2H",
            "capacity": 1,
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().context("event id")?;
    let (cursor, sent) = published_since(&server, 0)?;
    assert_eq!(sent.len(), 1, "a one-off event is one object: {sent:#?}");
    assert_eq!(sent[0]["object"]["remainingAttendeeCapacity"], 1);

    let key = sent[0]["object"]["startTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .context("startTime")?
        .to_utc()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    book(&server, id, &key, "ada@example.org")?;
    let (_, sent) = after_seats_jobs(&server, cursor)?;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["type"], "Update");
    assert_eq!(
        sent[0]["object"]["id"],
        format!("{}/events/{id}", server.base).as_str()
    );
    assert_eq!(sent[0]["object"]["remainingAttendeeCapacity"], 0);
    Ok(())
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

fn horizon_run_publishes_new_occurrences(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let calendar = store::insert_calendar(
        &mut conn,
        &rose_events::calendar::NewCalendar {
            slug: "choir".to_owned(),
            name: "Choir".to_owned(),
            default_zone: chrono_tz::Europe::Berlin,
            visibility: rose_events::calendar::Visibility::Public,
        },
    )?;
    // Weekly on Mondays at 19:00 UTC from 2030-01-07, twenty times.
    let event = NewEvent {
        uid: "weekly@test".to_owned(),
        details: EventDetails {
            title: "Weekly".to_owned(),
            ..EventDetails::default()
        },
        schedule: Schedule {
            start: at("2030-01-07T19:00:00Z").naive_utc(),
            basis: TimeBasis::Utc,
            length: EventLength {
                days: 0,
                seconds: 3600,
            },
            rrule: Some("FREQ=WEEKLY;COUNT=20".to_owned()),
            rdates: Vec::new(),
            exdates: Vec::new(),
        },
        capacity: None,
        overrides: Vec::new(),
    };
    let stored = store::insert_event(&mut conn, calendar.id, &event)?;
    let public_url = "https://events.example";
    let publisher = publish::publisher(&mut conn, public_url, &stored, "choir")?;

    // Announced through the API today, years before its first occurrence, then published on
    // 2030-01-01: the Mondays up to 60 days ahead, 2030-01-07 to 2030-02-25.
    publish::event_changed(
        &mut conn,
        public_url,
        &stored,
        "choir",
        publish::Change::Created,
    )?;
    let first = series::sync(&mut conn, &publisher, &stored, at("2030-01-01T10:00:00Z"))?;
    assert_eq!(first.created, 8);

    // Three weeks later the hourly run adds the Mondays that came within 60 days and leaves the
    // ones that ended alone.
    let pool = rose_events::db::create_pool(&db.url, 2)?;
    let later = at("2030-01-22T10:00:00Z");
    refresh::schedule_horizon(&mut conn, later - Duration::minutes(30))?;
    let clock = Arc::new(FixedClock::new(later));
    let mut handlers = Handlers::default();
    handlers.insert(
        HORIZON_KIND,
        Arc::new(HorizonHandler::new(pool.clone(), public_url.to_owned())),
    );
    let worker = Worker::new(pool, handlers, clock, WorkerSettings::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    assert_eq!(runtime.block_on(worker.run_once())?, 1);

    let activities: Vec<Value> = outbox::since(&mut conn, 0, 500)?
        .into_iter()
        .map(|r| r.activity)
        .collect();
    let created: Vec<&str> = about_occurrences(&activities, "Create")
        .iter()
        .filter_map(|a| a["object"]["rose:recurrenceId"].as_str())
        .collect();
    assert_eq!(created.len(), 11, "{created:?}");
    assert_eq!(
        &created[8..],
        [
            "2030-03-04T19:00:00Z",
            "2030-03-11T19:00:00Z",
            "2030-03-18T19:00:00Z"
        ]
    );
    assert!(about_occurrences(&activities, "Delete").is_empty());
    assert!(about_occurrences(&activities, "Update").is_empty());

    // Exactly one next run is pending, at the next hour.
    let pending: Vec<queue::Job> = queue::list(&mut conn, Some(queue::JobState::Pending), 100)?
        .into_iter()
        .filter(|job| job.kind == HORIZON_KIND)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].run_at.and_utc(), at("2030-01-22T11:00:00Z"));
    Ok(())
}

/// Builds a weekly series as a rose-events peer publishes it, starting on `monday` at 19:00 Berlin.
fn series_object(peer: &FakePeer, n: u32, monday: NaiveDate, name: &str, updated: &str) -> Value {
    json!({
        "id": format!("{}/events/{n}", peer.base),
        "type": "Event",
        "name": name,
        "startTime": format!("{monday}T19:00:00+01:00"),
        "endTime": format!("{monday}T21:00:00+01:00"),
        "timezone": "Europe/Berlin",
        "rose:rrule": "FREQ=WEEKLY;COUNT=3",
        "rose:dtstart": format!("{monday}T19:00:00"),
        "updated": updated,
    })
}

/// Builds the occurrence object of series `n` originally at `day` 19:00 Berlin, moved to 21:00.
fn moved_occurrence(peer: &FakePeer, n: u32, day: NaiveDate, updated: &str) -> Value {
    let key = format!("{day}T18:00:00Z");
    json!({
        "id": format!("{}/events/{n}/occurrences/{}", peer.base, compact(&key)),
        "type": "Event",
        "name": "Jam",
        "startTime": format!("{day}T21:00:00+01:00"),
        "endTime": format!("{day}T23:00:00+01:00"),
        "timezone": "Europe/Berlin",
        "remainingAttendeeCapacity": 3,
        "rose:series": format!("{}/events/{n}", peer.base),
        "rose:recurrenceId": key,
        "updated": updated,
    })
}

fn activity(peer: &FakePeer, kind: &str, tag: &str, object: &Value) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/activities/{tag}", peer.base),
        "type": kind,
        "actor": format!("{}/users/org", peer.base),
        "object": object,
    })
}

fn send(server: &TestServer, activity: &Value) -> anyhow::Result<()> {
    let reply = deliver(server, "/inbox", activity)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    Ok(())
}

/// Lists the agenda entries of series `n` of `peer` from `monday` on, as (start_utc, title).
fn listed(
    server: &TestServer,
    peer: &FakePeer,
    n: u32,
    monday: NaiveDate,
) -> anyhow::Result<Vec<(String, String)>> {
    let to = monday + Duration::days(30);
    let reply = server.get(&format!(
        "/api/v1/agenda?from={monday}&to={to}&zone=Europe/Berlin"
    ))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let series_id = format!("{}/events/{n}", peer.base);
    let prefix = format!("{series_id}/");
    Ok(reply.json()?["occurrences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e["uid"]
                .as_str()
                .is_some_and(|uid| uid == series_id || uid.starts_with(&prefix))
        })
        .map(|e| {
            let start = e["start_utc"].as_str().unwrap_or_default().to_owned();
            (start, e["title"].as_str().unwrap_or_default().to_owned())
        })
        .collect())
}

fn starts(entries: &[(String, String)]) -> Vec<&str> {
    entries.iter().map(|(start, _)| start.as_str()).collect()
}

fn receiver_merges_occurrence_objects(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    let out = run_cli(&server.db, &["peer", "trust", &peer.domain])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In winter, so Berlin is UTC+1 on every date below.
    let monday = NaiveDate::from_isoywd_opt(Utc::now().year() + 1, 2, chrono::Weekday::Mon)
        .context("a Monday next January")?;
    let second = monday + Duration::days(7);
    let third = monday + Duration::days(14);
    let expected_moved = [
        format!("{monday}T18:00:00Z"),
        format!("{second}T20:00:00Z"),
        format!("{third}T18:00:00Z"),
    ];

    // The series, then its second occurrence moved two hours later.
    let series = series_object(&peer, 1, monday, "Jam", "2026-01-01T00:00:00Z");
    send(&server, &activity(&peer, "Create", "1", &series))?;
    let occurrence = moved_occurrence(&peer, 1, second, "2026-01-02T00:00:00Z");
    send(&server, &activity(&peer, "Create", "2", &occurrence))?;
    let entries = listed(&server, &peer, 1, monday)?;
    assert_eq!(starts(&entries), expected_moved);

    // An Update of the series re-expands it around the moved occurrence.
    let renamed = series_object(&peer, 1, monday, "Jam session", "2026-01-03T00:00:00Z");
    send(&server, &activity(&peer, "Update", "3", &renamed))?;
    let entries = listed(&server, &peer, 1, monday)?;
    assert_eq!(starts(&entries), expected_moved);
    assert!(entries.iter().all(|(_, title)| title == "Jam session"));

    // A late copy older than the stored occurrence is ignored.
    let mut older = moved_occurrence(&peer, 1, second, "2026-01-01T12:00:00Z");
    older["startTime"] = json!(format!("{second}T10:00:00+01:00"));
    send(&server, &activity(&peer, "Update", "4", &older))?;
    assert_eq!(starts(&listed(&server, &peer, 1, monday)?), expected_moved);

    // A Delete of the occurrence object removes that occurrence only.
    let tombstone = json!({
        "id": format!("{}/events/1/occurrences/{}", peer.base, compact(&format!("{second}T18:00:00Z"))),
        "type": "Tombstone",
        "deleted": "2026-01-04T00:00:00Z",
    });
    send(&server, &activity(&peer, "Delete", "5", &tombstone))?;
    let entries = listed(&server, &peer, 1, monday)?;
    assert_eq!(starts(&entries), [&expected_moved[0], &expected_moved[2]]);

    // An occurrence that arrives before its series is folded in when the series comes.
    let early = moved_occurrence(&peer, 2, second, "2026-01-02T00:00:00Z");
    send(&server, &activity(&peer, "Create", "6", &early))?;
    assert_eq!(
        starts(&listed(&server, &peer, 2, monday)?),
        [&expected_moved[1]]
    );
    let series = series_object(&peer, 2, monday, "Jam", "2026-01-01T00:00:00Z");
    send(&server, &activity(&peer, "Create", "7", &series))?;
    assert_eq!(starts(&listed(&server, &peer, 2, monday)?), expected_moved);
    Ok(())
}

on_both_backends!(
    series_goes_out_as_occurrences,
    one_off_event_reports_seats_left,
    horizon_run_publishes_new_occurrences,
    receiver_merges_occurrence_objects,
);
