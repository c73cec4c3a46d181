//! JSON shapes of events and how they map to [`NewEvent`].
//!
//! Times in requests are wall times (`2026-05-01T19:00`, seconds optional) read in `zone`, which
//! defaults to the calendar's zone. `floating: true` keeps them zone-less, `all_day: true` takes
//! dates (`2026-05-01`), and a value ending in `Z` is UTC. Lengths are ISO 8601 durations
//! (`PT1H30M`, `P1D`, `P1W`), or an `end` wall time whose distance from `start` is measured
//! between the two instants.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::calendar::event::{EventDetails, EventStatus, ExtraDate, NewEvent, Place, Schedule};
use crate::calendar::store::StoredEvent;
use crate::calendar::time::{EventLength, Moment, TimeBasis};

/// An event as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Stable id; generated when absent.
    pub uid: Option<String>,
    /// Title.
    pub title: String,
    /// Longer text.
    pub description: Option<String>,
    /// Free-text location.
    pub location: Option<String>,
    /// Structured place.
    pub place: Option<Place>,
    /// Link to join online.
    pub online_url: Option<String>,
    /// Seats per occurrence.
    pub capacity: Option<i32>,
    /// `confirmed` (default), `tentative` or `cancelled`.
    pub status: Option<String>,
    /// First start (wall time, date for all-day, or `…Z` for UTC).
    pub start: String,
    /// End wall time; exclusive with `duration`.
    pub end: Option<String>,
    /// ISO 8601 duration; exclusive with `end`.
    pub duration: Option<String>,
    /// IANA zone; defaults to the calendar's.
    pub zone: Option<String>,
    /// Zone-less wall times.
    #[serde(default)]
    pub floating: bool,
    /// Whole days.
    #[serde(default)]
    pub all_day: bool,
    /// RRULE value, without `RRULE:`.
    pub rrule: Option<String>,
    /// Extra starts, written like `start`.
    #[serde(default)]
    pub rdate: Vec<String>,
    /// Excluded starts, written like `start`.
    #[serde(default)]
    pub exdate: Vec<String>,
}

/// An event as the API returns it.
#[derive(Debug, Serialize)]
pub struct EventOutput {
    /// Database id.
    pub id: i64,
    /// Calendar slug.
    pub calendar: String,
    /// Stable id.
    pub uid: String,
    /// Title.
    pub title: String,
    /// Longer text.
    pub description: Option<String>,
    /// Free-text location.
    pub location: Option<String>,
    /// Structured place.
    pub place: Option<Place>,
    /// Link to join online.
    pub online_url: Option<String>,
    /// Seats per occurrence.
    pub capacity: Option<i32>,
    /// Status.
    pub status: EventStatus,
    /// First start as a wall time (date for all-day).
    pub start: String,
    /// ISO 8601 length.
    pub duration: String,
    /// IANA zone, or null for floating, all-day and UTC events.
    pub zone: Option<String>,
    /// Zone-less.
    pub floating: bool,
    /// Whole days.
    pub all_day: bool,
    /// RRULE.
    pub rrule: Option<String>,
    /// Extra starts.
    pub rdate: Vec<String>,
    /// Excluded starts.
    pub exdate: Vec<String>,
    /// Single-occurrence changes, by original start.
    pub overrides: Vec<OverrideOutput>,
    /// Revision number.
    pub sequence: i32,
    /// ActivityPub id of the event.
    pub url: String,
}

/// One override as the API returns it.
#[derive(Debug, Serialize)]
pub struct OverrideOutput {
    /// Original start of the replaced occurrence, UTC (pinned for floating and all-day).
    pub recurrence_id: String,
    /// New start wall time, if moved.
    pub start: Option<String>,
    /// New length, if changed.
    pub duration: Option<String>,
    /// Replacement fields, if changed.
    pub details: Option<EventDetails>,
}

/// Converts a request into an event, reading times in `default_zone` unless it names one.
pub fn event_from_input(input: EventInput, default_zone: Tz) -> Result<NewEvent, ApiError> {
    if input.title.trim().is_empty() {
        return Err(ApiError::invalid(
            "title",
            &input.title,
            "must not be empty",
        ));
    }
    let basis = basis_of(&input, default_zone)?;
    let start = parse_wall("start", &input.start, basis)?;
    let length = length_of(&input, basis, start)?;
    let status = match input.status.as_deref() {
        None => EventStatus::Confirmed,
        Some(text) => EventStatus::parse(text).ok_or_else(|| {
            ApiError::invalid("status", text, "must be confirmed, tentative or cancelled")
        })?,
    };
    let rdates = parse_moments("rdate", &input.rdate, basis)?
        .into_iter()
        .map(|at| ExtraDate { at, length: None })
        .collect();
    let exdates = parse_moments("exdate", &input.exdate, basis)?;
    let rrule = input
        .rrule
        .map(|rule| rule.trim().trim_start_matches("RRULE:").to_owned())
        .filter(|rule| !rule.is_empty());
    Ok(NewEvent {
        uid: input
            .uid
            .unwrap_or_else(|| format!("{}@rose-events", uuid::Uuid::new_v4())),
        details: EventDetails {
            title: input.title,
            description: input.description,
            location: input.location,
            place: input.place.filter(|place| !place.is_empty()),
            online_url: input.online_url,
            status,
        },
        schedule: Schedule {
            start,
            basis,
            length,
            rrule,
            rdates,
            exdates,
        },
        capacity: input.capacity,
        overrides: Vec::new(),
    })
}

fn basis_of(input: &EventInput, default_zone: Tz) -> Result<TimeBasis, ApiError> {
    if input.all_day && input.floating {
        return Err(ApiError::invalid(
            "floating",
            true,
            "an all-day event is already zone-less",
        ));
    }
    if input.all_day {
        return Ok(TimeBasis::AllDay);
    }
    if input.floating {
        return Ok(TimeBasis::Floating);
    }
    if input.zone.is_none() && input.start.ends_with('Z') {
        return Ok(TimeBasis::Utc);
    }
    match input.zone.as_deref() {
        None => Ok(TimeBasis::Zoned(default_zone)),
        Some(name) => parse_zone("zone", name).map(TimeBasis::Zoned),
    }
}

/// Parses an IANA zone name.
pub fn parse_zone(field: &str, name: &str) -> Result<Tz, ApiError> {
    name.parse::<Tz>()
        .map_err(|_| ApiError::invalid(field, name, "is not an IANA time zone name"))
}

fn length_of(
    input: &EventInput,
    basis: TimeBasis,
    start: NaiveDateTime,
) -> Result<EventLength, ApiError> {
    match (&input.end, &input.duration) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "end",
            input.end.as_deref().unwrap_or_default(),
            "give either end or duration, not both",
        )),
        (Some(end), None) => {
            let end_wall = parse_wall("end", end, basis)?;
            if end_wall < start {
                return Err(ApiError::invalid("end", end, "is before start"));
            }
            if basis == TimeBasis::AllDay {
                let days = (end_wall - start).num_days();
                return Ok(EventLength { days, seconds: 0 });
            }
            let seconds = (basis.to_utc(end_wall) - basis.to_utc(start)).num_seconds();
            Ok(EventLength {
                days: 0,
                seconds: seconds.max(0),
            })
        }
        (None, Some(text)) => parse_duration("duration", text),
        (None, None) if basis == TimeBasis::AllDay => Ok(EventLength {
            days: 1,
            seconds: 0,
        }),
        (None, None) => Ok(EventLength::default()),
    }
}

/// Parses a wall time on `basis`: a date for all-day, else a date-time with optional seconds;
/// a `Z` or offset suffix gives an instant, converted to the basis' wall clock.
pub fn parse_wall(field: &str, text: &str, basis: TimeBasis) -> Result<NaiveDateTime, ApiError> {
    match parse_moment(field, text, basis)? {
        Moment::Wall(wall) => Ok(wall),
        Moment::Utc(instant) => {
            if matches!(basis, TimeBasis::Floating | TimeBasis::AllDay) {
                return Err(ApiError::invalid(
                    field,
                    text,
                    "a floating or all-day time must not carry a zone offset",
                ));
            }
            Ok(basis.to_wall(instant))
        }
    }
}

fn parse_moments(field: &str, texts: &[String], basis: TimeBasis) -> Result<Vec<Moment>, ApiError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| parse_moment(&format!("{field}[{i}]"), text, basis))
        .collect()
}

/// Parses a wall time on `basis`, or an instant when the text carries `Z` or an offset.
pub fn parse_moment(field: &str, text: &str, basis: TimeBasis) -> Result<Moment, ApiError> {
    let text = text.trim();
    if basis == TimeBasis::AllDay {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(field, text, "must be a date like 2026-05-01"))?;
        return Ok(Moment::Wall(date.and_time(NaiveTime::MIN)));
    }
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Moment::Utc(instant.to_utc()));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(wall) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Moment::Wall(wall));
        }
    }
    Err(ApiError::invalid(
        field,
        text,
        "must be a date-time like 2026-05-01T19:00 (or with Z or an offset for an instant)",
    ))
}

/// Parses an ISO 8601 duration: `PnW`, or `PnDTnHnMnS` with any part left out.
pub fn parse_duration(field: &str, text: &str) -> Result<EventLength, ApiError> {
    let invalid = || ApiError::invalid(field, text, "must be an ISO 8601 duration like PT1H30M");
    let rest = text.trim().strip_prefix('P').ok_or_else(invalid)?;
    let (date_part, time_part) = rest.split_once('T').unwrap_or((rest, ""));
    if date_part.is_empty() && time_part.is_empty() {
        return Err(invalid());
    }
    let mut days = 0_i64;
    for (number, unit) in duration_parts(date_part).ok_or_else(invalid)? {
        days = match unit {
            'W' => days.checked_add(number.checked_mul(7).ok_or_else(invalid)?),
            'D' => days.checked_add(number),
            _ => None,
        }
        .ok_or_else(invalid)?;
    }
    let mut seconds = 0_i64;
    for (number, unit) in duration_parts(time_part).ok_or_else(invalid)? {
        let scale = match unit {
            'H' => 3_600,
            'M' => 60,
            'S' => 1,
            _ => return Err(invalid()),
        };
        seconds = number
            .checked_mul(scale)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(invalid)?;
    }
    Ok(EventLength { days, seconds })
}

fn duration_parts(text: &str) -> Option<Vec<(i64, char)>> {
    let mut parts = Vec::new();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            parts.push((digits.parse().ok()?, c));
            digits.clear();
        }
    }
    digits.is_empty().then_some(parts)
}

/// Formats a length as an ISO 8601 duration (`P1D`, `PT1H30M`, `PT0S`).
pub fn format_duration(length: EventLength) -> String {
    use std::fmt::Write;
    let mut text = String::from("P");
    if length.days > 0 {
        let _ = write!(text, "{}D", length.days);
    }
    let (h, m, s) = (
        length.seconds / 3600,
        length.seconds % 3600 / 60,
        length.seconds % 60,
    );
    if h > 0 || m > 0 || s > 0 || length.days == 0 {
        text.push('T');
        if h > 0 {
            let _ = write!(text, "{h}H");
        }
        if m > 0 {
            let _ = write!(text, "{m}M");
        }
        if s > 0 || (h == 0 && m == 0) {
            let _ = write!(text, "{s}S");
        }
    }
    text
}

/// Formats a wall time the way requests write it.
pub fn format_wall(wall: NaiveDateTime, basis: TimeBasis) -> String {
    match basis {
        TimeBasis::AllDay => wall.date().format("%Y-%m-%d").to_string(),
        TimeBasis::Utc => wall.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        TimeBasis::Zoned(_) | TimeBasis::Floating => wall.format("%Y-%m-%dT%H:%M:%S").to_string(),
    }
}

fn format_moment(moment: Moment, basis: TimeBasis) -> String {
    match moment {
        Moment::Wall(wall) => format_wall(wall, basis),
        Moment::Utc(instant) => instant.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// Builds the response for a stored event.
pub fn event_output(stored: &StoredEvent, calendar_slug: &str, public_url: &str) -> EventOutput {
    let event = &stored.event;
    let schedule = &event.schedule;
    let basis = schedule.basis;
    EventOutput {
        id: stored.id,
        calendar: calendar_slug.to_owned(),
        uid: event.uid.clone(),
        title: event.details.title.clone(),
        description: event.details.description.clone(),
        location: event.details.location.clone(),
        place: event.details.place.clone(),
        online_url: event.details.online_url.clone(),
        capacity: event.capacity,
        status: event.details.status,
        start: format_wall(schedule.start, basis),
        duration: format_duration(schedule.length),
        zone: basis.zone().map(|tz| tz.name().to_owned()),
        floating: basis == TimeBasis::Floating,
        all_day: basis == TimeBasis::AllDay,
        rrule: schedule.rrule.clone(),
        rdate: schedule
            .rdates
            .iter()
            .map(|r| format_moment(r.at, basis))
            .collect(),
        exdate: schedule
            .exdates
            .iter()
            .map(|m| format_moment(*m, basis))
            .collect(),
        overrides: event
            .overrides
            .iter()
            .map(|o| OverrideOutput {
                recurrence_id: format_moment(Moment::Utc(o.recurrence_id.to_utc(basis)), basis),
                start: o
                    .start
                    .map(|wall| format_wall(wall, o.basis.unwrap_or(basis))),
                duration: o.length.map(format_duration),
                details: o.details.clone(),
            })
            .collect(),
        sequence: stored.sequence,
        url: format!("{public_url}/events/{}", stored.id),
    }
}
