#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! The calendar page in headless Chromium: it lists the upcoming occurrences with a "Remind
//! me" button and registers the service worker served at `/sw.js`.

mod common;
#[path = "oracle/delivery_support.rs"]
mod support;

use std::process::Command;

use chrono::{Duration, Utc};
use common::{Backend, TestDb};
use serde_json::{Value, json};
use support::RoseProcess;

#[test]
fn page_lists_agenda_and_registers_worker() -> anyhow::Result<()> {
    let db = TestDb::new(Backend::Sqlite)?;
    let token = String::from_utf8(common::run_cli(&db, &["token", "create"])?.stdout)?;
    let token = token.trim().to_owned();
    let env = [("ROSE_EVENTS_VAPID_SUBJECT", "mailto:ops@events.example")];
    let server = RoseProcess::start("serve", &db.url, db.dir.path(), &env, "listening on")?;
    let post = |path: &str, body: Value| -> anyhow::Result<Value> {
        Ok(ureq::post(&format!("{}{path}", server.base))
            .set("Authorization", &format!("Bearer {token}"))
            .send_json(body)?
            .into_json()?)
    };
    post(
        "/api/v1/calendars",
        json!({"slug": "choir", "name": "Choir <Paris>", "default_zone": "Europe/Paris"}),
    )?;
    let start = (Utc::now() + Duration::days(2)).with_timezone(&chrono_tz::Europe::Paris);
    let created = post(
        "/api/v1/calendars/choir/events",
        json!({
            "title": "Chorale & friends",
            "start": start.format("%Y-%m-%dT18:30").to_string(),
            "duration": "PT1H30M",
            "rrule": "FREQ=WEEKLY;COUNT=3",
        }),
    )?;
    let event_id = created["id"].as_i64().expect("event id");

    let output = Command::new(support::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/oracle/page_check.py"
        ))
        .arg(format!("{}/calendars/choir", server.base))
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page: Value = serde_json::from_slice(&output.stdout)?;

    assert_eq!(page["sw"], "registered", "{page}");
    assert_eq!(page["script"], format!("{}/sw.js", server.base));
    assert_eq!(page["errors"], json!([]));
    let items = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{page}");
    for item in &items {
        assert_eq!(item["title"], "Chorale & friends");
        assert_eq!(item["button"], "Remind me");
        assert!(
            item["time"]
                .as_str()
                .is_some_and(|t| t.ends_with("18:30 (Europe/Paris)")),
            "{item}"
        );
        let anchor = item["id"].as_str().unwrap_or_default();
        assert!(
            anchor.starts_with(&format!("occurrence-{event_id}-")),
            "{anchor}"
        );
    }
    assert_ne!(
        items[0]["id"], items[1]["id"],
        "each occurrence has its own anchor"
    );

    let worker = ureq::get(&format!("{}/sw.js", server.base)).call()?;
    assert_eq!(
        worker.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let script = worker.into_string()?;
    assert!(script.contains("showNotification"));
    assert!(script.contains("openWindow"));

    let missing = ureq::get(&format!("{}/calendars/nothing", server.base)).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    Ok(())
}
