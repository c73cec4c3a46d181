#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! The HTTP API over a real server process, on both backends.

mod common;

use common::{Backend, TestServer};
use serde_json::{Value, json};

fn create_calendar(server: &TestServer, slug: &str, zone: &str) -> anyhow::Result<()> {
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": slug, "name": format!("{slug} events"), "default_zone": zone}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(())
}

fn create_event(server: &TestServer, slug: &str, body: &Value) -> anyhow::Result<Value> {
    let reply = server.send_json("POST", &format!("/api/v1/calendars/{slug}/events"), body)?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()
}

fn agenda(server: &TestServer, query: &str) -> anyhow::Result<Value> {
    let reply = server.get(&format!("/api/v1/agenda?{query}"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn starts(agenda: &Value) -> Vec<String> {
    agenda["occurrences"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|o| o["start"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn writes_need_a_token(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let reply = common::Reply::from_result(
        common::agent()
            .post(&server.url("/api/v1/calendars"))
            .send_json(json!({"slug": "x", "name": "X"})),
    )?;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.content_type, "application/problem+json");
    let listed = server.get("/api/v1/calendars")?.json()?;
    assert_eq!(listed, json!([]), "nothing was written");
    Ok(())
}

fn weekly_event_appears_in_agenda_in_its_zone(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "choir", "Europe/Paris")?;
    create_event(
        &server,
        "choir",
        &json!({
            "title": "Chorale",
            "start": "2024-10-21T18:30",
            "duration": "PT1H30M",
            "rrule": "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6",
            "exdate": ["2024-10-30T18:30", "2024-11-04T17:30:00Z", "2024-10-23T18:00"],
        }),
    )?;
    let listed = agenda(&server, "from=2024-10-01T00:00:00Z&to=2024-12-01T00:00:00Z")?;
    assert_eq!(
        starts(&listed),
        [
            "2024-10-21T18:30:00+02:00",
            "2024-10-23T18:30:00+02:00",
            "2024-10-28T18:30:00+01:00",
            "2024-11-06T18:30:00+01:00",
        ]
    );
    let first = &listed["occurrences"][0];
    assert_eq!(first["start_utc"], "2024-10-21T16:30:00Z");
    assert_eq!(first["end_utc"], "2024-10-21T18:00:00Z");
    assert_eq!(first["zone"], "Europe/Paris");
    Ok(())
}

fn agenda_is_sorted_half_open_and_repeatable(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "club", "UTC")?;
    for (title, start) in [
        ("b", "2026-05-01T10:00"),
        ("a", "2026-05-01T10:00"),
        ("c", "2026-05-01T09:00"),
        ("edge", "2026-05-02T00:00"),
    ] {
        create_event(
            &server,
            "club",
            &json!({"title": title, "start": start, "duration": "PT1H"}),
        )?;
    }
    let query = "from=2026-05-01T00:00:00Z&to=2026-05-02T00:00:00Z&calendar=club";
    let first = server.get(&format!("/api/v1/agenda?{query}"))?;
    let titles: Vec<String> = first.json()?["occurrences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Equal starts are ordered by event id, which follows creation order; the end is excluded.
    assert_eq!(titles, ["c", "b", "a"]);
    let second = server.get(&format!("/api/v1/agenda?{query}"))?;
    assert_eq!(
        first.body, second.body,
        "identical input gives identical bytes"
    );
    Ok(())
}

fn bad_input_names_field_value_and_limit(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "limits", "UTC")?;
    let long_title = "x".repeat(501);
    let cases = [
        (
            json!({"title": long_title, "start": "2026-05-01T10:00"}),
            "title",
            "500",
        ),
        (
            json!({"title": "t", "start": "2026-05-01T10:00", "zone": "Mars/Olympus"}),
            "zone",
            "IANA",
        ),
        (
            json!({"title": "t", "start": "yesterday"}),
            "start",
            "date-time",
        ),
        (
            json!({"title": "t", "start": "2026-05-01T10:00", "duration": "PT1X"}),
            "duration",
            "ISO 8601",
        ),
        (
            json!({"title": "t", "start": "2026-05-01T10:00", "capacity": -1}),
            "capacity",
            "between",
        ),
        (
            json!({"title": "t", "start": "2026-05-01T10:00", "rrule": "FREQ=DAILY;INTERVAL=0"}),
            "rrule",
            "",
        ),
        (
            json!({"title": "t", "start": "2026-05-01T10:00", "rrule": "FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z"}),
            "rrule",
            "",
        ),
        (
            json!({"title": "t", "start": "2026-05-01T10:00", "rrule": format!("FREQ=DAILY;BYHOUR={}", "1,".repeat(600))}),
            "rrule",
            "1000",
        ),
    ];
    for (body, field, hint) in cases {
        let reply = server.send_json("POST", "/api/v1/calendars/limits/events", &body)?;
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json");
        let problem = reply.json()?;
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            problem["problem"]
                .as_str()
                .unwrap_or_default()
                .contains(hint),
            "{problem}"
        );
    }
    let events = server.get("/api/v1/calendars/limits/events")?.json()?;
    assert_eq!(events, json!([]), "no rejected event was written");
    Ok(())
}

fn oversized_body_is_rejected_with_413(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "big", "UTC")?;
    let response = server.announce_body(
        "/api/v1/calendars/big/events",
        "application/json",
        300 * 1024,
    )?;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let body = &response[response.find("\r\n\r\n").map_or(0, |at| at + 4)..];
    let problem: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(problem["limit"], 256 * 1024);
    assert_eq!(problem["field"], "body");
    Ok(())
}

fn agenda_window_limits_are_enforced(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    for (query, field) in [
        ("from=2026-01-01T00:00:00Z&to=2028-01-01T00:00:00Z", "to"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("from=soon&to=2026-01-01T00:00:00Z", "from"),
        ("from=2026-01-01&to=2026-01-02&zone=Nowhere/City", "zone"),
    ] {
        let reply = server.get(&format!("/api/v1/agenda?{query}"))?;
        assert_eq!(reply.status, 422, "{query}: {}", reply.body);
        assert_eq!(reply.json()?["field"], field);
    }
    Ok(())
}

fn override_cancels_and_moves_single_occurrences(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "yoga", "Europe/Berlin")?;
    let event = create_event(
        &server,
        "yoga",
        &json!({"title": "Yoga", "start": "2026-06-01T08:00", "duration": "PT1H",
                "rrule": "FREQ=DAILY;COUNT=5"}),
    )?;
    let id = event["id"].as_i64().unwrap_or_default();
    let cancel = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/overrides/2026-06-02T06:00:00Z"),
        &json!({"cancelled": true}),
    )?;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let moved = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/overrides/2026-06-03T08:00"),
        &json!({"start": "2026-06-03T18:00", "title": "Evening yoga"}),
    )?;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let listed = agenda(&server, "from=2026-06-01&to=2026-06-10&zone=Europe/Berlin")?;
    assert_eq!(
        starts(&listed),
        [
            "2026-06-01T08:00:00+02:00",
            "2026-06-03T18:00:00+02:00",
            "2026-06-04T08:00:00+02:00",
            "2026-06-05T08:00:00+02:00",
        ]
    );
    assert_eq!(listed["occurrences"][1]["title"], "Evening yoga");
    assert_eq!(listed["occurrences"][1]["overridden"], true);
    let with_cancelled = agenda(
        &server,
        "from=2026-06-01&to=2026-06-10&zone=Europe/Berlin&include_cancelled=true",
    )?;
    assert_eq!(starts(&with_cancelled).len(), 5);
    Ok(())
}

fn all_day_event_keeps_its_date_for_every_viewer(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "market", "America/Los_Angeles")?;
    create_event(
        &server,
        "market",
        &json!({"title": "Marché bio", "start": "2025-02-12", "all_day": true,
                "rrule": "FREQ=WEEKLY;COUNT=8"}),
    )?;
    for zone in [
        "America/Los_Angeles",
        "Europe/Berlin",
        "Pacific/Auckland",
        "UTC",
    ] {
        let all = agenda(
            &server,
            &format!("from=2025-02-01&to=2025-05-01&zone={zone}"),
        )?;
        assert_eq!(
            starts(&all),
            [
                "2025-02-12",
                "2025-02-19",
                "2025-02-26",
                "2025-03-05",
                "2025-03-12",
                "2025-03-19",
                "2025-03-26",
                "2025-04-02",
            ],
            "viewer in {zone}"
        );
        let one_day = agenda(
            &server,
            &format!("from=2025-03-12&to=2025-03-13&zone={zone}"),
        )?;
        assert_eq!(starts(&one_day), ["2025-03-12"], "viewer in {zone}");
    }
    Ok(())
}

fn unlisted_calendar_stays_out_of_the_shared_agenda(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "private-ish", "name": "Quiet", "visibility": "unlisted"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    create_event(
        &server,
        "private-ish",
        &json!({"title": "Hidden", "start": "2026-01-05T10:00"}),
    )?;
    let shared = agenda(&server, "from=2026-01-01&to=2026-02-01")?;
    assert_eq!(starts(&shared).len(), 0);
    let direct = agenda(
        &server,
        "from=2026-01-01&to=2026-02-01&calendar=private-ish",
    )?;
    assert_eq!(starts(&direct).len(), 1);
    assert_eq!(server.get("/api/v1/calendars")?.json()?, json!([]));
    Ok(())
}

fn activitypub_view_states_time_zone_and_place(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "meetups", "Europe/Vienna")?;
    let event = create_event(
        &server,
        "meetups",
        &json!({
            "title": "Stammtisch",
            "description": "Bring <friends> & snacks",
            "start": "2035-05-06T18:00",
            "end": "2035-05-06T21:00",
            "capacity": 40,
            "place": {"name": "Gasthaus Zum Hirschen", "street": "Hauptplatz 1",
                      "locality": "Wien", "postal_code": "1010", "country": "AT",
                      "latitude": 48.21, "longitude": 16.37},
            "online_url": "https://stream.example.org/stammtisch",
        }),
    )?;
    let id = event["id"].as_i64().unwrap_or_default();
    let reply = server.get_accept(&format!("/events/{id}"), "application/activity+json")?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.content_type.starts_with("application/activity+json"));
    let object = reply.json()?;
    assert_eq!(object["type"], "Event");
    assert_eq!(object["id"], server.url(&format!("/events/{id}")));
    assert_eq!(object["startTime"], "2035-05-06T18:00:00+02:00");
    assert_eq!(object["endTime"], "2035-05-06T21:00:00+02:00");
    assert_eq!(object["timezone"], "Europe/Vienna");
    assert_eq!(object["status"], "CONFIRMED");
    assert_eq!(object["maximumAttendeeCapacity"], 40);
    assert_eq!(object["location"]["type"], "Place");
    assert_eq!(object["location"]["address"]["type"], "PostalAddress");
    assert_eq!(object["location"]["address"]["addressLocality"], "Wien");
    assert_eq!(object["attachment"][0]["mediaType"], "text/html");
    assert_eq!(
        object["content"],
        "<p>Bring &lt;friends&gt; &amp; snacks</p>"
    );
    let summary = object["summary"].as_str().unwrap_or_default();
    for part in [
        "6 May 2035",
        "18:00",
        "Europe/Vienna",
        "+02:00",
        "Gasthaus Zum Hirschen",
    ] {
        assert!(summary.contains(part), "summary {summary:?} lacks {part:?}");
    }
    let profile = "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"";
    assert_eq!(
        server.get_accept(&format!("/events/{id}"), profile)?.status,
        200
    );
    let browser = server.get_accept(&format!("/events/{id}"), "text/html")?;
    assert_eq!(browser.status, 303);
    assert_eq!(
        browser.location.as_deref(),
        Some(format!("/api/v1/events/{id}").as_str())
    );
    Ok(())
}

fn recurring_event_publishes_each_occurrence(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    create_calendar(&server, "series", "Europe/Berlin")?;
    let event = create_event(
        &server,
        "series",
        &json!({"title": "Weekly", "start": "2035-01-01T19:00", "duration": "PT2H",
                "rrule": "FREQ=WEEKLY;COUNT=3"}),
    )?;
    let id = event["id"].as_i64().unwrap_or_default();
    let series = server
        .get_accept(&format!("/events/{id}"), "application/activity+json")?
        .json()?;
    assert_eq!(series["rose:rrule"], "FREQ=WEEKLY;COUNT=3");
    assert_eq!(series["startTime"], "2035-01-01T19:00:00+01:00");
    let path = format!("/events/{id}/occurrences/20350108T180000Z");
    let reply = server.get_accept(&path, "application/activity+json")?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let occurrence = reply.json()?;
    assert_eq!(occurrence["startTime"], "2035-01-08T19:00:00+01:00");
    assert_eq!(
        occurrence["rose:series"],
        server.url(&format!("/events/{id}"))
    );
    let missing = server.get_accept(
        &format!("/events/{id}/occurrences/20350109T180000Z"),
        "application/activity+json",
    )?;
    assert_eq!(missing.status, 404);
    Ok(())
}

fn unknown_routes_answer_problem_json(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let reply = server.get("/api/v1/nothing-here")?;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.content_type, "application/problem+json");
    let reply = server.get("/api/v1/events/999999")?;
    assert_eq!(reply.status, 404);
    Ok(())
}

on_both_backends!(
    writes_need_a_token,
    weekly_event_appears_in_agenda_in_its_zone,
    agenda_is_sorted_half_open_and_repeatable,
    bad_input_names_field_value_and_limit,
    oversized_body_is_rejected_with_413,
    agenda_window_limits_are_enforced,
    override_cancels_and_moves_single_occurrences,
    all_day_event_keeps_its_date_for_every_viewer,
    unlisted_calendar_stays_out_of_the_shared_agenda,
    activitypub_view_states_time_zone_and_place,
    recurring_event_publishes_each_occurrence,
    unknown_routes_answer_problem_json,
);
