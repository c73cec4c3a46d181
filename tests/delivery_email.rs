#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Email through the queue against a scriptable SMTP server on 127.0.0.1. 4xx replies are
//! retried and 5xx replies stop at once. A connection lost after the final dot is retried with
//! the same Message-ID, and a rejected login keeps the message waiting.

mod common;
#[path = "oracle/delivery_support.rs"]
mod support;

use common::{Backend, TestDb};
use rose_events::delivery::queue::{self, NewJob};
use rose_events::delivery::transport::EmailMessage;
use rose_events::notify::Channel;
use rose_events::notify::people::{self, PreferencesChange};
use rose_events::notify::reminders::{self, OccurrenceRef};
use serde_json::{Value, json};
use support::{SmtpServer, TestWorker, at, event, store_event};

struct Case {
    name: &'static str,
    script: Value,
    state: &'static str,
    attempts: i32,
    delivered: usize,
}

fn cases() -> Vec<Case> {
    let greylisted = json!({"rcpt": "450 4.2.0 greylisted"});
    let shutting_down = json!({"connect": "421 4.3.2 shutting down"});
    vec![
        Case {
            name: "accepted",
            script: json!([]),
            state: "done",
            attempts: 1,
            delivered: 1,
        },
        Case {
            name: "421 at connect",
            script: json!([{"connect": "421 4.7.0 try again later"}]),
            state: "done",
            attempts: 2,
            delivered: 1,
        },
        Case {
            name: "550 user unknown",
            script: json!([{"rcpt": "550 5.1.1 user unknown"}]),
            state: "dead",
            attempts: 1,
            delivered: 0,
        },
        Case {
            name: "451 after the dot",
            script: json!([{"end": "451 4.4.2 timeout waiting for data"}]),
            state: "done",
            attempts: 2,
            delivered: 2,
        },
        Case {
            name: "lost after the dot",
            script: json!([{"end": "close"}]),
            state: "done",
            attempts: 2,
            delivered: 2,
        },
        Case {
            name: "552 too big",
            script: json!([{"end": "552 5.3.4 message too big"}]),
            state: "dead",
            attempts: 1,
            delivered: 1,
        },
        Case {
            name: "greylisted three times",
            script: json!([greylisted, greylisted, greylisted]),
            state: "done",
            attempts: 4,
            delivered: 1,
        },
        Case {
            name: "endless 421",
            script: Value::Array(vec![shutting_down; 6]),
            state: "dead",
            attempts: 6,
            delivered: 0,
        },
    ]
}

fn message(to: &str) -> EmailMessage {
    EmailMessage {
        to: to.to_owned(),
        subject: "Rappel : Chorale lundi 18:30".to_owned(),
        text: "Chorale lundi 18:30".to_owned(),
        html: "<p>Chorale lundi 18:30</p>".to_owned(),
        message_id: "m-1@events.example".to_owned(),
        list_unsubscribe: None,
        date: Some(at("2030-01-07T08:00:00Z")),
    }
}

fn enqueue_email(pool: &rose_events::db::DbPool, name: &str) -> anyhow::Result<i64> {
    let mut conn = pool.get()?;
    let now = at("2030-01-07T08:00:00Z");
    let enqueued = queue::enqueue(
        &mut conn,
        &NewJob {
            kind: "email".to_owned(),
            dedup_key: format!("email/test/{name}"),
            payload: serde_json::to_value(message("vera@mail.example.net"))?,
            run_at: now,
            deadline: None,
            max_attempts: 6,
        },
        now,
    )?;
    Ok(enqueued.id())
}

#[test]
fn smtp_replies_decide_retries() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    for case in cases() {
        let db = TestDb::new(Backend::Sqlite)?;
        let pool = support::pool(&db.url)?;
        let server = SmtpServer::start(&case.script, false)?;
        let id = enqueue_email(&pool, case.name)?;
        let worker = TestWorker::new(
            &pool,
            db.dir.path(),
            Some(server.settings(false)),
            at("2030-01-07T08:00:00Z"),
        )?;
        runtime.block_on(worker.drain_until(at("2030-01-08T08:00:00Z")))?;

        let job = queue::find(&mut *pool.get()?, id)?.expect("job exists");
        assert_eq!(job.state, case.state, "{}: {:?}", case.name, job.last_error);
        assert_eq!(job.attempts, case.attempts, "{}: attempts", case.name);
        let received = server.messages()?;
        assert_eq!(
            received.len(),
            case.delivered,
            "{}: messages that reached the dot",
            case.name
        );
        let ids: Vec<String> = received
            .iter()
            .map(|m| header(m["message"].as_str().unwrap_or_default(), "Message-ID"))
            .collect();
        assert!(
            ids.iter().all(|id| id == "<m-1@events.example>"),
            "{}: {ids:?}",
            case.name
        );
        if case.delivered == 2 {
            assert_eq!(
                received[0]["message"], received[1]["message"],
                "{}: a resend is the same message",
                case.name
            );
        }
    }
    Ok(())
}

#[test]
fn rejected_login_keeps_message_waiting() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let db = TestDb::new(Backend::Sqlite)?;
    let pool = support::pool(&db.url)?;
    let server = SmtpServer::start(&json!([]), true)?;
    let id = enqueue_email(&pool, "auth")?;
    let now = at("2030-01-07T08:00:00Z");
    let worker = TestWorker::new(&pool, db.dir.path(), Some(server.settings(true)), now)?;
    runtime.block_on(worker.worker.run_once())?;

    let job = queue::find(&mut *pool.get()?, id)?.expect("job exists");
    assert_eq!(job.state, "pending", "a sender problem is not a bounce");
    assert_eq!(job.attempts, 1);
    assert_eq!(job.run_at.and_utc(), now + chrono::Duration::minutes(15));
    let error = job.last_error.unwrap_or_default();
    assert!(error.contains("535"), "{error}");
    assert!(server.messages()?.is_empty());
    Ok(())
}

fn reminder_email_reaches_relay(backend: Backend) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let db = TestDb::new(backend)?;
    let pool = support::pool(&db.url)?;
    let server = SmtpServer::start(&json!([]), false)?;
    let now = at("2030-03-01T08:00:00Z");
    let mut conn = pool.get()?;
    let change = PreferencesChange {
        email: Some("ana@mail.example.net".to_owned()),
        channels: Some(vec![Channel::Email]),
        reminder_offsets_minutes: Some(vec![60]),
        zone: Some("America/New_York".to_owned()),
        ..PreferencesChange::default()
    };
    people::update(&mut conn, "ana", &change, now)?;
    let event_id = store_event(
        &mut conn,
        "choir",
        &event("ch", "Chorale <lundi>", "2030-03-04T18:30", None),
    )?;
    let occurrence = OccurrenceRef {
        event_id,
        recurrence_id: None,
        remote: false,
    };
    reminders::schedule(&mut conn, occurrence, "ana", now)?;
    drop(conn);

    let worker = TestWorker::new(&pool, db.dir.path(), Some(server.settings(false)), now)?;
    let jumps = runtime.block_on(worker.drain_until(at("2030-03-05T00:00:00Z")))?;
    assert_eq!(
        jumps.first(),
        Some(&at("2030-03-04T16:30:00Z")),
        "one hour before 18:30 Paris"
    );

    let received = server.messages()?;
    assert_eq!(received.len(), 1);
    let text = received[0]["message"].as_str().unwrap_or_default();
    assert_eq!(received[0]["rcpt_tos"], json!(["ana@mail.example.net"]));
    assert_eq!(header(text, "Subject"), "Reminder: Chorale <lundi>");
    let unsubscribe = header(text, "List-Unsubscribe");
    assert!(
        unsubscribe.starts_with("<https://events.example/unsubscribe/"),
        "{unsubscribe}"
    );
    assert_eq!(
        header(text, "List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    assert!(header(text, "Message-ID").ends_with("@events.example>"));
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(text.contains("text/plain"));
    assert!(text.contains("text/html"));
    assert!(
        text.contains("Chorale &lt;lundi&gt;"),
        "HTML is escaped: {text}"
    );
    assert!(
        text.contains("Starts Mon 4 Mar 2030 12:30 (America/New_York)"),
        "{text}"
    );
    Ok(())
}

on_both_backends!(reminder_email_reaches_relay);

fn header(message: &str, name: &str) -> String {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .split("\r\n")
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
        .unwrap_or_default()
}
