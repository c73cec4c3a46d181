//! Whole-file iCalendar import into a calendar, and the calendar's feed.

use chrono::Utc;

use super::event::NewEvent;
use super::ics::{FeedEvent, parse_calendar, write_calendar};
use super::validate::{InvalidField, check_event, check_slug};
use super::{Calendar, Error, NewCalendar, Visibility, store};
use crate::db::{AnyConnection, write_transaction};

/// Largest number of events one file may bring.
pub const MAX_IMPORT_EVENTS: usize = 10_000;

/// What an import changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Events that were new to the calendar.
    pub created: usize,
    /// Events whose UID was already there and were replaced.
    pub updated: usize,
}

/// Imports an iCalendar file into the calendar `slug`, creating the calendar when missing.
///
/// The file is parsed and every event checked before anything is written, and all writes happen
/// in one transaction: a bad file changes nothing. Events are matched by UID, so importing the
/// same file again updates them instead of adding copies.
pub fn import_ics(
    conn: &mut AnyConnection,
    slug: &str,
    bytes: &[u8],
) -> Result<ImportReport, Error> {
    check_slug(slug)?;
    let parsed = parse_calendar(bytes)?;
    if parsed.events.len() > MAX_IMPORT_EVENTS {
        return Err(InvalidField::new(
            "events",
            format!("{} events", parsed.events.len()),
            format!("one import may hold at most {MAX_IMPORT_EVENTS}"),
        )
        .into());
    }
    let mut prepared = Vec::with_capacity(parsed.events.len());
    for event in &parsed.events {
        check_imported(event)?;
        prepared.push(store::prepare_event(event).map_err(|error| in_event(event, error))?);
    }
    write_transaction(conn, |conn| {
        let calendar = find_or_create(conn, slug, parsed.name.as_deref())?;
        let mut report = ImportReport::default();
        for event in &prepared {
            let (_, created) = store::upsert_prepared(conn, calendar.id, event)?;
            if created {
                report.created += 1;
            } else {
                report.updated += 1;
            }
        }
        Ok(report)
    })
}

/// Writes the calendar `slug` as an iCalendar feed.
pub fn export_ics(conn: &mut AnyConnection, slug: &str, public_url: &str) -> Result<String, Error> {
    let calendar = store::find_calendar(conn, slug)?
        .ok_or_else(|| Error::CalendarNotFound(slug.to_owned()))?;
    let events = store::events_of_calendar(conn, calendar.id)?;
    let feed: Vec<FeedEvent<'_>> = events
        .iter()
        .map(|stored| FeedEvent {
            event: &stored.event,
            url: Some(format!("{public_url}/events/{}", stored.id)),
            last_modified: stored.updated_at,
            sequence: stored.sequence,
        })
        .collect();
    Ok(write_calendar(&calendar.name, &feed))
}

fn check_imported(event: &NewEvent) -> Result<(), Error> {
    check_event(event).map_err(|invalid| in_event(event, Error::Invalid(invalid)))
}

/// Names the event in a field error, since a file holds many.
fn in_event(event: &NewEvent, error: Error) -> Error {
    match error {
        Error::Invalid(mut invalid) => {
            invalid.field = format!("event {:?} {}", event.uid, invalid.field);
            Error::Invalid(invalid)
        }
        other => other,
    }
}

fn find_or_create(
    conn: &mut AnyConnection,
    slug: &str,
    name: Option<&str>,
) -> Result<Calendar, Error> {
    if let Some(calendar) = store::find_calendar(conn, slug)? {
        return Ok(calendar);
    }
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(slug)
        .chars()
        .take(super::validate::MAX_CALENDAR_NAME_CHARS)
        .collect();
    let new = NewCalendar {
        slug: slug.to_owned(),
        name,
        default_zone: chrono_tz::UTC,
        visibility: Visibility::Public,
    };
    tracing::info!(calendar = slug, at = %Utc::now(), "calendar created by import");
    store::insert_calendar(conn, &new)
}
