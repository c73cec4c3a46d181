#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! The push, people and reminder routes over a real server process: valid requests work, and
//! bad input gets problem+json naming the field, the value and the limit, and writes nothing.

mod common;
#[path = "oracle/delivery_support.rs"]
mod support;

use common::{Backend, Reply, TestDb};
use serde_json::{Value, json};
use support::RoseProcess;

struct Api {
    server: RoseProcess,
    token: String,
}

impl Api {
    fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Reply> {
        let request = common::agent()
            .request(method, &format!("{}{path}", self.server.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        Reply::from_result(request.send_json(body.clone()))
    }

    fn get(&self, path: &str) -> anyhow::Result<Reply> {
        let request = common::agent()
            .get(&format!("{}{path}", self.server.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        Reply::from_result(request.call())
    }
}

fn start(backend: Backend, vapid: bool) -> anyhow::Result<(Api, TestDb)> {
    let db = TestDb::new(backend)?;
    let token = String::from_utf8(common::run_cli(&db, &["token", "create"])?.stdout)?;
    let mut env = vec![
        ("ROSE_EVENTS_ALLOW_LOOPBACK_PUSH", "true"),
        ("ROSE_EVENTS_WORKERS", "0"),
    ];
    if vapid {
        env.push(("ROSE_EVENTS_VAPID_SUBJECT", "mailto:ops@events.example"));
    }
    let server = RoseProcess::start("serve", &db.url, db.dir.path(), &env, "listening on")?;
    Ok((
        Api {
            server,
            token: token.trim().to_owned(),
        },
        db,
    ))
}

fn assert_problem(reply: &Reply, status: u16, field: &str, value: &str, problem: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json");
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["field"], field, "{body}");
    assert_eq!(body["value"], value, "{body}");
    let text = body["problem"].as_str().unwrap_or_default();
    assert!(
        text.contains(problem),
        "{text:?} should mention {problem:?}"
    );
}

fn subscription() -> Value {
    json!({
        "person": "vera",
        "endpoint": "https://push.example.net/wpush/v2/abc",
        "expirationTime": null,
        "keys": {
            "p256dh": "BGa4N1PI79lboMR_YrwCiCsgp35DRvedt7opHcf0yM3iOBTSoQYqQLwWxAfRKE6tsDnReWmhsImkhDF_DBdkNSU",
            "auth": "EvcWjEgzr4rbvhfi3yds0A"
        }
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "one server session whose steps depend on each other, checked in order"
)]
fn routes_accept_valid_and_reject_bad_input(backend: Backend) -> anyhow::Result<()> {
    let (api, db) = start(backend, true)?;

    let key = api.get("/api/v1/push/vapid-public-key")?.json()?;
    assert_eq!(key["public_key"].as_str().map(str::len), Some(87));

    // Subscriptions.
    let created = api.send("POST", "/api/v1/push/subscriptions", &subscription())?;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()?["person"], "vera");
    let mut bad = subscription();
    bad["endpoint"] = "ftp://push.example.net/x".into();
    assert_problem(
        &api.send("POST", "/api/v1/push/subscriptions", &bad)?,
        422,
        "endpoint",
        "ftp://push.example.net/x",
        "https://",
    );
    let mut long_person = subscription();
    long_person["person"] = "p".repeat(201).into();
    let reply = api.send("POST", "/api/v1/push/subscriptions", &long_person)?;
    assert_eq!(reply.status, 422);
    assert!(
        reply.json()?["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("limit is 200")
    );
    let unsigned = Reply::from_result(
        common::agent()
            .post(&format!("{}/api/v1/push/subscriptions", api.server.base))
            .send_json(subscription()),
    )?;
    assert_eq!(unsigned.status, 401);
    let gone = json!({"endpoint": "https://push.example.net/wpush/v2/abc"});
    assert_eq!(
        api.send("DELETE", "/api/v1/push/subscriptions", &gone)?
            .status,
        204
    );
    assert_eq!(
        api.send("DELETE", "/api/v1/push/subscriptions", &gone)?
            .status,
        404
    );

    // Preferences: each bad field is named, and nothing is written.
    let cases = [
        (
            json!({"zone": "Mars/Olympus"}),
            "zone",
            "Mars/Olympus",
            "IANA",
        ),
        (json!({"digest_hour": 24}), "digest_hour", "24", "0 to 23"),
        (
            json!({"email": "not an address"}),
            "email",
            "not an address",
            "email address",
        ),
        (
            json!({"reminder_offsets_minutes": [60, 0]}),
            "reminder_offsets_minutes[1]",
            "0",
            "1 to 40320",
        ),
        (
            json!({"reminder_offsets_minutes": [1, 2, 3, 4, 5, 6, 7, 8, 9]}),
            "reminder_offsets_minutes",
            "9 offsets",
            "at most 8",
        ),
    ];
    for (body, field, value, problem) in cases {
        assert_problem(
            &api.send("PUT", "/api/v1/people/ana", &body)?,
            422,
            field,
            value,
            problem,
        );
    }
    let stored = api.get("/api/v1/people/ana")?.json()?;
    assert_eq!(
        stored["person"]["zone"], "UTC",
        "defaults: nothing was written"
    );
    assert_eq!(stored["person"]["reminder_offsets"], json!([1440, 60]));
    let unknown = api.send("PUT", "/api/v1/people/ana", &json!({"colour": "red"}))?;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(unknown.body.contains("colour"), "{}", unknown.body);

    let updated = api.send(
        "PUT",
        "/api/v1/people/ana",
        &json!({"email": "ana@mail.example.net", "channels": ["email"], "digest": "weekly",
                "digest_hour": 18, "zone": "America/New_York", "reminder_offsets_minutes": [30, 120]}),
    )?;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let person = updated.json()?;
    assert_eq!(person["reminder_offsets"], json!([120, 30]));
    assert_eq!(person["zone"], "America/New_York");
    assert!(
        person.get("unsubscribe_token").is_none(),
        "the token stays private"
    );

    // Follows and reminders.
    api.send(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "choir", "name": "Choir"}),
    )?;
    assert_eq!(
        api.send("PUT", "/api/v1/people/ana/follows/choir", &json!({}))?
            .status,
        204
    );
    assert_eq!(
        api.send("PUT", "/api/v1/people/ana/follows/nowhere", &json!({}))?
            .status,
        404
    );
    let event = api.send(
        "POST",
        "/api/v1/calendars/choir/events",
        &json!({"title": "Chorale", "start": "2031-03-04T18:30", "duration": "PT1H",
                "rrule": "FREQ=WEEKLY;COUNT=3", "zone": "Europe/Paris"}),
    )?;
    let event_id = event.json()?["id"].as_i64().expect("event id");
    let occurrence = json!({"event_id": event_id, "recurrence_id": "2031-03-11T17:30:00Z"});
    let reminded = api.send("POST", "/api/v1/people/ana/reminders", &occurrence)?;
    assert_eq!(reminded.status, 201, "{}", reminded.body);
    let body = reminded.json()?;
    assert_eq!(body["created"], 2, "email at 120 and 30 minutes");
    assert_eq!(body["reminders"][0]["run_at"], "2031-03-11T15:30:00Z");
    let missing = json!({"event_id": event_id, "recurrence_id": "2031-03-12T17:30:00Z"});
    assert_eq!(
        api.send("POST", "/api/v1/people/ana/reminders", &missing)?
            .status,
        404
    );
    let garbled = json!({"event_id": event_id, "recurrence_id": "next monday"});
    assert_problem(
        &api.send("POST", "/api/v1/people/ana/reminders", &garbled)?,
        422,
        "recurrence_id",
        "next monday",
        "RFC 3339",
    );
    let bad_person = api.send("POST", "/api/v1/people/a%20b/reminders", &occurrence)?;
    assert_eq!(bad_person.status, 422);
    let removed = api.send("DELETE", "/api/v1/people/ana/reminders", &occurrence)?;
    assert_eq!(removed.json()?["removed"], 2);

    let unknown_link = Reply::from_result(
        common::agent()
            .post(&format!("{}/unsubscribe/nope", api.server.base))
            .send_string(""),
    )?;
    assert_eq!(unknown_link.status, 404);
    drop(db);
    Ok(())
}

on_both_backends!(routes_accept_valid_and_reject_bad_input);

#[test]
fn vapid_key_route_says_when_push_is_off() -> anyhow::Result<()> {
    let (api, _db) = start(Backend::Sqlite, false)?;
    let reply = api.get("/api/v1/push/vapid-public-key")?;
    assert_eq!(reply.status, 404);
    assert!(
        reply.json()?["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("VAPID subject")
    );
    Ok(())
}

#[test]
fn invalid_vapid_subject_stops_start() -> anyhow::Result<()> {
    let db = TestDb::new(Backend::Sqlite)?;
    let output = std::process::Command::new(common::binary())
        .arg("check-config")
        .env("ROSE_EVENTS_DATABASE_URL", &db.url)
        .env("ROSE_EVENTS_VAPID_SUBJECT", "mailto:ops@localhost")
        .output()?;
    assert!(!output.status.success());
    let message = String::from_utf8(output.stderr)?;
    assert!(
        message.contains("VAPID subject \"mailto:ops@localhost\" is invalid"),
        "{message}"
    );
    Ok(())
}
