#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Input that used to cost the server a panic, a 500, a long lock or a wrong result. Each test
//! names the behaviour that holds now.

mod common;

use common::{Backend, Reply, TestServer, agent};
use serde_json::{Value, json};

fn create_calendar(server: &TestServer, slug: &str) -> anyhow::Result<()> {
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": slug, "name": slug, "default_zone": "UTC"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(())
}

fn post_event(server: &TestServer, slug: &str, body: &Value) -> anyhow::Result<Reply> {
    server.send_json("POST", &format!("/api/v1/calendars/{slug}/events"), body)
}

fn assert_rejected(reply: &Reply, status: u16, field: &str) -> anyhow::Result<()> {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.json()?["field"], field, "{}", reply.body);
    Ok(())
}

fn occurrence_count(server: &TestServer, query: &str) -> anyhow::Result<usize> {
    let reply = server.get(&format!("/api/v1/agenda?{query}"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(reply.json()?["occurrences"].as_array().map_or(0, Vec::len))
}

fn costly_rules_are_rejected_at_creation(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "rules")?;
    for rule in [
        // A counted series is walked from its first instance, so COUNT is bounded.
        "FREQ=SECONDLY;COUNT=4000000000",
        // 30 February never happens: every window would search in vain.
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    ] {
        let reply = post_event(
            &server,
            "rules",
            &json!({"title": "t", "start": "2026-01-01T10:00", "rrule": rule}),
        )?;
        assert_rejected(&reply, 422, "rrule")?;
    }
    assert_eq!(
        occurrence_count(&server, "from=2026-01-01&to=2027-01-01")?,
        0
    );
    Ok(())
}

fn times_outside_years_1_to_9999_are_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "years")?;
    for (body, field) in [
        (
            json!({"title": "t", "start": "+262142-12-31T23:00", "duration": "P1D"}),
            "start",
        ),
        (
            json!({"title": "t", "start": "-262143-01-01T00:00"}),
            "start",
        ),
        (json!({"title": "t", "start": "0000-06-01T00:00"}), "start"),
        (
            json!({"title": "t", "start": "9999-12-31T20:00", "duration": "P2D"}),
            "end",
        ),
        (
            json!({"title": "t", "start": "2026-01-01T10:00:00.5"}),
            "start",
        ),
    ] {
        let reply = post_event(&server, "years", &body)?;
        assert_rejected(&reply, 422, field)?;
    }
    let listed = server.get("/api/v1/calendars/years/events")?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()?["events"].as_array().map_or(0, Vec::len), 0);
    Ok(())
}

fn last_hours_of_year_9999_are_listed(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "edge")?;
    let reply = post_event(
        &server,
        "edge",
        &json!({"title": "last", "start": "9999-12-31T08:00"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    for to in [
        "9999-12-31T08:59:59Z",
        "9999-12-31T09:00:00Z",
        "9999-12-31T23:00:00Z",
    ] {
        let query = format!("calendar=edge&from=9999-12-31T00:00:00Z&to={to}");
        assert_eq!(occurrence_count(&server, &query)?, 1, "to={to}");
    }
    Ok(())
}

fn dense_rule_fills_the_window_itself(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "dense")?;
    let reply = post_event(
        &server,
        "dense",
        &json!({"title": "tick", "start": "2026-01-01T00:00", "rrule": "FREQ=MINUTELY"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = server.get("/api/v1/agenda?calendar=dense&from=2026-06-01&to=2026-06-02")?;
    let page = reply.json()?;
    let first = page["occurrences"][0]["start_utc"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(first, "2026-06-01T00:00:00Z");
    assert_eq!(page["occurrences"].as_array().map_or(0, Vec::len), 1440);
    assert_eq!(page["truncated"], false);
    Ok(())
}

fn override_must_name_a_real_occurrence(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "weekly")?;
    let reply = post_event(
        &server,
        "weekly",
        &json!({"title": "Tuesdays", "start": "2026-05-05T19:00", "rrule": "FREQ=WEEKLY"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().unwrap_or_default();
    for missing in ["2026-05-06T19:00", "2020-05-05T19:00", "2026-05-12T19:30"] {
        let reply = server.send_json(
            "PUT",
            &format!("/api/v1/events/{id}/overrides/{missing}"),
            &json!({"cancelled": true}),
        )?;
        assert_eq!(reply.status, 404, "{missing}: {}", reply.body);
    }
    let reply = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/overrides/2026-05-12T19:00"),
        &json!({"title": "x".repeat(501)}),
    )?;
    assert_rejected(&reply, 422, "title")?;
    let reply = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/overrides/2026-05-12T19:00"),
        &json!({"cancelled": true}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(())
}

fn summary_escapes_html_from_the_event(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "html")?;
    let reply = post_event(
        &server,
        "html",
        &json!({"title": "t", "start": "2026-03-01T10:00",
                "location": "<img src=x onerror=alert(1)>"}),
    )?;
    let id = reply.json()?["id"].as_i64().unwrap_or_default();
    let reply = server.get_accept(&format!("/events/{id}"), "application/activity+json")?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let summary = reply.json()?["summary"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!summary.contains("<img"), "{summary}");
    assert!(summary.contains("&lt;img src=x"), "{summary}");
    Ok(())
}

fn control_characters_in_text_are_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "text")?;
    let reply = post_event(
        &server,
        "text",
        &json!({"title": "a\u{0}b", "start": "2026-03-01T10:00"}),
    )?;
    assert_rejected(&reply, 422, "title")?;
    Ok(())
}

fn ics_quirks_of_real_exporters_import(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let file = "\u{feff}BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\n\
        BEGIN:VEVENT\r\nUID:untitled@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
        DTSTART:20260301T100000Z\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:daily@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
        DTSTART:20260302T090000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\n\
        EXDATE;VALUE=DATE:20260303\r\nSUMMARY:Stand-up\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let reply = server.upload_ics("quirks", file.as_bytes())?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()?["created"], 2);
    let page = server.get("/api/v1/agenda?calendar=quirks&from=2026-03-01&to=2026-04-01")?;
    let starts: Vec<String> = page.json()?["occurrences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["start_utc"].as_str().unwrap_or_default().to_owned())
        .collect();
    // The untitled event is kept; the DATE exclusion removes the 3 March stand-up.
    assert_eq!(
        starts,
        [
            "2026-03-01T10:00:00Z",
            "2026-03-02T09:00:00Z",
            "2026-03-04T09:00:00Z"
        ]
    );
    Ok(())
}

fn this_and_future_override_is_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let file = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\n\
        BEGIN:VEVENT\r\nUID:s@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
        DTSTART:20260302T090000Z\r\nRRULE:FREQ=DAILY;COUNT=5\r\nSUMMARY:s\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:s@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
        RECURRENCE-ID;RANGE=THISANDFUTURE:20260304T090000Z\r\n\
        DTSTART:20260304T100000Z\r\nSUMMARY:later\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let reply = server.upload_ics("future", file.as_bytes())?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("THISANDFUTURE"), "{}", reply.body);
    let calendars = server.get("/api/v1/calendars/future")?;
    assert_eq!(calendars.status, 404, "{}", calendars.body);
    Ok(())
}

fn http_edges_answer_problem_json(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "edges")?;

    let lower = agent()
        .post(&server.url("/api/v1/calendars"))
        .set("Authorization", &format!("bearer {}", server.token))
        .send_json(json!({"slug": "lower", "name": "lower"}));
    assert_eq!(Reply::from_result(lower)?.status, 201);

    let head = agent().head(&server.url("/calendars/edges.ics")).call();
    let head = Reply::from_result(head)?;
    assert_eq!(head.status, 200);
    assert!(head.content_type.starts_with("text/calendar"), "{head:?}");

    let reply = server.get("/api/v1/events/99999999999999999999")?;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json");

    let response = server.announce_body(
        "/api/v1/calendars/edges/import",
        "text/calendar",
        8 * 1024 * 1024 + 1,
    )?;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(response.contains("\"limit\":8388608"), "{response}");
    Ok(())
}

fn floating_times_go_out_with_the_calendar_offset(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "berlin", "name": "Berlin", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    for (body, start) in [
        (
            json!({"title": "f", "start": "2026-07-01T19:00", "floating": true}),
            "2026-07-01T19:00:00+02:00",
        ),
        (
            json!({"title": "d", "start": "2026-07-01", "all_day": true}),
            "2026-07-01T00:00:00+02:00",
        ),
    ] {
        let created = post_event(&server, "berlin", &body)?;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.json()?["id"].as_i64().unwrap_or_default();
        let reply = server.get_accept(&format!("/events/{id}"), "application/activity+json")?;
        let object = reply.json()?;
        assert_eq!(object["startTime"], start, "{object}");
        assert_eq!(object["timezone"], "Europe/Berlin", "{object}");
    }
    Ok(())
}

fn wrong_json_types_name_the_field(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "club")?;
    let reply = post_event(
        &server,
        "club",
        &json!({"title": "Talk", "start": "2027-01-01T10:00:00", "capacity": "ten"}),
    )?;
    assert_rejected(&reply, 422, "capacity")?;
    assert_eq!(reply.json()?["value"], "ten", "{}", reply.body);
    let reply = post_event(
        &server,
        "club",
        &json!({"title": ["Talk"], "start": "2027-01-01T10:00:00"}),
    )?;
    assert_rejected(&reply, 422, "title")?;
    assert_eq!(
        occurrence_count(&server, "from=2026-12-01&to=2027-12-01")?,
        0,
        "nothing was written"
    );
    Ok(())
}

/// A GET with the write token, decoded as JSON.
fn authed_json(server: &TestServer, path: &str) -> anyhow::Result<Value> {
    let reply = agent()
        .get(&server.url(path))
        .set("Authorization", &format!("Bearer {}", server.token))
        .call()?;
    Ok(reply.into_json()?)
}

fn missing_json_fields_are_named(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "club")?;
    let reply = post_event(
        &server,
        "club",
        &json!({"title": "Talk", "start": "2027-01-01T10:00:00", "capacity": 4}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let event = reply.json()?["id"].as_i64().expect("event id");
    let occurrence = format!("/api/v1/events/{event}/occurrences/20270101T100000Z");
    let reply = server.send_json(
        "PUT",
        &format!("{occurrence}/capacity"),
        &json!({"capacity": 2}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Each case is "METHOD path", a body that lacks one required field, and that field.
    let cases = [
        ("POST /api/v1/calendars", json!({"slug": "x"}), "name"),
        (
            "POST /api/v1/calendars/club/events",
            json!({"start": "2027-01-01T10:00:00"}),
            "title",
        ),
        (
            "POST {occurrence}/bookings",
            json!({"seats": 1}),
            "attendee",
        ),
        ("PUT {occurrence}/capacity", json!({}), "capacity"),
        ("POST /api/v1/holds/1/confirm", json!({}), "order"),
        ("POST /api/v1/peers", json!({"trust": true}), "domain"),
        (
            "PUT /api/v1/peers/events.example",
            json!({"reason": "spam"}),
            "state",
        ),
        ("POST /api/v1/people/ana/reminders", json!({}), "event_id"),
        (
            "POST /api/v1/people/ana/rsvps",
            json!({"occurrence": "2027-01-01"}),
            "remote_event_id",
        ),
        (
            "POST /api/v1/calendars/club/followers/decision",
            json!({"accept": true}),
            "actor",
        ),
    ];
    for (route, body, field) in cases {
        let route = route.replace("{occurrence}", &occurrence);
        let (method, path) = route.split_once(' ').expect("METHOD path");
        let reply = server.send_json(method, path, &body)?;
        assert_rejected(&reply, 422, field)?;
        let problem = reply.json()?;
        assert_eq!(problem["value"], "", "{method} {path}: {problem}");
        assert!(
            problem["problem"]
                .as_str()
                .is_some_and(|p| p.contains("missing field")),
            "{method} {path}: {problem}"
        );
    }

    // Nothing was written: no calendar, no event, no peer, and the capacity override stays.
    let calendars = server.get("/api/v1/calendars")?.json()?;
    assert_eq!(calendars.as_array().map(Vec::len), Some(1), "{calendars}");
    assert_eq!(
        occurrence_count(&server, "from=2026-12-01&to=2027-12-01")?,
        1
    );
    let seats = authed_json(&server, &format!("{occurrence}/bookings"))?;
    assert_eq!(seats["capacity_override"], 2, "{seats}");
    assert_eq!(seats["bookings"], json!([]), "{seats}");
    let peers = authed_json(&server, "/api/v1/peers")?;
    assert_eq!(peers["peers"], json!([]), "{peers}");

    // An explicit null still returns the occurrence to the event's capacity.
    let reply = server.send_json(
        "PUT",
        &format!("{occurrence}/capacity"),
        &json!({"capacity": null}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(())
}

on_both_backends!(
    missing_json_fields_are_named,
    wrong_json_types_name_the_field,
    floating_times_go_out_with_the_calendar_offset,
    costly_rules_are_rejected_at_creation,
    times_outside_years_1_to_9999_are_rejected,
    last_hours_of_year_9999_are_listed,
    dense_rule_fills_the_window_itself,
    override_must_name_a_real_occurrence,
    summary_escapes_html_from_the_event,
    control_characters_in_text_are_rejected,
    ics_quirks_of_real_exporters_import,
    this_and_future_override_is_rejected,
    http_edges_answer_problem_json,
);
