//! Telling followers about our events: Create, Update and Delete of a calendar's events go to
//! the calendar's followers and to the instance actor's followers, through the outbox.
//!
//! Each activity is built from the event as stored, so it is called after the change in the
//! same transaction. What peers receive:
//!
//! - a one-off event is one `Event` object, `{public_url}/events/{id}`. It gets an `Update`
//!   when the event changes and when its seats left change (see [`super::refresh`]);
//! - a recurring event is its series object with the same id, timed at its next occurrence.
//!   It carries its RRULE, EXDATE, RDATE and DTSTART in `rose:` terms for peers that expand
//!   recurrence. Each upcoming occurrence is also an `Event` of its own (see
//!   [`super::series`]), created when it comes within the horizon, updated when it changes and
//!   deleted when it vanishes.
//!
//! NOTE: only the event routes of the JSON API publish. Events written by an iCalendar import
//! and events removed with their calendar are not announced, so followers keep stale copies
//! of those until the event is next changed through the API.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::objects::event::{Publisher, series_object, utc_text};
use super::published::{self, PublishedObject};
use super::{Error, PUBLIC, actors, follows, outbox, series};
use crate::calendar::store::StoredEvent;
use crate::db::AnyConnection;

/// Whether an event is new or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Newly scheduled: `Create`.
    Created,
    /// Changed, moved, filled up or cancelled: `Update`.
    Updated,
}

/// Publishes a Create or Update of `stored` (in calendar `slug`) to its audience, and the
/// Creates, Updates and Deletes of its occurrence objects that the change causes.
pub fn event_changed(
    conn: &mut AnyConnection,
    public_url: &str,
    stored: &StoredEvent,
    slug: &str,
    change: Change,
) -> Result<(), Error> {
    let now = Utc::now();
    let publisher = publisher(conn, public_url, stored, slug)?;
    let kind = match change {
        Change::Created => "Create",
        Change::Updated => "Update",
    };
    // The sequence rises on every change, so each Update gets its own id.
    let suffix = format!("{}-{}", kind.to_ascii_lowercase(), stored.sequence);
    send_event_object(conn, &publisher, stored, kind, &suffix, now)?;
    series::sync(conn, &publisher, stored, now)?;
    Ok(())
}

/// Publishes an Update of the object of one-off event `stored` when it differs from the copy
/// last sent, for example because its seats left changed. Returns whether it sent one.
pub fn event_object_refreshed(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    stored: &StoredEvent,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let object_id = format!("{}/events/{}", publisher.public_url, stored.id);
    let last = published::find(conn, &object_id)?;
    let version = last.as_ref().map_or(0, |l| l.version) + 1;
    let suffix = format!("seats-{version}");
    let unchanged = |object: &Value| {
        last.as_ref()
            .is_some_and(|l| l.fingerprint == published::fingerprint(object))
    };
    send_event_object_unless(conn, publisher, stored, "Update", &suffix, now, unchanged)
}

/// Finds the calendar zone and names where `stored` is published.
pub fn publisher<'a>(
    conn: &mut AnyConnection,
    public_url: &'a str,
    stored: &StoredEvent,
    slug: &'a str,
) -> Result<Publisher<'a>, Error> {
    let calendar_zone = crate::calendar::store::find_calendar_by_id(conn, stored.calendar_id)?
        .map_or(chrono_tz::UTC, |calendar| calendar.default_zone);
    Ok(Publisher {
        public_url,
        calendar_slug: slug,
        calendar_zone,
    })
}

fn send_event_object(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    stored: &StoredEvent,
    kind: &str,
    suffix: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    send_event_object_unless(conn, publisher, stored, kind, suffix, now, |_| false)
}

/// Builds the event's own object and sends it as `kind` with id `{object id}#{suffix}`, unless
/// `unchanged` returns true because peers already have it. Records what was sent.
fn send_event_object_unless(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    stored: &StoredEvent,
    kind: &str,
    suffix: &str,
    now: DateTime<Utc>,
    unchanged: impl Fn(&Value) -> bool,
) -> Result<bool, Error> {
    let seats = crate::booking::store::occurrence_seats(conn, stored.id)?;
    // NOTE: an event without any occurrence (every instance excluded) has no object to send,
    // so its followers keep the previous copy until it is deleted.
    let Some(object) = series_object(stored, publisher, now, &seats) else {
        return Ok(false);
    };
    let mut object = serde_json::to_value(&object).unwrap_or(Value::Null);
    if unchanged(&object) {
        return Ok(false);
    }
    let object_id = object["id"].as_str().unwrap_or_default().to_owned();
    let mut record = published::find(conn, &object_id)?.unwrap_or(PublishedObject {
        id: 0,
        event_id: stored.id,
        recurrence_id: None,
        object_id: object_id.clone(),
        version: 0,
        fingerprint: String::new(),
        ends_at: now,
        deleted: false,
        updated_at: stored.updated_at,
    });
    let previous = (record.version > 0).then_some(record.updated_at);
    let updated = published::next_updated(previous, stored.updated_at.max(now));
    object["updated"] = Value::String(utc_text(updated));
    let id = format!("{object_id}#{suffix}");
    send(conn, publisher, stored.calendar_id, &id, kind, &object)?;
    record.version += 1;
    record.fingerprint = published::fingerprint(&object);
    record.ends_at = object["endTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.to_utc());
    record.deleted = false;
    record.updated_at = updated;
    published::save(conn, &record)?;
    Ok(true)
}

/// Publishes a Delete (with a Tombstone) of event `event_id` of calendar `calendar_id`, and of
/// each of its occurrence objects peers still have.
pub fn event_deleted(
    conn: &mut AnyConnection,
    public_url: &str,
    event_id: i64,
    calendar_id: i64,
    slug: &str,
) -> Result<(), Error> {
    let now = Utc::now();
    let object_id = format!("{public_url}/events/{event_id}");
    let tombstone = tombstone(&object_id, now);
    let id = format!("{object_id}#delete");
    let publisher = Publisher {
        public_url,
        calendar_slug: slug,
        calendar_zone: chrono_tz::UTC,
    };
    send(conn, &publisher, calendar_id, &id, "Delete", &tombstone)?;
    series::withdraw(conn, &publisher, event_id, calendar_id, now)?;
    Ok(())
}

/// Builds the Tombstone of a deleted Event object.
pub(super) fn tombstone(object_id: &str, deleted: DateTime<Utc>) -> Value {
    json!({
        "id": object_id,
        "type": "Tombstone",
        "formerType": "Event",
        "deleted": utc_text(deleted),
    })
}

/// Records activity `id` of `kind` about `object` in the outbox of the calendar's actor,
/// addressed to the public and to the calendar's audience.
pub(super) fn send(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    calendar_id: i64,
    id: &str,
    kind: &str,
    object: &Value,
) -> Result<(), Error> {
    let actor = actors::calendar_id(publisher.public_url, publisher.calendar_slug);
    let activity = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": id,
        "type": kind,
        "actor": actor,
        "published": utc_text(Utc::now()),
        "to": [PUBLIC],
        "cc": [format!("{actor}/followers")],
        "object": object,
    });
    let recipients = follows::audience_inboxes(conn, calendar_id)?;
    outbox::publish(conn, &activity, &recipients)?;
    Ok(())
}
