#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Booking over HTTP against real server processes, on both backends.

mod common;

use std::sync::{Arc, Barrier};

use common::{Backend, Reply, TestServer, agent, run_cli};
use serde_json::{Value, json};

const CLIENTS: usize = 64;

/// Creates a calendar (once) and a one-off UTC event; returns the bookings path of its
/// occurrence.
fn occurrence(server: &TestServer, start: &str, capacity: Option<i64>) -> anyhow::Result<String> {
    let _ = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "club", "name": "Club", "default_zone": "UTC"}),
    )?;
    let mut body = json!({"title": "Workshop", "start": start, "duration": "PT1H", "zone": "UTC"});
    if let Some(capacity) = capacity {
        body["capacity"] = json!(capacity);
    }
    let reply = server.send_json("POST", "/api/v1/calendars/club/events", &body)?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().unwrap();
    let recurrence_id = start.replace(['-', ':'], "") + "00Z";
    Ok(format!("/api/v1/events/{id}/occurrences/{recurrence_id}"))
}

fn post(base: &str, token: &str, path: &str, body: &Value, key: Option<&str>) -> Reply {
    let mut request = agent()
        .post(&format!("{base}{path}"))
        .set("Authorization", &format!("Bearer {token}"));
    if let Some(key) = key {
        request = request.set("Idempotency-Key", key);
    }
    Reply::from_result(request.send_json(body.clone())).expect("server answers")
}

fn book(server: &TestServer, path: &str, body: &Value, key: Option<&str>) -> Reply {
    post(
        &server.base,
        &server.token,
        &format!("{path}/bookings"),
        body,
        key,
    )
}

fn delete(server: &TestServer, path: &str) -> Reply {
    Reply::from_result(
        agent()
            .delete(&server.url(path))
            .set("Authorization", &format!("Bearer {}", server.token))
            .call(),
    )
    .expect("server answers")
}

fn get_auth(server: &TestServer, path: &str) -> Value {
    let reply = Reply::from_result(
        agent()
            .get(&server.url(path))
            .set("Authorization", &format!("Bearer {}", server.token))
            .call(),
    )
    .expect("server answers");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json().unwrap()
}

fn verify_ledger_clean(server: &TestServer) -> anyhow::Result<()> {
    let output = run_cli(&server.db, &["verify-ledger"])?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "verify-ledger failed: {text}");
    assert!(text.contains(": 0 differences"), "{text}");
    Ok(())
}

/// Sends one booking per base URL in `bases` (round robin) from `CLIENTS` threads released
/// together; returns the statuses and bodies.
fn stampede(server: &TestServer, bases: &[String], path: &str) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let base = bases[i % bases.len()].clone();
            let token = server.token.clone();
            let path = format!("{path}/bookings");
            std::thread::spawn(move || {
                let body = json!({"attendee": format!("person{i:02}@example.org")});
                barrier.wait();
                let reply = post(&base, &token, &path, &body, Some(&format!("k{i}")));
                (reply.status, reply.json().unwrap())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn check_exactly_ten(
    server: &TestServer,
    path: &str,
    replies: &[(u16, Value)],
) -> anyhow::Result<()> {
    let booked = replies.iter().filter(|(s, _)| *s == 201).count();
    let full = replies
        .iter()
        .filter(|(s, b)| *s == 409 && b["verdict"] == "full")
        .count();
    assert_eq!(booked, 10, "exactly the capacity is booked");
    assert_eq!(full, CLIENTS - 10, "everyone else hears full: {replies:?}");
    let seats = get_auth(server, &format!("{path}/bookings"));
    assert_eq!(seats["seats_taken"], 10);
    assert_eq!(seats["seats_left"], 0);
    verify_ledger_clean(server)
}

fn sixty_four_clients_get_ten_seats(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-10T10:00", Some(10))?;
    let replies = stampede(&server, std::slice::from_ref(&server.base), &path);
    check_exactly_ten(&server, &path, &replies)
}

fn two_processes_share_ten_seats(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let second = server.another_process()?;
    let path = occurrence(&server, "2031-01-11T10:00", Some(10))?;
    let replies = stampede(&server, &[server.base.clone(), second.base.clone()], &path);
    check_exactly_ten(&server, &path, &replies)
}

fn double_click_books_once(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-12T10:00", Some(10))?;
    let body = json!({"attendee": "ada@example.org", "seats": 2});
    let barrier = Arc::new(Barrier::new(2));
    let clicks: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let (base, token, path, body) = (
                server.base.clone(),
                server.token.clone(),
                path.clone(),
                body.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                post(
                    &base,
                    &token,
                    &format!("{path}/bookings"),
                    &body,
                    Some("click-1"),
                )
            })
        })
        .collect();
    let replies: Vec<Reply> = clicks.into_iter().map(|h| h.join().unwrap()).collect();
    for reply in &replies {
        // The second click either arrives after the first finished and gets its result, or
        // gets 409 because the first is still running.
        assert!(reply.status == 201 || reply.status == 409, "{}", reply.body);
    }
    assert!(replies.iter().any(|r| r.status == 201));

    let seats = get_auth(&server, &format!("{path}/bookings"));
    assert_eq!(seats["seats_taken"], 2, "one booking of two seats");
    assert_eq!(seats["bookings"].as_array().unwrap().len(), 1);

    let again = book(&server, &path, &body, Some("click-1"));
    let first = replies.iter().find(|r| r.status == 201).unwrap();
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "a repeat gets the first result");

    let other = book(
        &server,
        &path,
        &json!({"attendee": "ada@example.org", "seats": 3}),
        Some("click-1"),
    );
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.json()?["field"], "Idempotency-Key");
    assert_eq!(
        get_auth(&server, &format!("{path}/bookings"))["seats_taken"],
        2
    );
    verify_ledger_clean(&server)
}

fn overlapping_occurrences_booked_at_once(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let first = occurrence(&server, "2031-01-13T10:00", Some(10))?;
    let second = occurrence(&server, "2031-01-13T10:30", Some(10))?;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .map(|path| {
            let barrier = Arc::clone(&barrier);
            let (base, token) = (server.base.clone(), server.token.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post(
                    &base,
                    &token,
                    &format!("{path}/bookings"),
                    &json!({"attendee": "bo"}),
                    None,
                )
            })
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&201) && statuses.contains(&409),
        "{statuses:?}"
    );
    let refused = replies.iter().find(|r| r.status == 409).unwrap().json()?;
    assert_eq!(refused["verdict"], "conflict");
    assert_eq!(refused["reasons"][0], "overlaps_booking");
    verify_ledger_clean(&server)
}

fn group_larger_than_seats_left_writes_nothing(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-14T10:00", Some(5))?;
    let first = book(&server, &path, &json!({"attendee": "cy", "seats": 3}), None);
    assert_eq!(first.status, 201, "{}", first.body);
    let group = book(
        &server,
        &path,
        &json!({"attendee": "di", "seats": 3, "waitlist": false}),
        Some("g"),
    );
    assert_eq!(group.status, 409, "{}", group.body);
    assert_eq!(group.content_type, "application/problem+json");
    let body = group.json()?;
    assert_eq!(body["verdict"], "full");
    assert_eq!(body["reasons"], json!(["capacity_reached"]));
    assert_eq!(body["seats"]["seats_left"], 2);
    assert_eq!(body["changed"], false);

    let seats = get_auth(&server, &format!("{path}/bookings"));
    assert_eq!(seats["seats_taken"], 3);
    assert_eq!(
        seats["bookings"].as_array().unwrap().len(),
        1,
        "nothing written"
    );
    let output = run_cli(&server.db, &["verify-ledger"])?;
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 ledger entries"));
    // A refusal is not stored under its key: the same request is decided again later.
    let retry = book(
        &server,
        &path,
        &json!({"attendee": "di", "seats": 3, "waitlist": false}),
        Some("g"),
    );
    assert_eq!(retry.status, 409);
    Ok(())
}

fn cancel_twice_frees_once(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-15T10:00", Some(1))?;
    let booked = book(&server, &path, &json!({"attendee": "mara"}), None);
    let id = booked.json()?["booking"]["id"].as_i64().unwrap();
    assert_eq!(
        book(
            &server,
            &path,
            &json!({"attendee": "omar", "waitlist": false}),
            None
        )
        .status,
        409
    );

    let first = delete(&server, &format!("/api/v1/bookings/{id}"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()?["changed"], true);
    let second = delete(&server, &format!("/api/v1/bookings/{id}"));
    assert_eq!(second.status, 200);
    assert_eq!(second.json()?["changed"], false);
    assert_eq!(
        get_auth(&server, &format!("{path}/bookings"))["seats_taken"],
        0
    );

    assert_eq!(
        book(&server, &path, &json!({"attendee": "omar"}), None).status,
        201
    );
    assert_eq!(
        book(
            &server,
            &path,
            &json!({"attendee": "pia", "waitlist": false}),
            None
        )
        .status,
        409
    );
    assert_eq!(delete(&server, "/api/v1/bookings/999999").status, 404);
    verify_ledger_clean(&server)
}

fn waitlist_promotes_in_arrival_order(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-16T10:00", Some(1))?;
    let event_id = path.split('/').nth(4).unwrap();
    let settings = server.send_json(
        "PUT",
        &format!("/api/v1/events/{event_id}/booking-settings"),
        &json!({"waitlist": true}),
    )?;
    assert_eq!(settings.status, 200, "{}", settings.body);
    let first = book(&server, &path, &json!({"attendee": "ana"}), None);
    let ana = first.json()?["booking"]["id"].as_i64().unwrap();
    let ben = book(&server, &path, &json!({"attendee": "ben"}), None);
    assert_eq!(ben.status, 202, "{}", ben.body);
    assert_eq!(ben.json()?["verdict"], "waitlisted");
    let cy = book(&server, &path, &json!({"attendee": "cy"}), None);
    assert_eq!(cy.status, 202);

    let cancelled = delete(&server, &format!("/api/v1/bookings/{ana}"))
        .json()
        .unwrap();
    let ben_id = ben.json()?["booking"]["id"].as_i64().unwrap();
    assert_eq!(
        cancelled["promoted"],
        json!([ben_id]),
        "the first in line moves up"
    );
    let ben_now = get_auth(&server, &format!("/api/v1/bookings/{ben_id}"));
    assert_eq!(ben_now["state"], "booked");
    let cy_id = cy.json()?["booking"]["id"].as_i64().unwrap();
    assert_eq!(
        get_auth(&server, &format!("/api/v1/bookings/{cy_id}"))["state"],
        "waitlisted"
    );

    // Raising the occurrence's own capacity promotes the next one.
    let raised = server.send_json("PUT", &format!("{path}/capacity"), &json!({"capacity": 2}))?;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.json()?["promoted"], json!([cy_id]));
    let lowered = server.send_json("PUT", &format!("{path}/capacity"), &json!({"capacity": 1}))?;
    assert_eq!(lowered.status, 422);
    assert_eq!(lowered.json()?["limit"], "at least 2");
    verify_ledger_clean(&server)
}

fn hold_confirms_only_while_live(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-17T10:00", Some(1))?;
    let hold = book(
        &server,
        &path,
        &json!({"attendee": "rosa", "hold_seconds": 1}),
        None,
    );
    assert_eq!(hold.status, 201, "{}", hold.body);
    assert_eq!(hold.json()?["verdict"], "held");
    let hold_id = hold.json()?["booking"]["id"].as_i64().unwrap();
    let blocked = book(
        &server,
        &path,
        &json!({"attendee": "sami", "waitlist": false}),
        None,
    );
    assert_eq!(blocked.status, 409, "a live hold counts against capacity");

    std::thread::sleep(std::time::Duration::from_millis(1_300));
    let confirm_path = format!("/api/v1/holds/{hold_id}/confirm");
    let late = post(
        &server.base,
        &server.token,
        &confirm_path,
        &json!({"order": "o-1"}),
        None,
    );
    assert_eq!(late.status, 409, "{}", late.body);
    assert_eq!(late.json()?["reasons"][0], "hold_expired");
    assert_eq!(
        book(&server, &path, &json!({"attendee": "sami"}), None).status,
        201
    );

    let second = book(
        &server,
        &occurrence(&server, "2031-01-17T12:00", Some(1))?,
        &json!({"attendee": "tom", "hold_seconds": 600}),
        None,
    );
    let second_id = second.json()?["booking"]["id"].as_i64().unwrap();
    let confirm_path = format!("/api/v1/holds/{second_id}/confirm");
    let confirmed = post(
        &server.base,
        &server.token,
        &confirm_path,
        &json!({"order": "o-2"}),
        Some("c-2"),
    );
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.json()?["booking"]["state"], "booked");
    assert_eq!(confirmed.json()?["booking"]["order_ref"], "o-2");
    let repeated = post(
        &server.base,
        &server.token,
        &confirm_path,
        &json!({"order": "o-2"}),
        Some("c-2"),
    );
    assert_eq!(repeated.body, confirmed.body);
    let again = post(
        &server.base,
        &server.token,
        &confirm_path,
        &json!({"order": "o-2"}),
        None,
    );
    assert_eq!(again.status, 409, "a booked hold cannot be confirmed twice");
    verify_ledger_clean(&server)
}

fn bad_booking_input_is_named_and_writes_nothing(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let path = occurrence(&server, "2031-01-18T10:00", Some(5))?;
    let long = "a".repeat(201);
    let cases = [
        (json!({"attendee": "ok", "seats": 0}), None, "seats", "1000"),
        (
            json!({"attendee": "ok", "seats": 1001}),
            None,
            "seats",
            "1000",
        ),
        (
            json!({"attendee": "a/b"}),
            None,
            "attendee",
            "200 characters",
        ),
        (
            json!({"attendee": long}),
            None,
            "attendee",
            "200 characters",
        ),
        (
            json!({"attendee": "ok", "hold_seconds": 86_401}),
            None,
            "hold_seconds",
            "86400",
        ),
        (
            json!({"attendee": "ok"}),
            Some("x".repeat(256)),
            "Idempotency-Key",
            "255",
        ),
    ];
    for (body, key, field, limit) in cases {
        let reply = book(&server, &path, &body, key.as_deref());
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json");
        let problem = reply.json()?;
        assert_eq!(problem["field"], field, "{problem}");
        assert_eq!(
            problem["limit"].to_string().trim_matches('"'),
            limit,
            "{problem}"
        );
        assert!(problem["value"].is_string());
    }
    let malformed = book(
        &server,
        &path,
        &json!({"attendee": "ok", "seats": "two"}),
        None,
    );
    // A wrong type names the field and the value, like every other bad field.
    assert_eq!(malformed.status, 422, "{}", malformed.body);
    let problem = malformed.json()?;
    assert_eq!(problem["field"], "seats", "{problem}");
    assert_eq!(problem["value"], "two", "{problem}");
    let bad_id = book(
        &server,
        "/api/v1/events/1/occurrences/tomorrow",
        &json!({"attendee": "ok"}),
        None,
    );
    assert_eq!(bad_id.status, 422);
    assert_eq!(bad_id.json()?["field"], "recurrence_id");
    let not_real = book(
        &server,
        &path.replace("100000Z", "100100Z"),
        &json!({"attendee": "ok"}),
        None,
    );
    assert_eq!(not_real.status, 404, "{}", not_real.body);
    let no_event = book(
        &server,
        "/api/v1/events/999999/occurrences/20310118T100000Z",
        &json!({"attendee": "ok"}),
        None,
    );
    assert_eq!(no_event.status, 404);
    let no_token = Reply::from_result(
        agent()
            .post(&server.url(&format!("{path}/bookings")))
            .send_json(json!({"attendee": "ok"})),
    )?;
    assert_eq!(no_token.status, 401);

    let output = run_cli(&server.db, &["verify-ledger"])?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("0 ledger entries, 0 bookings, 0 occurrences"),
        "{text}"
    );
    Ok(())
}

fn cancelled_occurrence_is_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "club", "name": "Club", "default_zone": "UTC"}),
    )?;
    let created = server.send_json(
        "POST",
        "/api/v1/calendars/club/events",
        &json!({"title": "Weekly", "start": "2031-02-03T18:00", "duration": "PT1H",
                "rrule": "FREQ=WEEKLY;COUNT=4", "capacity": 3}),
    )?;
    let id = created.json()?["id"].as_i64().unwrap();
    let cancel = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/overrides/2031-02-10T18:00"),
        &json!({"cancelled": true}),
    )?;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let path = format!("/api/v1/events/{id}/occurrences/20310210T180000Z");
    let reply = book(&server, &path, &json!({"attendee": "eve"}), None);
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.json()?["verdict"], "rejected");
    assert_eq!(reply.json()?["reasons"][0], "occurrence_cancelled");
    let next = format!("/api/v1/events/{id}/occurrences/20310217T180000Z");
    assert_eq!(
        book(&server, &next, &json!({"attendee": "eve"}), None).status,
        201
    );
    verify_ledger_clean(&server)
}

fn availability_lists_busy_and_explains_verdict(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start(backend)?;
    let morning = occurrence(&server, "2031-03-01T09:00", Some(5))?;
    let late_morning = occurrence(&server, "2031-03-01T09:30", Some(5))?;
    assert_eq!(
        book(&server, &morning, &json!({"attendee": "fay"}), None).status,
        201
    );
    let block = server.send_json(
        "POST",
        "/api/v1/attendees/fay/busy",
        &json!({"start": "2031-03-01T14:00:00Z", "end": "2031-03-01T15:00:00Z", "label": "dentist"}),
    )?;
    assert_eq!(block.status, 201, "{}", block.body);

    let event_id = late_morning.split('/').nth(4).unwrap();
    let query = format!(
        "/api/v1/availability?attendee=fay&from=2031-03-01T00:00:00Z&to=2031-03-02T00:00:00Z\
         &event={event_id}&occurrence=20310301T093000Z"
    );
    let first = get_auth(&server, &query);
    let busy = first["busy"].as_array().unwrap();
    assert_eq!(busy.len(), 2, "{first}");
    assert_eq!(busy[0]["start"], "2031-03-01T09:00:00Z");
    assert_eq!(busy[0]["kind"], "booking");
    assert_eq!(busy[1]["kind"], "busy_block");
    assert_eq!(first["candidate"]["verdict"], "conflict");
    assert_eq!(first["candidate"]["reasons"], json!(["overlaps_booking"]));
    assert_eq!(
        get_auth(&server, &query),
        first,
        "the same facts give the same answer"
    );

    let too_long = Reply::from_result(
        agent()
            .get(&server.url("/api/v1/availability?attendee=fay&from=2031-01-01T00:00:00Z&to=2033-01-01T00:00:00Z"))
            .set("Authorization", &format!("Bearer {}", server.token))
            .call(),
    )?;
    assert_eq!(too_long.status, 422);
    assert_eq!(too_long.json()?["limit"], "400 days");
    Ok(())
}

on_both_backends!(
    sixty_four_clients_get_ten_seats,
    two_processes_share_ten_seats,
    double_click_books_once,
    overlapping_occurrences_booked_at_once,
    group_larger_than_seats_left_writes_nothing,
    cancel_twice_frees_once,
    waitlist_promotes_in_arrival_order,
    hold_confirms_only_while_live,
    bad_booking_input_is_named_and_writes_nothing,
    cancelled_occurrence_is_rejected,
    availability_lists_busy_and_explains_verdict,
);
