#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! iCalendar import. Every fixture under `tests/data/ics/` is parsed, expanded over the windows
//! of its `.expected.json` and compared occurrence by occurrence. Broken files must be rejected
//! with a line number.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rose_events::calendar::event::EventStatus;
use rose_events::calendar::ics::{IcsError, parse_calendar};
use rose_events::calendar::occurrence::{Occurrence, occurrences};
use rose_events::calendar::time::{TimeBasis, Window};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ics")
}

fn read_fixture(name: &str) -> Result<(Vec<u8>, Value), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(data_dir().join(format!("{name}.ics")))?;
    let expected = serde_json::from_slice(&std::fs::read(
        data_dir().join(format!("{name}.expected.json")),
    )?)?;
    Ok((bytes, expected))
}

fn instant(value: &Value) -> Result<DateTime<Utc>, Box<dyn std::error::Error>> {
    Ok(value.as_str().ok_or("instant is not a string")?.parse()?)
}

fn format_instant(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Occurrences of every event in `window`, cancelled ones left out, sorted as the expected files.
fn expand_all(bytes: &[u8], window: Window) -> Result<Vec<Occurrence>, Box<dyn std::error::Error>> {
    let parsed = parse_calendar(bytes)?;
    let mut all = Vec::new();
    for event in &parsed.events {
        let expanded = occurrences(event, window, 10_000)?;
        assert!(!expanded.truncated, "{} was truncated", event.uid);
        all.extend(
            expanded
                .occurrences
                .into_iter()
                .filter(|o| o.details.status != EventStatus::Cancelled),
        );
    }
    all.sort_by(|a, b| (a.start, &a.uid, a.recurrence_id).cmp(&(b.start, &b.uid, b.recurrence_id)));
    Ok(all)
}

/// Compares one fixture with its expected file, field by field.
fn check_fixture(name: &str) -> TestResult {
    let (bytes, expected) = read_fixture(name)?;
    for window in expected["windows"].as_array().ok_or("windows")? {
        let span = Window {
            from: instant(&window["start"])?,
            to: instant(&window["end"])?,
        };
        let got = expand_all(&bytes, span)?;
        let want = window["occurrences"].as_array().ok_or("occurrences")?;
        let context = format!("{name} window {}..{}", window["start"], window["end"]);
        let got_starts: Vec<String> = got
            .iter()
            .map(|o| format!("{} {}", o.uid, format_instant(o.start)))
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{context}: occurrence count; got {got_starts:#?}"
        );

        for (occurrence, expected) in got.iter().zip(want) {
            check_occurrence(&context, occurrence, expected);
        }
    }
    Ok(())
}

fn check_occurrence(context: &str, got: &Occurrence, want: &Value) {
    let at = format!("{context}, {} at {}", got.uid, format_instant(got.start));
    assert_eq!(want["uid"], got.uid.as_str(), "{at}: uid");
    assert_eq!(want["start"], format_instant(got.start), "{at}: start");
    assert_eq!(want["end"], format_instant(got.end), "{at}: end");
    let recurrence_id = got.recurrence_id.map(format_instant);
    assert_eq!(
        want["recurrence_id"].as_str(),
        recurrence_id.as_deref(),
        "{at}: recurrence_id"
    );
    assert_eq!(
        want["all_day"],
        got.basis == TimeBasis::AllDay,
        "{at}: all_day"
    );

    let summary = Some(got.details.title.as_str()).filter(|title| !title.is_empty());
    assert_eq!(want["summary"].as_str(), summary, "{at}: summary");
    let status = want["status"].as_str().unwrap_or("CONFIRMED");
    assert_eq!(status, got.details.status.as_ical(), "{at}: status");
    // An empty LOCATION is imported as no location.
    if let Some(location) = want.get("location") {
        let location = location.as_str().filter(|text| !text.is_empty());
        assert_eq!(location, got.details.location.as_deref(), "{at}: location");
    }
}

#[test]
fn google_calendar_export_matches_expected() -> TestResult {
    check_fixture("google_calendar_export")
}

#[test]
fn outlook_windows_zones_match_expected() -> TestResult {
    check_fixture("outlook_exchange_windows_tz")
}

#[test]
fn nextcloud_lightning_matches_expected() -> TestResult {
    check_fixture("nextcloud_lightning")
}

#[test]
fn yearly_all_day_birthdays_match_expected() -> TestResult {
    check_fixture("birthday_yearly_allday")
}

#[test]
fn floating_and_utc_lf_only_match_expected() -> TestResult {
    check_fixture("floating_and_utc_lf_only")
}

#[test]
fn overrides_moved_to_other_days_match_expected() -> TestResult {
    check_fixture("override_moved_day")
}

#[test]
fn escaped_text_matches_expected() -> TestResult {
    check_fixture("escaped_text")
}

#[test]
fn southern_customized_zone_matches_expected() -> TestResult {
    check_fixture("southern_custom_zone")
}

#[test]
fn rdate_periods_and_durations_match_expected() -> TestResult {
    check_fixture("rdate_periods")
}

#[test]
fn cyrillic_folded_mid_character_matches_expected() -> TestResult {
    check_fixture("cyrillic_folded")
}

#[test]
fn unclosed_vevent_is_rejected_with_its_line() -> TestResult {
    let (bytes, expected) = read_fixture("malformed_missing_end_vevent")?;
    assert_eq!(expected["expect"], "error");

    let error = parse_calendar(&bytes)
        .err()
        .ok_or("the file was accepted")?;
    let message = error.to_string();
    let IcsError::Syntax { line, .. } = error else {
        return Err(format!("unexpected error kind: {message}").into());
    };
    assert!([19, 26].contains(&line), "{message}");
    assert!(message.contains("VEVENT"), "{message}");
    assert!(
        message.contains("line 13") || message.contains("malformed-2@bookings.example"),
        "{message}"
    );
    Ok(())
}

fn wrap(vevent: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{vevent}END:VCALENDAR\r\n")
}

fn error_for(text: &str) -> String {
    match parse_calendar(text.as_bytes()) {
        Ok(parsed) => format!("accepted: {parsed:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn invalid_date_names_line_property_and_value() {
    let text = wrap("BEGIN:VEVENT\r\nUID:x@example.org\r\nDTSTART:20241301\r\nEND:VEVENT\r\n");
    assert_eq!(
        error_for(&text),
        "line 5: DTSTART value \"20241301\" is not a DATE or DATE-TIME"
    );
}

#[test]
fn missing_dtstart_is_rejected() {
    let text = wrap("BEGIN:VEVENT\r\nUID:x@example.org\r\nSUMMARY:no start\r\nEND:VEVENT\r\n");
    assert_eq!(
        error_for(&text),
        "line 3: the VEVENT begun here has no DTSTART"
    );
}

#[test]
fn end_without_begin_is_rejected() {
    let text = "BEGIN:VCALENDAR\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let message = error_for(text);
    assert!(message.starts_with("line 2: END:VEVENT"), "{message}");
}

#[test]
fn unknown_tzid_without_vtimezone_is_rejected() {
    let text = wrap(
        "BEGIN:VEVENT\r\nUID:x@example.org\r\nDTSTART;TZID=Nowhere/Special:20240101T100000\r\nEND:VEVENT\r\n",
    );
    let message = error_for(&text);
    assert!(
        message.starts_with("line 5: TZID \"Nowhere/Special\""),
        "{message}"
    );
}

#[test]
fn title_longer_than_limit_is_rejected() {
    let title = "x".repeat(501);
    let text = wrap(&format!(
        "BEGIN:VEVENT\r\nUID:x@example.org\r\nDTSTART:20240101T100000Z\r\nSUMMARY:{title}\r\nEND:VEVENT\r\n"
    ));
    let message = error_for(&text);
    assert!(message.contains("more than the limit of 500"), "{message}");
}

#[test]
fn valarm_fields_never_reach_the_event() -> TestResult {
    let text = wrap(
        "BEGIN:VEVENT\r\nUID:event@example.org\r\nDTSTART:20240101T100000Z\r\nSUMMARY:Event\r\n\
         BEGIN:VALARM\r\nUID:alarm@example.org\r\nSUMMARY:Alarm\r\nDESCRIPTION:Alarm text\r\n\
         ACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\nEND:VEVENT\r\n\
         BEGIN:VTODO\r\nUID:todo@example.org\r\nDTSTART:20240101T100000Z\r\nEND:VTODO\r\n",
    );
    let parsed = parse_calendar(text.as_bytes())?;
    assert_eq!(parsed.events.len(), 1);
    assert_eq!(parsed.events[0].uid, "event@example.org");
    assert_eq!(parsed.events[0].details.title, "Event");
    assert_eq!(parsed.events[0].details.description, None);
    Ok(())
}

#[test]
fn x_wr_timezone_does_not_change_floating_times() -> TestResult {
    let text = "BEGIN:VCALENDAR\r\nX-WR-TIMEZONE:Asia/Tokyo\r\nBEGIN:VEVENT\r\nUID:f@example.org\r\n\
                DTSTART:20240101T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let parsed = parse_calendar(text.as_bytes())?;
    assert_eq!(parsed.events[0].schedule.basis, TimeBasis::Floating);
    Ok(())
}

#[test]
fn geo_and_url_are_read() -> TestResult {
    let text = wrap(
        "BEGIN:VEVENT\r\nUID:g@example.org\r\nDTSTART:20240101T100000Z\r\nGEO:51.5;-0.12\r\n\
         URL:https://events.example.org/g\r\nEND:VEVENT\r\n",
    );
    let parsed = parse_calendar(text.as_bytes())?;
    let details = &parsed.events[0].details;
    let place = details.place.as_ref().ok_or("no place")?;
    assert_eq!(place.latitude, Some(51.5));
    assert_eq!(place.longitude, Some(-0.12));
    assert_eq!(
        details.online_url.as_deref(),
        Some("https://events.example.org/g")
    );
    Ok(())
}

#[test]
fn exdate_removes_matching_instants_across_dst_change() -> TestResult {
    let text = wrap(
        "BEGIN:VEVENT\r\nUID:chorale@events.example\r\nDTSTAMP:20241001T000000Z\r\n\
         DTSTART;TZID=Europe/Paris:20241021T183000\r\nDTEND;TZID=Europe/Paris:20241021T200000\r\n\
         RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6\r\nEXDATE;TZID=Europe/Paris:20241030T183000\r\n\
         EXDATE:20241104T173000Z\r\nEXDATE;TZID=Europe/Paris:20241023T180000\r\n\
         SUMMARY:Chorale\r\nEND:VEVENT\r\n",
    );
    let window = Window {
        from: "2024-10-01T00:00:00Z".parse()?,
        to: "2025-01-01T00:00:00Z".parse()?,
    };
    let starts: Vec<String> = expand_all(text.as_bytes(), window)?
        .iter()
        .map(|o| format_instant(o.start))
        .collect();
    assert_eq!(
        starts,
        [
            "2024-10-21T16:30:00Z",
            "2024-10-23T16:30:00Z",
            "2024-10-28T17:30:00Z",
            "2024-11-06T17:30:00Z"
        ]
    );
    Ok(())
}

#[test]
fn tzid_on_date_value_needs_no_zone() -> TestResult {
    let text = wrap(
        "BEGIN:VEVENT\r\nUID:d@example.org\r\nDTSTART;VALUE=DATE;TZID=Nowhere/Special:20240101\r\n\
         END:VEVENT\r\n",
    );
    let parsed = parse_calendar(text.as_bytes())?;
    assert_eq!(parsed.events[0].schedule.basis, TimeBasis::AllDay);
    Ok(())
}
