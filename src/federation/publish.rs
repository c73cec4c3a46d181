//! Telling followers about our events: Create, Update and Delete of a calendar's events go to
//! the calendar's followers and to the instance actor's followers, through the outbox.
//!
//! Each activity is built from the event as stored, so it is called after the change in the
//! same transaction. A recurring event goes out as one `Event` for the series, timed at its
//! next occurrence and carrying its RRULE in our `rose:` terms.
//!
//! NOTE: only the event routes of the JSON API publish. Events written by an iCalendar import
//! and events removed with their calendar are not announced, so followers keep stale copies
//! of those until the event is next changed through the API.

use chrono::Utc;
use serde_json::{Value, json};

use super::objects::event::{Publisher, series_object};
use super::{Error, PUBLIC, actors, follows, outbox};
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

/// Publishes a Create or Update of `stored` (in calendar `slug`) to its audience.
pub fn event_changed(
    conn: &mut AnyConnection,
    public_url: &str,
    stored: &StoredEvent,
    slug: &str,
    change: Change,
) -> Result<(), Error> {
    let calendar_zone = crate::calendar::store::find_calendar_by_id(conn, stored.calendar_id)?
        .map_or(chrono_tz::UTC, |calendar| calendar.default_zone);
    let publisher = Publisher {
        public_url,
        calendar_slug: slug,
        calendar_zone,
    };
    // NOTE: an event without any occurrence (every instance excluded) has no object to send,
    // so its followers keep the previous copy until it is deleted.
    let Some(object) = series_object(stored, &publisher, Utc::now()) else {
        return Ok(());
    };
    let object = serde_json::to_value(&object).unwrap_or(Value::Null);
    let kind = match change {
        Change::Created => "Create",
        Change::Updated => "Update",
    };
    let object_id = object["id"].as_str().unwrap_or_default().to_owned();
    // The sequence rises on every change, so each Update gets its own id.
    let id = format!(
        "{object_id}#{}-{}",
        kind.to_ascii_lowercase(),
        stored.sequence
    );
    send(
        conn,
        public_url,
        stored.calendar_id,
        slug,
        &id,
        kind,
        &object,
    )
}

/// Publishes a Delete (with a Tombstone) of event `event_id` of calendar `calendar_id`.
pub fn event_deleted(
    conn: &mut AnyConnection,
    public_url: &str,
    event_id: i64,
    calendar_id: i64,
    slug: &str,
) -> Result<(), Error> {
    let object_id = format!("{public_url}/events/{event_id}");
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let tombstone = json!({
        "id": object_id,
        "type": "Tombstone",
        "formerType": "Event",
        "deleted": now,
    });
    let id = format!("{object_id}#delete");
    send(
        conn,
        public_url,
        calendar_id,
        slug,
        &id,
        "Delete",
        &tombstone,
    )
}

fn send(
    conn: &mut AnyConnection,
    public_url: &str,
    calendar_id: i64,
    slug: &str,
    id: &str,
    kind: &str,
    object: &Value,
) -> Result<(), Error> {
    let actor = actors::calendar_id(public_url, slug);
    let activity = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": id,
        "type": kind,
        "actor": actor,
        "published": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "to": [PUBLIC],
        "cc": [format!("{actor}/followers")],
        "object": object,
    });
    let recipients = follows::audience_inboxes(conn, calendar_id)?;
    outbox::publish(conn, &activity, &recipients)?;
    Ok(())
}
