//! Our events as ActivityPub `Event` objects.
//!
//! A one-off event is one object. A recurring event is published as its series object, whose
//! times are those of the next occurrence and which carries the rule in `rose:` terms, plus one
//! object per occurrence linked to the series by `rose:series` and keyed by its original start
//! in `rose:recurrenceId`.
//!
//! `remainingAttendeeCapacity` is the capacity minus the seats booked, read from the booking
//! projection. Seats reserved by live holds are not subtracted: a hold lapses without any
//! write, so a copy that counted it would go stale at a peer.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::json;

use crate::booking::store::OccurrenceSeats;

use crate::calendar::event::{EventDetails, EventStatus};
use crate::calendar::occurrence::{Occurrence, not_ended, occurrences};
use crate::calendar::store::StoredEvent;
use crate::calendar::time::{Moment, TimeBasis, Window};
use crate::federation::protocol;

/// The ActivityStreams public collection.
pub const PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";

/// Where an event object lives and who publishes it.
pub struct Publisher<'a> {
    /// Public base URL without a trailing slash.
    pub public_url: &'a str,
    /// Slug of the event's calendar.
    pub calendar_slug: &'a str,
    /// The calendar's zone, in which floating and all-day times are published.
    pub calendar_zone: chrono_tz::Tz,
}

/// The id of one occurrence's object.
pub fn occurrence_id(public_url: &str, event_id: i64, recurrence_id: DateTime<Utc>) -> String {
    format!(
        "{public_url}/events/{event_id}/occurrences/{}",
        recurrence_id.format("%Y%m%dT%H%M%SZ")
    )
}

/// The seats of an event's occurrences, keyed by recurrence id (a one-off event's start), as
/// [`crate::booking::store::occurrence_seats`] loads them.
pub type Seats = HashMap<DateTime<Utc>, OccurrenceSeats>;

/// Returns the seats left at `occurrence`: its capacity (the occurrence's own, else the
/// event's) minus the seats booked, or `None` when it has no limit.
pub fn seats_left(stored: &StoredEvent, occurrence: &Occurrence, seats: &Seats) -> Option<i32> {
    let key = occurrence.recurrence_id.unwrap_or(occurrence.start);
    let booked = seats.get(&key).copied().unwrap_or_default();
    let capacity = booked.capacity_override.or(stored.event.capacity)?;
    Some((capacity - booked.seats_taken).max(0))
}

/// Builds the series object, timed at the first occurrence that has not ended by `now`, or at
/// the first one of all when all are over. `None` when the event has no occurrence at all.
///
/// NOTE: the seats left of a series object are those of the occurrence it is timed at when it
/// was sent. Only the occurrence objects (and a one-off event's object) are updated when seats
/// change, so peers should read capacity from those.
pub fn series_object(
    stored: &StoredEvent,
    publisher: &Publisher<'_>,
    now: DateTime<Utc>,
    seats: &Seats,
) -> Option<protocol::Event> {
    let next = next_occurrence(stored, now)?;
    let mut object = build(stored, &next, publisher, seats_left(stored, &next, seats));
    let schedule = &stored.event.schedule;
    let basis = schedule.basis;
    if schedule.rrule.is_some() || !schedule.rdates.is_empty() {
        object.rrule.clone_from(&schedule.rrule);
        object.dtstart = Some(schedule.start.format("%Y-%m-%dT%H:%M:%S").to_string());
        object.exdate = schedule
            .exdates
            .iter()
            .map(|m| instant_text(*m, basis))
            .collect();
        object.rdate = schedule
            .rdates
            .iter()
            .map(|r| instant_text(r.at, basis))
            .collect();
    }
    Some(object)
}

/// Builds the object of one occurrence, with its own seats left and, when an override cancelled
/// it, status `CANCELLED`.
pub fn occurrence_object(
    stored: &StoredEvent,
    occurrence: &Occurrence,
    publisher: &Publisher<'_>,
    seats: &Seats,
) -> protocol::Event {
    let left = seats_left(stored, occurrence, seats);
    let mut object = build(stored, occurrence, publisher, left);
    if let Some(recurrence_id) = occurrence.recurrence_id {
        object.id = occurrence_id(publisher.public_url, stored.id, recurrence_id);
        object.url.clone_from(&object.id);
        object.series = Some(format!("{}/events/{}", publisher.public_url, stored.id));
        object.recurrence_id = Some(utc_text(recurrence_id));
    }
    object
}

fn next_occurrence(stored: &StoredEvent, now: DateTime<Utc>) -> Option<Occurrence> {
    let basis = stored.event.schedule.basis;
    let first = basis.to_utc(stored.event.schedule.start);
    let upcoming = not_ended(&stored.event, now, DateTime::<Utc>::MAX_UTC, 64).ok()?;
    let live = upcoming
        .iter()
        .find(|o| o.details.status != EventStatus::Cancelled)
        .or_else(|| upcoming.first())
        .cloned();
    if live.is_some() {
        return live;
    }
    let all = Window {
        from: first
            .checked_sub_signed(chrono::Duration::days(36_500))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        to: DateTime::<Utc>::MAX_UTC,
    };
    occurrences(&stored.event, all, 1)
        .ok()?
        .occurrences
        .into_iter()
        .next()
}

fn build(
    stored: &StoredEvent,
    occurrence: &Occurrence,
    publisher: &Publisher<'_>,
    seats_left: Option<i32>,
) -> protocol::Event {
    let details = &occurrence.details;
    let basis = occurrence.basis;
    let public_url = publisher.public_url;
    let actor = format!("{public_url}/calendars/{}", publisher.calendar_slug);
    let id = format!("{public_url}/events/{}", stored.id);
    let capacity = stored.event.capacity;
    let location = place(details);
    protocol::Event {
        context: context(),
        url: id.clone(),
        id,
        kind: "Event",
        name: details.title.clone(),
        // ActivityStreams reads `summary` as HTML, so text from the event is escaped.
        summary: escape_html(&summary(occurrence)),
        content: details.description.as_deref().map(html_paragraphs),
        media_type: details.description.as_ref().map(|_| "text/html"),
        start_time: wire_time(occurrence.start, basis, publisher.calendar_zone),
        end_time: wire_time(occurrence.end, basis, publisher.calendar_zone),
        timezone: Some(
            basis
                .zone()
                .unwrap_or(publisher.calendar_zone)
                .name()
                .to_owned(),
        ),
        status: details.status.as_ical(),
        is_online: location.is_none() && details.online_url.is_some(),
        location,
        attachment: details
            .online_url
            .iter()
            .map(|href| protocol::EventLink {
                kind: "Link",
                name: "Online".to_owned(),
                href: href.clone(),
                media_type: "text/html",
            })
            .collect(),
        maximum_attendee_capacity: capacity.unwrap_or(0),
        remaining_attendee_capacity: seats_left,
        attributed_to: actor.clone(),
        to: vec![PUBLIC.to_owned()],
        cc: vec![format!("{actor}/followers")],
        published: utc_text(stored.created_at),
        updated: utc_text(stored.updated_at),
        series: None,
        recurrence_id: None,
        rrule: None,
        exdate: Vec::new(),
        rdate: Vec::new(),
        dtstart: None,
        all_day: basis == TimeBasis::AllDay,
    }
}

fn context() -> serde_json::Value {
    json!([
        "https://www.w3.org/ns/activitystreams",
        {
            "sc": "http://schema.org#",
            "ical": "http://www.w3.org/2002/12/cal/ical#",
            "mz": "https://joinmobilizon.org/ns#",
            "rose": "https://rose-ash.org/ns/events#",
            "status": "ical:status",
            "timezone": "mz:timezone",
            "isOnline": "mz:isOnline",
            "PostalAddress": "sc:PostalAddress",
            "address": "sc:address",
            "streetAddress": "sc:streetAddress",
            "addressLocality": "sc:addressLocality",
            "addressRegion": "sc:addressRegion",
            "postalCode": "sc:postalCode",
            "addressCountry": "sc:addressCountry",
            "maximumAttendeeCapacity": "sc:maximumAttendeeCapacity",
            "remainingAttendeeCapacity": "sc:remainingAttendeeCapacity"
        }
    ])
}

/// A time as peers read it: with the zone's offset, or `Z` for UTC. Floating and all-day
/// values have no instant of their own, and peers read a time without an offset as UTC or
/// reject it, so they go out as that wall time in the calendar's zone, with its offset.
fn wire_time(pinned: DateTime<Utc>, basis: TimeBasis, calendar_zone: chrono_tz::Tz) -> String {
    let (instant, zone) = match basis {
        TimeBasis::Zoned(tz) => (pinned, tz),
        TimeBasis::Utc => return utc_text(pinned),
        TimeBasis::Floating | TimeBasis::AllDay => (
            crate::calendar::time::resolve_local(calendar_zone, pinned.naive_utc()),
            calendar_zone,
        ),
    };
    instant
        .with_timezone(&zone)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Formats an instant as RFC 3339 UTC with whole seconds, the form of `published` and
/// `updated`.
pub fn utc_text(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn instant_text(moment: Moment, basis: TimeBasis) -> String {
    utc_text(moment.to_utc(basis))
}

/// "Sun 1 Mar 2026, 10:00 to 12:00", with the end's date too when it falls on another day, and
/// the start alone for an event without length.
fn time_range(start: NaiveDateTime, end: NaiveDateTime) -> String {
    let first = start.format("%a %-d %b %Y, %H:%M");
    if end <= start {
        first.to_string()
    } else if end.date() == start.date() {
        format!("{first} to {}", end.format("%H:%M"))
    } else {
        format!("{first} to {}", end.format("%a %-d %b %Y, %H:%M"))
    }
}

/// The plain-text line for servers that show only `summary`: date, times, zone and place.
pub fn summary(occurrence: &Occurrence) -> String {
    let basis = occurrence.basis;
    let when = match basis {
        TimeBasis::AllDay => {
            let last_day = (occurrence.end - chrono::Duration::seconds(1)).max(occurrence.start);
            if last_day.date_naive() == occurrence.start.date_naive() {
                format!("{} (all day)", occurrence.start.format("%a %-d %b %Y"))
            } else {
                format!(
                    "{} to {} (all day)",
                    occurrence.start.format("%a %-d %b %Y"),
                    last_day.format("%a %-d %b %Y")
                )
            }
        }
        TimeBasis::Floating => format!(
            "{} (local time)",
            time_range(occurrence.start.naive_utc(), occurrence.end.naive_utc())
        ),
        TimeBasis::Utc => format!(
            "{} UTC",
            time_range(occurrence.start.naive_utc(), occurrence.end.naive_utc())
        ),
        TimeBasis::Zoned(tz) => {
            let start = occurrence.start.with_timezone(&tz);
            let end = occurrence.end.with_timezone(&tz);
            format!(
                "{} {} (UTC{})",
                time_range(start.naive_local(), end.naive_local()),
                tz.name(),
                start.format("%:z")
            )
        }
    };
    let place = occurrence
        .details
        .place
        .as_ref()
        .map(crate::calendar::event::Place::one_line)
        .filter(|line| !line.is_empty())
        .or_else(|| occurrence.details.location.clone());
    match (place, &occurrence.details.online_url) {
        (Some(place), _) => format!("{when} - {place}"),
        (None, Some(url)) => format!("{when} - online: {url}"),
        (None, None) => when,
    }
}

fn place(details: &EventDetails) -> Option<protocol::Place> {
    let structured = details.place.as_ref().filter(|p| !p.is_empty());
    let name = structured
        .and_then(|p| p.name.clone())
        .or_else(|| details.location.clone())?;
    let address = structured.and_then(|p| {
        let any = p.street.is_some()
            || p.locality.is_some()
            || p.region.is_some()
            || p.postal_code.is_some()
            || p.country.is_some();
        any.then(|| protocol::PostalAddress {
            kind: "PostalAddress",
            street_address: p.street.clone(),
            address_locality: p.locality.clone(),
            address_region: p.region.clone(),
            postal_code: p.postal_code.clone(),
            address_country: p.country.clone(),
        })
    });
    Some(protocol::Place {
        kind: "Place",
        name,
        address,
        latitude: structured.and_then(|p| p.latitude),
        longitude: structured.and_then(|p| p.longitude),
    })
}

/// Escapes text and turns blank-line-separated blocks into paragraphs.
fn html_paragraphs(text: &str) -> String {
    let mut html = String::new();
    for block in text.split("\n\n").filter(|block| !block.trim().is_empty()) {
        html.push_str("<p>");
        html.push_str(&escape_html(block.trim()).replace('\n', "<br>"));
        html.push_str("</p>");
    }
    html
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
