#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Web Push through the queue against a stand-in push service on 127.0.0.1: every response
//! status drives the job and the subscription, each body decrypts with an independent
//! implementation (Python http_ece), and each VAPID token verifies.

mod common;
#[path = "oracle/delivery_support.rs"]
mod support;

use chrono::Duration;
use common::{Backend, TestDb};
use rose_events::delivery::transport::WebPushTransport;
use rose_events::delivery::transport::web_push::VapidKey;
use rose_events::delivery::{FixedClock, JobState};
use rose_events::notify::Channel;
use rose_events::notify::people::{self, PreferencesChange};
use rose_events::notify::reminders::{self, OccurrenceRef};
use rose_events::notify::subscriptions::{self, BrowserSubscription};
use serde_json::Value;
use support::{PushService, TestWorker, at, event, store_event};

const SCRIPTS: [(&str, &[&str]); 9] = [
    ("A", &["201"]),
    ("B", &["410"]),
    ("C", &["404"]),
    ("D", &["500", "502", "201"]),
    ("E", &["429 Retry-After: 120", "201"]),
    ("F", &["413"]),
    (
        "G",
        &["507", "507", "507", "507", "507", "507", "507", "507"],
    ),
    ("H", &["close", "201"]),
    (
        "I",
        &[
            r#"403 {"reason":"BadJwtToken"}"#,
            r#"403 {"reason":"BadJwtToken"}"#,
        ],
    ),
];

fn requests(log: &Value) -> Vec<Value> {
    log["requests"].as_array().cloned().unwrap_or_default()
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario whose steps depend on each other, checked in order"
)]
fn push_answers_drive_jobs_and_subscriptions(backend: Backend) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let db = TestDb::new(backend)?;
    let pool = support::pool(&db.url)?;
    let service = PushService::start()?;
    let now = at("2030-05-01T08:00:00Z");
    let mut conn = pool.get()?;

    let change = PreferencesChange {
        channels: Some(vec![Channel::Push]),
        reminder_offsets_minutes: Some(vec![1440]),
        zone: Some("Europe/Paris".to_owned()),
        ..PreferencesChange::default()
    };
    people::update(&mut conn, "vera", &change, now)?;
    let mut endpoints = std::collections::BTreeMap::new();
    for (name, script) in SCRIPTS {
        let browser: BrowserSubscription = serde_json::from_value(service.subscription(script)?)?;
        subscriptions::subscribe(&mut conn, "vera", &browser, true, now)?;
        endpoints.insert(name, browser.endpoint);
    }
    let event_id = store_event(
        &mut conn,
        "velo",
        &event("b15", "Atelier vélo", "2030-05-02T19:00", None),
    )?;
    let occurrence = OccurrenceRef {
        event_id,
        recurrence_id: None,
        remote: false,
    };
    assert_eq!(reminders::schedule(&mut conn, occurrence, "vera", now)?, 1);
    drop(conn);

    // First round: the reminder fans out, then each subscription gets its first attempt.
    let worker = TestWorker::new(&pool, db.dir.path(), None, now)?;
    let first_run = at("2030-05-01T17:00:00Z");
    worker.clock.set(first_run);
    runtime.block_on(async {
        assert_eq!(worker.worker.run_once().await?, 1, "the reminder is due");
        assert_eq!(
            worker.worker.run_once().await?,
            SCRIPTS.len(),
            "one push job per subscription"
        );
        anyhow::Ok(())
    })?;
    let jobs = worker.jobs()?;
    let job_of = |name: &str| {
        let id = subscriptions::find_by_endpoint(&mut pool.get().unwrap(), &endpoints[name])
            .unwrap()
            .map(|s| s.id);
        jobs.iter()
            .find(|j| {
                j.kind == "push" && id.is_some_and(|id| j.dedup_key.ends_with(&format!("/{id}")))
            })
            .cloned()
    };
    let retry_after = job_of("E").expect("job of E");
    assert_eq!(
        retry_after.run_at.and_utc(),
        first_run + Duration::seconds(120),
        "429 waits Retry-After"
    );
    let backoff = job_of("D").expect("job of D").run_at.and_utc() - first_run;
    assert!(
        backoff >= Duration::milliseconds(22_500) && backoff <= Duration::seconds(30),
        "5xx backs off {backoff}"
    );

    // Then every retry until nothing is pending before the occurrence starts.
    runtime.block_on(worker.drain_until(at("2030-05-02T17:00:00Z")))?;

    let expected_requests = [
        ("A", 1),
        ("B", 1),
        ("C", 1),
        ("D", 3),
        ("E", 2),
        ("F", 1),
        ("G", 8),
        ("H", 2),
        ("I", 2),
    ];
    for (name, count) in expected_requests {
        let log = service.log(&endpoints[name])?;
        assert_eq!(requests(&log).len(), count, "requests to {name}: {log}");
    }

    let mut conn = pool.get()?;
    for name in ["B", "C"] {
        assert!(
            subscriptions::find_by_endpoint(&mut conn, &endpoints[name])?.is_none(),
            "{name} is removed"
        );
    }
    for name in ["A", "D", "E", "F", "G", "H", "I"] {
        assert!(
            subscriptions::find_by_endpoint(&mut conn, &endpoints[name])?.is_some(),
            "{name} is kept"
        );
    }
    drop(conn);

    let states: Vec<(String, String, Option<String>)> = worker
        .jobs()?
        .into_iter()
        .filter(|j| j.kind == "push")
        .map(|j| (j.dedup_key, j.state, j.last_error))
        .collect();
    let dead: Vec<&(String, String, Option<String>)> =
        states.iter().filter(|s| s.1 == "dead").collect();
    assert_eq!(
        dead.len(),
        3,
        "413, endless 507 and a rejected token die: {states:?}"
    );
    assert!(dead.iter().any(|s| {
        s.2.as_deref()
            .is_some_and(|e| e.contains("after 8 attempts"))
    }));
    assert!(
        dead.iter()
            .any(|s| s.2.as_deref().is_some_and(|e| e.contains("413")))
    );
    assert!(dead.iter().any(|s| {
        s.2.as_deref()
            .is_some_and(|e| e.contains("VAPID token rejected"))
    }));
    let gone: Vec<_> = states
        .iter()
        .filter(|s| {
            s.2.as_deref()
                .is_some_and(|e| e.contains("subscription removed"))
        })
        .collect();
    assert_eq!(
        gone.len(),
        2,
        "404 and 410 end done with a note: {states:?}"
    );

    // What arrived decrypts to the reminder, carries a valid VAPID token, and one topic.
    let delivered = requests(&service.log(&endpoints["A"])?);
    let request = &delivered[0];
    assert_eq!(request["content_encoding"], "aes128gcm");
    assert_eq!(request["vapid_errors"], serde_json::json!([]), "{request}");
    assert_eq!(
        request["vapid_claims"]["aud"],
        Value::String(service.base.clone())
    );
    assert_eq!(request["vapid_claims"]["sub"], "mailto:ops@events.example");
    assert_eq!(request["urgency"], "normal");
    let topic = request["topic"].as_str().unwrap_or_default().to_owned();
    assert_eq!(topic.len(), 32);
    let payload: Value = serde_json::from_str(request["payload"].as_str().unwrap_or("{}"))?;
    assert_eq!(payload["title"], "Reminder: Atelier vélo");
    assert_eq!(
        payload["body"],
        "Starts Thu 2 May 2030 19:00 (Europe/Paris)\nAtelier, 5 rue Haute"
    );
    assert_eq!(
        payload["url"],
        format!("https://events.example/calendars/velo#occurrence-{event_id}")
    );
    let ttl: i64 = request["ttl"].as_str().unwrap_or("0").parse()?;
    assert!(
        (86_390..=86_400).contains(&ttl),
        "TTL runs to the start: {ttl}"
    );

    let retried = requests(&service.log(&endpoints["D"])?);
    for (number, request) in retried.iter().enumerate() {
        assert_eq!(
            request["topic"].as_str(),
            Some(topic.as_str()),
            "resend {number} keeps the topic"
        );
        assert_eq!(
            request["payload"], delivered[0]["payload"],
            "resend {number} has the same text"
        );
    }
    // Endpoint I rejects the token in the first round, which makes the transport mint a new
    // one for the whole origin; depending on the order of that round, D's first attempt may
    // carry the old token. Every later resend reuses one token instead of minting its own.
    let resends = &retried[1..];
    for (number, request) in resends.iter().enumerate() {
        assert_eq!(
            request["vapid_claims"]["exp"], resends[0]["vapid_claims"]["exp"],
            "resend {number}: one VAPID token per push-service origin"
        );
    }

    // A second reminder reaches the re-subscribed browser and never the removed endpoints.
    let mut conn = pool.get()?;
    let fresh: BrowserSubscription = serde_json::from_value(service.subscription(&[])?)?;
    subscriptions::subscribe(&mut conn, "vera", &fresh, true, worker.clock_now())?;
    let second = store_event(
        &mut conn,
        "velo",
        &event("b15-2", "Atelier vélo 2", "2030-05-04T19:00", None),
    )?;
    let now = worker.clock_now();
    reminders::schedule(
        &mut conn,
        OccurrenceRef {
            event_id: second,
            recurrence_id: None,
            remote: false,
        },
        "vera",
        now,
    )?;
    drop(conn);
    runtime.block_on(worker.drain_until(at("2030-05-04T17:00:00Z")))?;
    for name in ["B", "C"] {
        assert_eq!(
            requests(&service.log(&endpoints[name])?).len(),
            1,
            "no new request to {name}"
        );
    }
    assert_eq!(requests(&service.log(&fresh.endpoint)?).len(), 1);
    Ok(())
}

on_both_backends!(push_answers_drive_jobs_and_subscriptions);

#[test]
fn vapid_token_is_reused_then_reminted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = VapidKey::load_or_generate(dir.path())?;
    let clock = std::sync::Arc::new(FixedClock::new(at("2025-05-02T08:00:00Z")));
    let transport = WebPushTransport::new(key, "mailto:ops@events.example", clock.clone())?;
    let endpoint = "https://push.example.net/wpush/v2/abc";

    let (first, expires) = transport
        .current_token(endpoint)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(expires, at("2025-05-02T20:00:00Z"), "12 hours of validity");
    clock.set(at("2025-05-02T18:30:00Z"));
    let (again, _) = transport
        .current_token(endpoint)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(again, first, "reused while more than an hour is left");

    let (other_origin, _) = transport
        .current_token("https://push.example.net:8443/wpush/v2/abc?x=1")
        .map_err(anyhow::Error::msg)?;
    assert_ne!(other_origin, first, "each origin has its own token");

    clock.set(at("2025-05-02T21:00:00Z"));
    let (late, late_expiry) = transport
        .current_token(endpoint)
        .map_err(anyhow::Error::msg)?;
    assert_ne!(late, first, "a late retry gets a fresh token");
    assert_eq!(late_expiry, at("2025-05-03T09:00:00Z"));
    Ok(())
}

#[test]
fn vapid_key_is_kept_in_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = VapidKey::load_or_generate(dir.path())?;
    let second = VapidKey::load_or_generate(dir.path())?;
    assert_eq!(first.public_key(), second.public_key());
    assert_eq!(first.public_key().len(), 87, "65 bytes in base64url");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("vapid_private_key.pem"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    Ok(())
}

#[test]
fn subscription_rejects_bad_keys() {
    let good = serde_json::json!({
        "endpoint": "https://push.example.net/wpush/v2/abc",
        "keys": {
            "p256dh": "BGa4N1PI79lboMR_YrwCiCsgp35DRvedt7opHcf0yM3iOBTSoQYqQLwWxAfRKE6tsDnReWmhsImkhDF_DBdkNSU",
            "auth": "EvcWjEgzr4rbvhfi3yds0A"
        }
    });
    let parse =
        |value: &Value| serde_json::from_value::<BrowserSubscription>(value.clone()).unwrap();
    assert!(subscriptions::check(&parse(&good), false).is_ok());

    let mut plain_http = good.clone();
    plain_http["endpoint"] = "http://push.example.net/x".into();
    let error = subscriptions::check(&parse(&plain_http), false).unwrap_err();
    assert_eq!(error.field, "endpoint");

    let mut loopback = good.clone();
    loopback["endpoint"] = "http://127.0.0.1:9/x".into();
    assert!(subscriptions::check(&parse(&loopback), false).is_err());
    assert!(subscriptions::check(&parse(&loopback), true).is_ok());

    let mut short_key = good.clone();
    short_key["keys"]["p256dh"] = "BGa4N1PI".into();
    let error = subscriptions::check(&parse(&short_key), false).unwrap_err();
    assert_eq!(error.field, "keys.p256dh");
    assert!(error.problem.contains("65 bytes"), "{}", error.problem);

    let mut short_auth = good;
    short_auth["keys"]["auth"] = "EvcW".into();
    let error = subscriptions::check(&parse(&short_auth), false).unwrap_err();
    assert_eq!(error.field, "keys.auth");
}

#[test]
fn job_states_parse() {
    for state in [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Dead,
    ] {
        assert_eq!(JobState::parse(state.as_str()), Some(state));
    }
}
