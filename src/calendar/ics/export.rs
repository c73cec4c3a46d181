//! Writing a feed: one VCALENDAR with a VTIMEZONE per zone used and a VEVENT per event and
//! override.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::export_tz::write_vtimezone;
use crate::calendar::event::{EventDetails, NewEvent, NewOverride};
use crate::calendar::time::{EventLength, Moment, TimeBasis};

/// Maximum octets in one output line, CRLF excluded (RFC 5545 section 3.1).
const FOLD_OCTETS: usize = 75;

/// One event of a feed with the metadata the feed needs.
#[derive(Clone, Debug)]
pub struct FeedEvent<'a> {
    /// The event, its schedule and its overrides.
    pub event: &'a NewEvent,
    /// The event's page (URL); when `None`, the event's online link is written instead.
    pub url: Option<String>,
    /// When the event last changed; written as DTSTAMP and LAST-MODIFIED.
    pub last_modified: DateTime<Utc>,
    /// Revision number (SEQUENCE).
    pub sequence: i32,
}

/// Writes a calendar named `name` holding `events`, with CRLF line ends and folded lines.
pub fn write_calendar(name: &str, events: &[FeedEvent<'_>]) -> String {
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".to_string(),
        "PRODID:-//rose-ash//rose-events//EN".to_string(),
        "CALSCALE:GREGORIAN".to_string(),
        "METHOD:PUBLISH".to_string(),
        format!("X-WR-CALNAME:{}", escape_text(name)),
    ];

    for (zone, first_year, last_year) in zones_used(events).into_values() {
        lines.extend(write_vtimezone(zone, first_year, last_year));
    }
    for feed_event in events {
        lines.extend(write_master(feed_event));
        for change in &feed_event.event.overrides {
            lines.extend(write_override(feed_event, change));
        }
    }
    lines.push("END:VCALENDAR".to_string());

    let mut out = String::new();
    for line in &lines {
        fold_into(&mut out, line);
    }
    out
}

/// Collects every zone used by a start, override or extra date with the years it is used in.
/// The map is keyed by zone name so the output order is stable.
fn zones_used(events: &[FeedEvent<'_>]) -> BTreeMap<&'static str, (Tz, i32, i32)> {
    let mut zones: BTreeMap<&'static str, (Tz, i32, i32)> = BTreeMap::new();
    let mut note = |basis: TimeBasis, wall: NaiveDateTime| {
        if let TimeBasis::Zoned(zone) = basis {
            let year = wall.year();
            let range = zones.entry(zone.name()).or_insert((zone, year, year));
            range.1 = range.1.min(year);
            range.2 = range.2.max(year);
        }
    };
    for FeedEvent { event, .. } in events {
        let schedule = &event.schedule;
        note(schedule.basis, schedule.start);
        for date in &schedule.rdates {
            if let Moment::Wall(wall) = date.at {
                note(schedule.basis, wall);
            }
        }
        for change in &event.overrides {
            let basis = change.basis.unwrap_or(schedule.basis);
            note(basis, change.start.unwrap_or(schedule.start));
            if let Moment::Wall(wall) = change.recurrence_id {
                note(schedule.basis, wall);
            }
        }
    }
    zones
}

fn write_master(feed_event: &FeedEvent<'_>) -> Vec<String> {
    let event = feed_event.event;
    let schedule = &event.schedule;
    let mut lines = event_header(feed_event);

    lines.push(date_line("DTSTART", schedule.basis, schedule.start));
    lines.push(end_line(schedule.basis, schedule.start, schedule.length));
    if let Some(rule) = &schedule.rrule {
        lines.push(format!("RRULE:{rule}"));
    }
    for date in &schedule.rdates {
        lines.push(match date.length {
            Some(length) => period_line(schedule.basis, date.at, length),
            None => moment_line("RDATE", schedule.basis, date.at),
        });
    }
    for moment in &schedule.exdates {
        lines.push(moment_line("EXDATE", schedule.basis, *moment));
    }
    lines.extend(detail_lines(&event.details, feed_event.url.as_deref()));
    lines.push("END:VEVENT".to_string());
    lines
}

fn write_override(feed_event: &FeedEvent<'_>, change: &NewOverride) -> Vec<String> {
    let schedule = &feed_event.event.schedule;
    let basis = change.basis.unwrap_or(schedule.basis);
    let start = match (change.start, change.recurrence_id) {
        (Some(start), _) => start,
        (None, Moment::Wall(wall)) => wall,
        (None, Moment::Utc(instant)) => basis.to_wall(instant),
    };
    let details = change.details.as_ref().unwrap_or(&feed_event.event.details);
    let mut lines = event_header(feed_event);

    lines.push(moment_line(
        "RECURRENCE-ID",
        schedule.basis,
        change.recurrence_id,
    ));
    lines.push(date_line("DTSTART", basis, start));
    lines.push(end_line(
        basis,
        start,
        change.length.unwrap_or(schedule.length),
    ));
    lines.extend(detail_lines(details, feed_event.url.as_deref()));
    lines.push("END:VEVENT".to_string());
    lines
}

fn event_header(feed_event: &FeedEvent<'_>) -> Vec<String> {
    let stamp = feed_event.last_modified.format("%Y%m%dT%H%M%SZ");
    vec![
        "BEGIN:VEVENT".to_string(),
        format!("UID:{}", feed_event.event.uid),
        format!("DTSTAMP:{stamp}"),
        format!("LAST-MODIFIED:{stamp}"),
        format!("SEQUENCE:{}", feed_event.sequence),
    ]
}

fn detail_lines(details: &EventDetails, url: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    if !details.title.is_empty() {
        lines.push(format!("SUMMARY:{}", escape_text(&details.title)));
    }
    if let Some(description) = &details.description {
        lines.push(format!("DESCRIPTION:{}", escape_text(description)));
    }
    let place_line = details
        .place
        .as_ref()
        .map(crate::calendar::event::Place::one_line);
    let location = details
        .location
        .clone()
        .or(place_line)
        .filter(|text| !text.is_empty());
    if let Some(location) = location {
        lines.push(format!("LOCATION:{}", escape_text(&location)));
    }
    if let Some(place) = &details.place
        && let (Some(latitude), Some(longitude)) = (place.latitude, place.longitude)
    {
        lines.push(format!("GEO:{latitude};{longitude}"));
    }
    if let Some(url) = url.or(details.online_url.as_deref()) {
        lines.push(format!("URL:{}", url.replace(['\r', '\n'], "")));
    }
    lines.push(format!("STATUS:{}", details.status.as_ical()));
    lines
}

/// `NAME;TZID=zone:wall`, `NAME:wallZ`, `NAME:wall` or `NAME;VALUE=DATE:date`.
fn date_line(name: &str, basis: TimeBasis, wall: NaiveDateTime) -> String {
    match basis {
        TimeBasis::Zoned(zone) => format!(
            "{name};TZID={}:{}",
            zone.name(),
            wall.format("%Y%m%dT%H%M%S")
        ),
        TimeBasis::Utc => format!("{name}:{}", wall.format("%Y%m%dT%H%M%SZ")),
        TimeBasis::Floating => format!("{name}:{}", wall.format("%Y%m%dT%H%M%S")),
        TimeBasis::AllDay => format!("{name};VALUE=DATE:{}", wall.format("%Y%m%d")),
    }
}

fn moment_line(name: &str, basis: TimeBasis, moment: Moment) -> String {
    match moment {
        Moment::Wall(wall) => date_line(name, basis, wall),
        Moment::Utc(instant) => format!("{name}:{}", instant.format("%Y%m%dT%H%M%SZ")),
    }
}

/// `RDATE;VALUE=PERIOD:start/duration`. A PERIOD needs a DATE-TIME start, so an all-day extra
/// date is written with its midnight as a floating time.
fn period_line(basis: TimeBasis, at: Moment, length: EventLength) -> String {
    let duration = format_duration(length);
    match (at, basis) {
        (Moment::Utc(_), _) | (Moment::Wall(_), TimeBasis::Utc) => {
            let instant = at.to_utc(basis);
            format!(
                "RDATE;VALUE=PERIOD:{}/{duration}",
                instant.format("%Y%m%dT%H%M%SZ")
            )
        }
        (Moment::Wall(wall), TimeBasis::Zoned(zone)) => format!(
            "RDATE;VALUE=PERIOD;TZID={}:{}/{duration}",
            zone.name(),
            wall.format("%Y%m%dT%H%M%S")
        ),
        (Moment::Wall(wall), TimeBasis::Floating | TimeBasis::AllDay) => {
            format!(
                "RDATE;VALUE=PERIOD:{}/{duration}",
                wall.format("%Y%m%dT%H%M%S")
            )
        }
    }
}

/// DTEND when the end can be written on the same basis and reads back as the same instant,
/// else DURATION.
fn end_line(basis: TimeBasis, start: NaiveDateTime, length: EventLength) -> String {
    if basis == TimeBasis::AllDay && length.seconds == 0 {
        return date_line("DTEND", basis, start + chrono::Duration::days(length.days));
    }
    if length.days == 0 && basis != TimeBasis::AllDay {
        let end = length.end_after(basis, start);
        let end_wall = basis.to_wall(end);
        if basis.to_utc(end_wall) == end {
            return date_line("DTEND", basis, end_wall);
        }
    }
    format!("DURATION:{}", format_duration(length))
}

/// `P2DT1H30M`, `PT0S`; days stay days because they are nominal.
fn format_duration(length: EventLength) -> String {
    let mut text = String::from("P");
    if length.days != 0 {
        let _ = write!(text, "{}D", length.days);
    }
    if length.seconds != 0 || length.days == 0 {
        let (hours, minutes, seconds) = (
            length.seconds / 3600,
            length.seconds % 3600 / 60,
            length.seconds % 60,
        );
        text.push('T');
        if hours != 0 {
            let _ = write!(text, "{hours}H");
        }
        if minutes != 0 {
            let _ = write!(text, "{minutes}M");
        }
        if seconds != 0 || (hours == 0 && minutes == 0) {
            let _ = write!(text, "{seconds}S");
        }
    }
    text
}

/// Escapes a TEXT value; CRLF and bare CR become `\n` like LF.
pub(crate) fn escape_text(text: &str) -> String {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(normalised.len());
    for c in normalised.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at [`FOLD_OCTETS`] octets on character boundaries, each part ending
/// in CRLF and continuation parts starting with a space.
fn fold_into(out: &mut String, line: &str) {
    let mut budget = FOLD_OCTETS;
    let mut used = 0;
    for c in line.chars() {
        if used + c.len_utf8() > budget {
            out.push_str("\r\n ");
            budget = FOLD_OCTETS - 1;
            used = 0;
        }
        out.push(c);
        used += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_whole_characters() {
        let mut out = String::new();
        fold_into(&mut out, &format!("SUMMARY:{}", "Ж".repeat(100)));
        for line in out.split("\r\n").filter(|line| !line.is_empty()) {
            assert!(line.len() <= FOLD_OCTETS, "{} octets: {line}", line.len());
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded, format!("SUMMARY:{}\r\n", "Ж".repeat(100)));
    }

    #[test]
    fn escape_text_escapes_the_four_specials() {
        assert_eq!(escape_text("a;b,c\\d\r\ne"), "a\\;b\\,c\\\\d\\ne");
    }

    #[test]
    fn duration_format_keeps_days_nominal() {
        assert_eq!(
            format_duration(EventLength {
                days: 1,
                seconds: 0
            }),
            "P1D"
        );
        assert_eq!(
            format_duration(EventLength {
                days: 0,
                seconds: 86_400
            }),
            "PT24H"
        );
        assert_eq!(
            format_duration(EventLength {
                days: 2,
                seconds: 5_430
            }),
            "P2DT1H30M30S"
        );
        assert_eq!(format_duration(EventLength::default()), "PT0S");
    }
}
