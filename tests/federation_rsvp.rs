//! RSVPs across servers, with fake peers on 127.0.0.1. A remote `Join` goes through the
//! booking function and gets `Accept`, `TentativeAccept` (waitlisted) or `Reject` with the
//! reason. `Leave` and `Undo` give the seat up, and a `TentativeAccept` of the event takes no
//! seat. Replies go to the person alone.

mod common;

use anyhow::Context;
use common::peer::{FakePeer, deliver};
use common::{Backend, TestServer};
use rose_events::federation::outbox;
use serde_json::{Value, json};

const START: &str = "2027-03-03T18:00:00";
const RECURRENCE_ID: &str = "20270303T170000Z";

fn start(backend: Backend) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with_env(
        backend,
        &[("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")],
    )?;
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "club", "name": "Club", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(server)
}

/// Creates a one-off event with `capacity` seats and returns its id.
fn event(server: &TestServer, capacity: i32, waitlist: bool) -> anyhow::Result<i64> {
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/club/events",
        &json!({
            "title": "Workshop",
            "start": START,
            "zone": "Europe/Berlin",
            "duration": "PT2H",
            "capacity": capacity,
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().context("event id")?;
    let reply = server.send_json(
        "PUT",
        &format!("/api/v1/events/{id}/booking-settings"),
        &json!({"waitlist": waitlist}),
    )?;
    assert!(reply.status < 300, "{}", reply.body);
    Ok(id)
}

fn join(peer: &FakePeer, server: &TestServer, person: &str, n: u32, event: i64) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/{person}/joins/{n}", peer.base),
        "type": "Join",
        "actor": format!("{}/users/{person}", peer.base),
        "object": format!("{}/events/{event}", server.base),
    })
}

fn activity(peer: &FakePeer, person: &str, kind: &str, n: u32, object: &Value) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/{person}/{}/{n}", peer.base, kind.to_ascii_lowercase()),
        "type": kind,
        "actor": format!("{}/users/{person}", peer.base),
        "object": object,
    })
}

/// Returns our replies addressed to `person`, oldest first.
fn replies_to(server: &TestServer, person: &str) -> anyhow::Result<Vec<outbox::Recorded>> {
    let mut conn = server.db.connect()?;
    let all = outbox::since(&mut conn, 0, 1000)?;
    Ok(all
        .into_iter()
        .filter(|r| {
            r.activity["to"].as_array().is_some_and(|to| {
                to.iter().any(|t| {
                    t.as_str()
                        .is_some_and(|t| t.ends_with(&format!("/users/{person}")))
                })
            })
        })
        .collect())
}

fn seats_taken(server: &TestServer, event: i64) -> anyhow::Result<i64> {
    let reply = server.send(
        "GET",
        &format!("/api/v1/events/{event}/occurrences/{RECURRENCE_ID}/bookings"),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()?["seats_taken"].as_i64().context("seats_taken")
}

fn rsvps(server: &TestServer, event: i64) -> anyhow::Result<Vec<Value>> {
    let reply = server.send("GET", &format!("/api/v1/events/{event}/rsvps"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(reply.json()?["rsvps"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn state_of(server: &TestServer, event: i64, person: &str) -> anyhow::Result<String> {
    let listed = rsvps(server, event)?;
    let row = listed
        .iter()
        .find(|r| {
            r["actor"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!("/users/{person}")))
        })
        .with_context(|| format!("no RSVP of {person} in {listed:?}"))?;
    Ok(row["state"].as_str().unwrap_or_default().to_owned())
}

fn full_event_rejects_join_with_reason(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    for person in ["alice", "bob"] {
        peer.add_actor(&format!("/users/{person}"), "Person");
    }
    let event = event(&server, 1, false)?;

    let reply = deliver(&server, "/inbox", &join(&peer, &server, "alice", 1, event))?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let to_alice = replies_to(&server, "alice")?;
    assert_eq!(to_alice.len(), 1, "{to_alice:?}");
    let accept = &to_alice[0];
    assert_eq!(accept.activity["type"], "Accept");
    assert_eq!(
        accept.activity["object"]["id"],
        format!("{}/alice/joins/1", peer.base)
    );
    assert_eq!(
        accept.activity["actor"],
        format!("{}/calendars/club", server.base)
    );
    assert_eq!(
        accept.recipients,
        vec![format!("{}/users/alice/inbox", peer.base)],
        "the answer goes to the person alone"
    );
    assert_eq!(seats_taken(&server, event)?, 1);
    assert_eq!(state_of(&server, event, "alice")?, "booked");

    let reply = deliver(&server, "/inbox", &join(&peer, &server, "bob", 1, event))?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let to_bob = replies_to(&server, "bob")?;
    assert_eq!(to_bob.len(), 1);
    let reject = &to_bob[0].activity;
    assert_eq!(reject["type"], "Reject");
    let reason = reject["content"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Workshop") && reason.contains("full"),
        "{reason}"
    );
    assert!(reason.contains("no waitlist"), "{reason}");
    assert!(
        !reject.to_string().contains("alice"),
        "no other attendee is named: {reject}"
    );
    assert_eq!(seats_taken(&server, event)?, 1);
    assert_eq!(state_of(&server, event, "bob")?, "refused");

    // Alice leaves; Bob's second Join gets the seat. A repeated Join takes no second seat.
    let leave = activity(
        &peer,
        "alice",
        "Leave",
        1,
        &json!(format!("{}/events/{event}", server.base)),
    );
    assert_eq!(deliver(&server, "/inbox", &leave)?.status, 202);
    assert_eq!(seats_taken(&server, event)?, 0);
    assert_eq!(state_of(&server, event, "alice")?, "left");
    assert_eq!(
        deliver(&server, "/inbox", &join(&peer, &server, "bob", 2, event))?.status,
        202
    );
    assert_eq!(
        deliver(&server, "/inbox", &join(&peer, &server, "bob", 3, event))?.status,
        202
    );
    let kinds: Vec<Value> = replies_to(&server, "bob")?
        .iter()
        .map(|r| r.activity["type"].clone())
        .collect();
    assert_eq!(kinds, vec!["Reject", "Accept", "Accept"]);
    assert_eq!(seats_taken(&server, event)?, 1);

    // The published event contains no attendee.
    let object = server.get_accept(&format!("/events/{event}"), "application/activity+json")?;
    assert_eq!(object.status, 200, "{}", object.body);
    assert!(!object.body.contains("bob"), "{}", object.body);
    assert!(!object.body.contains("alice"), "{}", object.body);
    Ok(())
}

fn waitlisted_join_promoted_later(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    for person in ["carol", "dave"] {
        peer.add_actor(&format!("/users/{person}"), "Person");
    }
    let event = event(&server, 1, true)?;
    let carol_join = join(&peer, &server, "carol", 1, event);
    assert_eq!(deliver(&server, "/inbox", &carol_join)?.status, 202);
    let reply = deliver(&server, "/inbox", &join(&peer, &server, "dave", 1, event))?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let to_dave = replies_to(&server, "dave")?;
    assert_eq!(to_dave.len(), 1, "{}", reply.body);
    assert_eq!(to_dave[0].activity["type"], "TentativeAccept");
    assert_eq!(to_dave[0].activity["rose:waitlisted"], true);
    let text = to_dave[0].activity["content"].as_str().unwrap_or_default();
    assert!(text.contains("waitlist"), "{text}");
    assert_eq!(state_of(&server, event, "dave")?, "waitlisted");

    // Carol undoes her Join by id alone; Dave moves up and gets an Accept.
    let undo = activity(&peer, "carol", "Undo", 1, &json!(carol_join["id"]));
    assert_eq!(deliver(&server, "/inbox", &undo)?.status, 202);
    assert_eq!(state_of(&server, event, "carol")?, "left");
    assert_eq!(state_of(&server, event, "dave")?, "booked");
    let to_dave = replies_to(&server, "dave")?;
    assert_eq!(to_dave.len(), 2);
    assert_eq!(to_dave[1].activity["type"], "Accept");
    assert_eq!(seats_taken(&server, event)?, 1);
    Ok(())
}

fn tentative_rsvp_takes_no_seat(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/erin", "Person");
    let event = event(&server, 5, false)?;
    let object = json!(format!("{}/events/{event}", server.base));

    // Accept of the Event means going, TentativeAccept means maybe, Reject means not going.
    let going = activity(&peer, "erin", "Accept", 1, &object);
    let reply = deliver(&server, "/inbox", &going)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(seats_taken(&server, event)?, 1, "{}", reply.body);
    let maybe = activity(&peer, "erin", "TentativeAccept", 1, &object);
    assert_eq!(deliver(&server, "/inbox", &maybe)?.status, 202);
    assert_eq!(state_of(&server, event, "erin")?, "tentative");
    assert_eq!(seats_taken(&server, event)?, 0);
    let no = activity(&peer, "erin", "Reject", 1, &object);
    assert_eq!(deliver(&server, "/inbox", &no)?.status, 202);
    assert_eq!(state_of(&server, event, "erin")?, "left");
    assert_eq!(seats_taken(&server, event)?, 0);
    Ok(())
}

fn organizer_cancel_sends_reject(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let frank = peer.add_actor("/users/frank", "Person");
    let event = event(&server, 5, false)?;
    assert_eq!(
        deliver(&server, "/inbox", &join(&peer, &server, "frank", 1, event))?.status,
        202
    );
    let listed = rsvps(&server, event)?;
    let booking = listed[0]["booking_id"].as_i64().context("booking id")?;
    assert!(
        listed[0]["attendee"]
            .as_str()
            .is_some_and(|a| a.starts_with("ap:frank@")),
        "{listed:?}"
    );
    let reply = server.send("DELETE", &format!("/api/v1/bookings/{booking}"))?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let to_frank = replies_to(&server, "frank")?;
    let last = &to_frank.last().context("a reply")?.activity;
    assert_eq!(last["type"], "Reject", "{last}");
    assert_eq!(state_of(&server, event, "frank")?, "refused");

    // The worker delivers both replies to Frank's inbox.
    let inbox_path = format!("{}/inbox", frank.trim_start_matches(&peer.base));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while peer
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.target == inbox_path)
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "answers not delivered: {:?}",
            peer.seen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

fn join_of_unknown_event_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/gina", "Person");
    let reply = deliver(&server, "/inbox", &join(&peer, &server, "gina", 1, 999))?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let to_gina = replies_to(&server, "gina")?;
    assert_eq!(to_gina.len(), 1);
    assert_eq!(to_gina[0].activity["type"], "Reject");
    assert_eq!(
        to_gina[0].activity["actor"],
        format!("{}/actor", server.base)
    );
    Ok(())
}

fn api_rejects_remote_attendee_prefix(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let event = event(&server, 5, false)?;
    let reply = server.send_json(
        "POST",
        &format!("/api/v1/events/{event}/occurrences/{RECURRENCE_ID}/bookings"),
        &json!({"attendee": "ap:mallory@elsewhere.example"}),
    )?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("attendee"), "{}", reply.body);
    Ok(())
}

fn unreadable_recurrence_id_books_no_occurrence(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/ivy", "Person");
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/club/events",
        &json!({
            "title": "Choir",
            "start": START,
            "zone": "Europe/Berlin",
            "duration": "PT2H",
            "rrule": "FREQ=WEEKLY",
            "capacity": 5,
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let series = reply.json()?["id"].as_i64().context("event id")?;
    let object = json!(format!("{}/events/{series}", server.base));

    for (n, recurrence_id) in [
        json!("next week"),
        json!("+262142-12-31T23:59:59Z"),
        json!(20_270_303),
    ]
    .into_iter()
    .enumerate()
    {
        let mut join = activity(&peer, "ivy", "Join", u32::try_from(n)?, &object);
        join["rose:recurrenceId"] = recurrence_id.clone();
        let reply = deliver(&server, "/inbox", &join)?;
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(
            reply.body.contains("rose:recurrenceId"),
            "{recurrence_id}: {}",
            reply.body
        );
        let answer = replies_to(&server, "ivy")?
            .pop()
            .context("an answer to the Join")?;
        assert_eq!(answer.activity["type"], "Reject", "{recurrence_id}");
    }
    assert_eq!(
        seats_taken(&server, series)?,
        0,
        "the next occurrence got no seat"
    );
    assert!(rsvps(&server, series)?.is_empty());

    // A Leave that names its occurrence unreadably gives up no seat either.
    let join = activity(&peer, "ivy", "Join", 9, &object);
    assert_eq!(deliver(&server, "/inbox", &join)?.status, 202);
    assert_eq!(seats_taken(&server, series)?, 1);
    let mut leave = activity(&peer, "ivy", "Leave", 1, &object);
    leave["rose:recurrenceId"] = json!("soon");
    assert_eq!(deliver(&server, "/inbox", &leave)?.status, 202);
    assert_eq!(seats_taken(&server, series)?, 1);
    assert_eq!(state_of(&server, series, "ivy")?, "booked");
    Ok(())
}

fn remote_event(peer: &FakePeer, kind: &str, start: &str, updated: &str) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/activities/{kind}-{updated}", peer.base),
        "type": kind,
        "actor": format!("{}/users/org", peer.base),
        "object": {
            "id": format!("{}/events/picnic", peer.base),
            "type": "Event",
            "name": "Picnic",
            "attributedTo": format!("{}/users/org", peer.base),
            "startTime": start,
            "timezone": "Europe/Paris",
            "updated": updated,
        }
    })
}

/// Sends Hana's RSVP to remote one-off event `remote_id` and returns the id of her Join.
fn hana_joins(server: &TestServer, remote_id: i64) -> anyhow::Result<String> {
    let reply = server.send_json(
        "POST",
        "/api/v1/people/hana/rsvps",
        &json!({"remote_event_id": remote_id}),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    Ok(reply.json()?["join_id"]
        .as_str()
        .context("join id")?
        .to_owned())
}

/// Hana's reminders for remote one-off event `remote_id`.
fn hana_reminders(
    server: &TestServer,
    remote_id: i64,
) -> anyhow::Result<Vec<rose_events::notify::reminders::ReminderStatus>> {
    let mut conn = server.db.connect()?;
    Ok(rose_events::notify::reminders::jobs_of(
        &mut conn,
        rose_events::notify::reminders::OccurrenceRef {
            event_id: remote_id,
            recurrence_id: None,
            remote: true,
        },
        "hana",
    )?)
}

/// Our person RSVPs to a one-off event of a peer that sends no recurrence, such as
/// Mobilizon. The organizer's Accept brings reminders, its Update moves them, its Delete
/// cancels the RSVP.
fn outgoing_rsvp_follows_organizer_changes(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let organizer = peer.add_actor("/users/org", "Person");
    let out = common::run_cli(&server.db, &["peer", "trust", &peer.domain])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let create = remote_event(
        &peer,
        "Create",
        "2027-05-01T12:00:00+02:00",
        "2027-01-01T00:00:00Z",
    );
    assert_eq!(deliver(&server, "/inbox", &create)?.status, 202);
    let listed = server
        .get("/api/v1/agenda?from=2027-04-01&to=2027-06-01")?
        .json()?;
    let remote_id = listed["occurrences"][0]["remote_event_id"]
        .as_i64()
        .context("remote_event_id")?;
    let reply = server.send_json(
        "PUT",
        "/api/v1/people/hana",
        &json!({"email": "hana@example.org", "channels": ["email"], "reminder_offsets_minutes": [1440]}),
    )?;
    assert!(reply.status < 300, "{}", reply.body);
    let wrong = server.send_json(
        "POST",
        "/api/v1/people/hana/rsvps",
        &json!({"remote_event_id": remote_id, "occurrence": "2020-01-01T00:00:00Z"}),
    )?;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert_eq!(wrong.json()?["field"], "occurrence", "{}", wrong.body);
    let join_id = hana_joins(&server, remote_id)?;

    // The Join reaches the organizer's inbox, signed by Hana's actor.
    let inbox = format!("{}/inbox", organizer.trim_start_matches(&peer.base));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let join = loop {
        if let Some(seen) = peer
            .seen()
            .into_iter()
            .find(|s| s.method == "POST" && s.target == inbox)
        {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Join delivered: {:?}",
            peer.seen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let join: Value = serde_json::from_str(&join.body)?;
    assert_eq!(join["type"], "Join");
    assert_eq!(join["actor"], format!("{}/people/hana", server.base));
    assert_eq!(join["object"], format!("{}/events/picnic", peer.base));

    let accept = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/accepts/1", peer.base),
        "type": "Accept",
        "actor": organizer,
        "object": join_id,
    });
    assert_eq!(deliver(&server, "/inbox", &accept)?.status, 202);
    let rsvps = server.send("GET", "/api/v1/people/hana/rsvps")?.json()?;
    assert_eq!(rsvps["rsvps"][0]["state"], "accepted", "{rsvps}");
    let first = hana_reminders(&server, remote_id)?;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].run_at.to_rfc3339(), "2027-04-30T10:00:00+00:00");

    // The organizer moves the picnic by two hours; the reminder follows.
    let update = remote_event(
        &peer,
        "Update",
        "2027-05-01T14:00:00+02:00",
        "2027-01-02T00:00:00Z",
    );
    assert_eq!(deliver(&server, "/inbox", &update)?.status, 202);
    let moved = hana_reminders(&server, remote_id)?;
    assert_eq!(moved[0].run_at.to_rfc3339(), "2027-04-30T12:00:00+00:00");

    // The organizer deletes it: the RSVP is cancelled and the reminder is gone.
    let delete = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/deletes/1", peer.base),
        "type": "Delete",
        "actor": organizer,
        "object": {"id": format!("{}/events/picnic", peer.base), "type": "Tombstone", "deleted": "2027-01-03T00:00:00Z"},
    });
    assert_eq!(deliver(&server, "/inbox", &delete)?.status, 202);
    assert!(hana_reminders(&server, remote_id)?.is_empty());
    let rsvps = server.send("GET", "/api/v1/people/hana/rsvps")?.json()?;
    assert_eq!(rsvps["rsvps"][0]["state"], "cancelled", "{rsvps}");
    Ok(())
}

/// Trusts `peer`, stores its one-off picnic as created by `/users/org` and returns the
/// picnic's remote event id.
fn trusted_picnic(server: &TestServer, peer: &FakePeer) -> anyhow::Result<i64> {
    let out = common::run_cli(&server.db, &["peer", "trust", &peer.domain])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let create = remote_event(
        peer,
        "Create",
        "2027-05-01T12:00:00+02:00",
        "2027-01-01T00:00:00Z",
    );
    let reply = deliver(server, "/inbox", &create)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let listed = server
        .get("/api/v1/agenda?from=2027-04-01&to=2027-06-01")?
        .json()?;
    listed["occurrences"]
        .as_array()
        .and_then(|all| all.iter().find_map(|o| o["remote_event_id"].as_i64()))
        .context("remote_event_id in the agenda")
}

fn late_response_to_deleted_event_ignored(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let organizer = peer.add_actor("/users/org", "Person");
    let remote_id = trusted_picnic(&server, &peer)?;
    let join_id = hana_joins(&server, remote_id)?;
    let delete = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/deletes/1", peer.base),
        "type": "Delete",
        "actor": organizer,
        "object": {"id": format!("{}/events/picnic", peer.base), "type": "Tombstone", "deleted": "2027-01-03T00:00:00Z"},
    });
    assert_eq!(deliver(&server, "/inbox", &delete)?.status, 202);

    // The organizer's responses arrive after the Delete. The inbox accepts them with 202 so
    // that the peer does not retry them.
    for (n, kind) in ["Accept", "TentativeAccept", "Reject"].iter().enumerate() {
        let answer = json!({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": format!("{}/answers/{n}", peer.base),
            "type": kind,
            "actor": organizer,
            "object": join_id,
        });
        let reply = deliver(&server, "/inbox", &answer)?;
        assert_eq!(reply.status, 202, "{kind}: {}", reply.body);
        assert!(reply.body.contains("ignored"), "{kind}: {}", reply.body);
    }
    let rsvps = server.send("GET", "/api/v1/people/hana/rsvps")?.json()?;
    assert_eq!(rsvps["rsvps"][0]["state"], "cancelled", "{rsvps}");
    assert!(hana_reminders(&server, remote_id)?.is_empty());
    Ok(())
}

fn rsvp_to_untrusted_server_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let organizer = peer.add_actor("/users/org", "Person");
    let remote_id = trusted_picnic(&server, &peer)?;
    for state in ["blocked", "pending"] {
        let reply = server.send_json(
            "PUT",
            &format!("/api/v1/peers/{}", peer.domain),
            &json!({"state": state}),
        )?;
        assert!(reply.status < 300, "{}", reply.body);
        let reply = server.send_json(
            "POST",
            "/api/v1/people/hana/rsvps",
            &json!({"remote_event_id": remote_id}),
        )?;
        assert_eq!(reply.status, 422, "{state}: {}", reply.body);
        let problem = reply.json()?;
        assert_eq!(problem["field"], "remote_event_id", "{problem}");
        assert!(
            problem["problem"]
                .as_str()
                .is_some_and(|p| p.contains(&peer.domain)),
            "{problem}"
        );
    }
    let rsvps = server.send("GET", "/api/v1/people/hana/rsvps")?.json()?;
    assert_eq!(rsvps["rsvps"], json!([]), "{rsvps}");
    let mut conn = server.db.connect()?;
    let joins: Vec<_> = outbox::since(&mut conn, 0, 1000)?
        .into_iter()
        .filter(|r| r.activity["type"] == "Join")
        .collect();
    assert!(joins.is_empty(), "no Join for {organizer}: {joins:?}");
    Ok(())
}

/// Creates a slot every 30 minutes from three days ago, so that about 150 slots have ended
/// within the look-back for running slots, and returns its id.
fn frequent_slots(server: &TestServer) -> anyhow::Result<i64> {
    let now = chrono::Utc::now();
    let first = now - chrono::Duration::days(3);
    let first = first
        .with_timezone(&chrono_tz::Europe::Berlin)
        .naive_local();
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/club/events",
        &json!({
            "title": "Climbing wall slot",
            "start": first.format("%Y-%m-%dT%H:00:00").to_string(),
            "zone": "Europe/Berlin",
            "duration": "PT30M",
            "rrule": "FREQ=MINUTELY;INTERVAL=30",
            "capacity": 4,
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()?["id"].as_i64().context("event id")
}

fn join_of_frequent_series_finds_its_slot(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/jun", "Person");
    let series = frequent_slots(&server)?;
    let before = chrono::Utc::now();

    // The series object shows a slot that has not ended, not one from days ago.
    let mut conn = server.db.connect()?;
    let series_id = format!("{}/events/{series}", server.base);
    let created = outbox::since(&mut conn, 0, 1000)?
        .into_iter()
        .find(|r| {
            r.activity["type"] == "Create" && r.activity["object"]["id"] == series_id.as_str()
        })
        .context("Create of the series")?;
    let start_text = created.activity["object"]["startTime"]
        .as_str()
        .context("startTime")?;
    let shown = chrono::DateTime::parse_from_rfc3339(start_text)?;
    assert!(
        shown > before - chrono::Duration::hours(1),
        "series object starts at {start_text}"
    );

    // A Join of the series without rose:recurrenceId names the slot the series object shows.
    // That slot has begun, so the calendar may reject it as closed. The instance's "no such
    // occurrence" answer would mean the slot was not found.
    let object = json!(series_id);
    let reply = deliver(
        &server,
        "/inbox",
        &activity(&peer, "jun", "Join", 1, &object),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(!reply.body.contains("no such occurrence"), "{}", reply.body);
    let answer = replies_to(&server, "jun")?
        .pop()
        .context("an answer to the Join")?;
    let calendar = format!("{}/calendars/club", server.base);
    assert_eq!(answer.activity["actor"], calendar.as_str());
    Ok(())
}

on_both_backends!(
    outgoing_rsvp_follows_organizer_changes,
    full_event_rejects_join_with_reason,
    waitlisted_join_promoted_later,
    tentative_rsvp_takes_no_seat,
    organizer_cancel_sends_reject,
    join_of_unknown_event_rejected,
    api_rejects_remote_attendee_prefix,
    unreadable_recurrence_id_books_no_occurrence,
    join_of_frequent_series_finds_its_slot,
    late_response_to_deleted_event_ignored,
    rsvp_to_untrusted_server_rejected
);
