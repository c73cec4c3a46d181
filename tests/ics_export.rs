#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! iCalendar export: feed shape, round trips through our importer, and an independent check
//! with Python's `icalendar` + `recurring-ical-events` (see `tests/oracle/ics_occurrences.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use rose_events::calendar::event::{EventDetails, NewEvent, Schedule};
use rose_events::calendar::ics::{FeedEvent, parse_calendar, write_calendar};
use rose_events::calendar::occurrence::occurrences;
use rose_events::calendar::time::{EventLength, TimeBasis, Window};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FIXTURES: &[&str] = &[
    "birthday_yearly_allday",
    "escaped_text",
    "floating_and_utc_lf_only",
    "google_calendar_export",
    "nextcloud_lightning",
    "outlook_exchange_windows_tz",
    "override_moved_day",
    "southern_custom_zone",
    "rdate_periods",
    "cyrillic_folded",
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ics")
}

fn wall(text: &str) -> Result<NaiveDateTime, chrono::ParseError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
}

fn event(
    uid: &str,
    title: &str,
    basis: TimeBasis,
    start: &str,
    length: EventLength,
) -> Result<NewEvent, chrono::ParseError> {
    Ok(NewEvent {
        uid: uid.to_string(),
        details: EventDetails {
            title: title.to_string(),
            ..EventDetails::default()
        },
        schedule: Schedule {
            start: wall(start)?,
            basis,
            length,
            rrule: None,
            rdates: Vec::new(),
            exdates: Vec::new(),
        },
        capacity: None,
        overrides: Vec::new(),
    })
}

fn feed<'a>(
    events: &'a [NewEvent],
    modified: &[&str],
) -> Result<Vec<FeedEvent<'a>>, chrono::ParseError> {
    events
        .iter()
        .zip(modified)
        .map(|(event, modified)| {
            Ok(FeedEvent {
                event,
                url: None,
                last_modified: modified.parse::<DateTime<Utc>>()?,
                sequence: 0,
            })
        })
        .collect()
}

/// Builds the three events of a small Vienna and New York feed.
fn vienna_new_york_events() -> Result<Vec<NewEvent>, chrono::ParseError> {
    let three_hours = EventLength {
        days: 0,
        seconds: 3 * 3600,
    };
    let vienna = TimeBasis::Zoned(Tz::Europe__Vienna);
    let mut monthly = event(
        "b20-2@events.example",
        "Stammtisch (monatlich)",
        vienna,
        "2025-02-04T18:00",
        three_hours,
    )?;
    monthly.schedule.rrule = Some("FREQ=MONTHLY;BYDAY=1TU;COUNT=6".to_string());
    Ok(vec![
        event(
            "b20-1@events.example",
            "Stammtisch",
            vienna,
            "2025-05-06T18:00",
            three_hours,
        )?,
        monthly,
        event(
            "b20-3@events.example",
            "Remote meetup",
            TimeBasis::Zoned(Tz::America__New_York),
            "2025-03-11T12:00",
            EventLength {
                days: 0,
                seconds: 3600,
            },
        )?,
    ])
}

const VIENNA_NEW_YORK_MODIFIED: &[&str] = &[
    "2025-04-30T09:12:00Z",
    "2025-01-20T10:00:00Z",
    "2025-03-01T00:00:00Z",
];

/// Runs the Python oracle on `ics` and returns its occurrences in `[start, end)`.
fn oracle(ics: &str, start: &str, end: &str) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("ROSE_EVENTS_PYTHON")
        .map_or_else(|_| root.join(".venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "Python oracle {} not found: run scripts/test.sh, which installs the Python oracle \
         (or set ROSE_EVENTS_PYTHON to a python with icalendar and recurring-ical-events)",
        python.display()
    );

    let file = tempfile::Builder::new().suffix(".ics").tempfile()?;
    std::fs::write(file.path(), ics)?;
    let output = Command::new(&python)
        .arg(root.join("tests/oracle/ics_occurrences.py"))
        .args([file.path().as_os_str(), start.as_ref(), end.as_ref()])
        .output()?;
    assert!(
        output.status.success(),
        "oracle failed: {}\nrun scripts/test.sh, which installs the Python oracle",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn starts_of(occurrences: &[Value], uid: &str) -> Vec<String> {
    occurrences
        .iter()
        .filter(|item| item["uid"] == uid)
        .filter_map(|item| item["start"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn feed_uses_crlf_and_folds() -> TestResult {
    let events = vienna_new_york_events()?;
    let ics = write_calendar(
        "Stammtisch, Wien; \"2025\"",
        &feed(&events, VIENNA_NEW_YORK_MODIFIED)?,
    );

    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    assert_eq!(
        ics.matches('\n').count(),
        ics.matches("\r\n").count(),
        "bare LF in feed"
    );
    assert_eq!(
        ics.matches('\r').count(),
        ics.matches("\r\n").count(),
        "bare CR in feed"
    );
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "line has {} octets: {line}", line.len());
    }
    assert!(ics.contains("X-WR-CALNAME:Stammtisch\\, Wien\\; \"2025\"\r\n"));
    assert!(ics.contains("VERSION:2.0\r\n"));
    assert!(ics.contains("PRODID:"));
    Ok(())
}

#[test]
fn feed_has_one_vtimezone_per_tzid() -> TestResult {
    let events = vienna_new_york_events()?;
    let ics = write_calendar("Stammtisch", &feed(&events, VIENNA_NEW_YORK_MODIFIED)?);

    assert_eq!(ics.matches("BEGIN:VTIMEZONE").count(), 2);
    assert_eq!(ics.matches("TZID:Europe/Vienna\r\n").count(), 1);
    assert_eq!(ics.matches("TZID:America/New_York\r\n").count(), 1);
    assert!(ics.contains("DTSTART;TZID=Europe/Vienna:20250506T180000\r\n"));
    assert!(ics.contains("DTSTART;TZID=Europe/Vienna:20250204T180000\r\n"));
    assert!(ics.contains("DTSTART;TZID=America/New_York:20250311T120000\r\n"));
    assert!(ics.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"));
    assert!(ics.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n"));
    assert!(ics.contains("RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\n"));
    let stamps: Vec<&str> = ics
        .split("\r\n")
        .filter(|line| line.starts_with("DTSTAMP:"))
        .collect();
    assert_eq!(stamps.len(), 3);
    assert!(stamps.contains(&"DTSTAMP:20250430T091200Z"));
    for stamp in stamps {
        assert!(
            stamp.ends_with('Z') && stamp.len() == "DTSTAMP:20250430T091200Z".len(),
            "{stamp}"
        );
    }
    Ok(())
}

#[test]
fn oracle_reads_vienna_new_york_feed() -> TestResult {
    let events = vienna_new_york_events()?;
    let ics = write_calendar("Stammtisch", &feed(&events, VIENNA_NEW_YORK_MODIFIED)?);
    let found = oracle(&ics, "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")?;

    assert_eq!(
        starts_of(&found, "b20-1@events.example"),
        ["2025-05-06T16:00:00Z"]
    );
    assert_eq!(
        starts_of(&found, "b20-2@events.example"),
        [
            "2025-02-04T17:00:00Z",
            "2025-03-04T17:00:00Z",
            "2025-04-01T16:00:00Z",
            "2025-05-06T16:00:00Z",
            "2025-06-03T16:00:00Z",
            "2025-07-01T16:00:00Z",
        ]
    );
    assert_eq!(
        starts_of(&found, "b20-3@events.example"),
        ["2025-03-11T16:00:00Z"]
    );
    Ok(())
}

#[test]
fn weekly_all_day_event_is_exported_as_dates() -> TestResult {
    let one_day = EventLength {
        days: 1,
        seconds: 0,
    };
    let mut market = event(
        "b05@events.example",
        "Marché bio (toute la journée)",
        TimeBasis::AllDay,
        "2025-02-12T00:00",
        one_day,
    )?;
    market.schedule.rrule = Some("FREQ=WEEKLY;COUNT=8".to_string());
    let events = [market];
    let ics = write_calendar("Marché", &feed(&events, &["2025-02-01T00:00:00Z"])?);

    assert!(ics.contains("DTSTART;VALUE=DATE:20250212\r\n"), "{ics}");
    assert!(ics.contains("DTEND;VALUE=DATE:20250213\r\n"), "{ics}");
    assert!(!ics.contains("BEGIN:VTIMEZONE"));

    let found = oracle(&ics, "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")?;
    let dates: Vec<String> = starts_of(&found, "b05@events.example");
    let wednesdays = [
        "2025-02-12",
        "2025-02-19",
        "2025-02-26",
        "2025-03-05",
        "2025-03-12",
        "2025-03-19",
        "2025-03-26",
        "2025-04-02",
    ];
    let expected: Vec<String> = wednesdays
        .iter()
        .map(|date| format!("{date}T00:00:00Z"))
        .collect();
    assert_eq!(dates, expected);
    assert!(found.iter().all(|item| item["all_day"] == true));
    for date in wednesdays {
        let weekday = NaiveDate::parse_from_str(date, "%Y-%m-%d")?
            .format("%A")
            .to_string();
        assert_eq!(weekday, "Wednesday");
    }
    Ok(())
}

#[test]
fn fixtures_survive_export_and_reimport_unchanged() -> TestResult {
    for name in FIXTURES {
        let bytes = std::fs::read(data_dir().join(format!("{name}.ics")))?;
        let parsed = parse_calendar(&bytes)?;
        let modified = vec!["2024-06-01T00:00:00Z"; parsed.events.len()];
        let ics = write_calendar(
            parsed.name.as_deref().unwrap_or(name),
            &feed(&parsed.events, &modified)?,
        );
        let again = parse_calendar(ics.as_bytes())?;
        assert_eq!(
            again.events, parsed.events,
            "{name} changed after export and import:\n{ics}"
        );

        let window = Window {
            from: "2000-01-01T00:00:00Z".parse()?,
            to: "2040-01-01T00:00:00Z".parse()?,
        };
        for (before, after) in parsed.events.iter().zip(&again.events) {
            let before = occurrences(before, window, 5_000)?.occurrences;
            let after = occurrences(after, window, 5_000)?.occurrences;
            assert_eq!(
                before, after,
                "{name}: occurrences changed after export and import"
            );
        }
    }
    Ok(())
}

/// The oracle reads our exported feed and lists the same occurrence starts as the expected file.
#[test]
fn exported_fixtures_give_oracle_the_expected_starts() -> TestResult {
    for name in FIXTURES {
        let bytes = std::fs::read(data_dir().join(format!("{name}.ics")))?;
        let expected: Value = serde_json::from_slice(&std::fs::read(
            data_dir().join(format!("{name}.expected.json")),
        )?)?;
        let parsed = parse_calendar(&bytes)?;
        let modified = vec!["2024-06-01T00:00:00Z"; parsed.events.len()];
        let ics = write_calendar(name, &feed(&parsed.events, &modified)?);

        for window in expected["windows"].as_array().ok_or("windows")? {
            let (start, end) = (
                window["start"].as_str().ok_or("start")?,
                window["end"].as_str().ok_or("end")?,
            );
            let found = oracle(&ics, start, end)?;
            let mut got: Vec<(String, String)> = found
                .iter()
                .filter(|item| item["status"] != "CANCELLED")
                .map(|item| (item["uid"].to_string(), item["start"].to_string()))
                .collect();
            let mut want: Vec<(String, String)> = window["occurrences"]
                .as_array()
                .ok_or("occurrences")?
                .iter()
                .map(|item| (item["uid"].to_string(), item["start"].to_string()))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name} window {start}..{end}");
        }
    }
    Ok(())
}
