//! Two servers on 127.0.0.1 with their own databases: A adds and trusts B, B's events reach
//! A's agenda, follow B's changes and disappear when B deletes them.
//!
//! The durable delivery queue is not part of these servers. So the test itself delivers each
//! activity from one server's outbox to the other's inbox. It signs with the sending actor's
//! key, read from the sender's database, as a delivery worker does.

mod common;

use anyhow::Context;
use chrono::{Datelike, Duration, Utc};
use common::peer::post;
use common::{Backend, TestServer, run_cli};
use rose_events::federation::{outbox, signature};
use serde_json::{Value, json};

fn start(backend: Backend) -> anyhow::Result<TestServer> {
    TestServer::start_with_env(
        backend,
        &[("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")],
    )
}

/// Delivers every activity `from` published after row `after` to the inboxes of `to` that it
/// names, and returns the last row delivered and the inbox statuses.
fn deliver_outbox(
    from: &TestServer,
    to: &TestServer,
    after: i64,
) -> anyhow::Result<(i64, Vec<u16>)> {
    let mut conn = from.db.connect()?;
    let mut last = after;
    let mut statuses = Vec::new();
    for recorded in outbox::since(&mut conn, after, 100)? {
        last = recorded.id;
        let (key_id, private_key) = outbox::signing_key(&mut conn, &from.base, &recorded.actor_id)?
            .with_context(|| format!("{} is not an actor of {}", recorded.actor_id, from.base))?;
        let body = recorded.activity.to_string();
        for inbox in recorded
            .recipients
            .iter()
            .filter(|i| i.starts_with(&to.base))
        {
            let url = url::Url::parse(inbox)?;
            let signed = signature::sign(
                "POST",
                &url,
                Some(body.as_bytes()),
                &key_id,
                &private_key,
                Utc::now(),
            )
            .map_err(anyhow::Error::msg)?;
            let headers = vec![
                ("Host".to_owned(), signed.host),
                ("Date".to_owned(), signed.date),
                ("Digest".to_owned(), signed.digest.unwrap_or_default()),
                ("Signature".to_owned(), signed.signature),
            ];
            let reply = post(to, url.path(), &body, &headers)?;
            assert_eq!(reply.status, 202, "{inbox}: {}", reply.body);
            statuses.push(reply.status);
        }
    }
    Ok((last, statuses))
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
    let a = start(backend)?;
    let b = start(backend)?;
    let b_domain = b.base.trim_start_matches("http://").to_owned();
    let reply = b.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "choir", "name": "Choir", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // A adds B as a trusted peer; its Follow of B's instance actor is delivered and accepted.
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
    let (mut b_cursor, delivered) = deliver_outbox(&b, &a, 0)?;
    assert_eq!(delivered.len(), 1, "the Accept reaches A");
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
    assert_eq!(delivered.len(), 1, "the Create reaches A");

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
    assert_eq!(delivered.len(), 1, "the Update reaches A");
    let listed = agenda(&a, &from, &to)?;
    assert_eq!(listed.len(), 3);
    let first = listed[0]["start"].as_str().unwrap_or_default();
    assert!(first.contains("T20:00:00"), "{first}");

    // B deletes it; A's agenda is empty again.
    let reply = agent_delete(&b, &format!("/api/v1/events/{event_id}"))?;
    assert_eq!(reply, 204);
    let (_, delivered) = deliver_outbox(&b, &a, b_cursor)?;
    assert_eq!(delivered.len(), 1, "the Delete reaches A");
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

on_both_backends!(remote_events_follow_their_origin);
