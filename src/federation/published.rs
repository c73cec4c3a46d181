//! The record of each event object and occurrence object as last published, so that the next
//! publication sends exactly the difference.
//!
//! Each row names one object id. Its *version* counts the activities sent about the object and
//! goes into their ids, so every Create, Update and Delete has an id of its own. Its
//! *fingerprint* is the SHA-256 of the object as sent without `updated`: an object whose
//! fingerprint is unchanged is not sent again. `updated` is the object's version for peers
//! (they keep a copy only when it is newer), so it rises by at least one second with every
//! activity about the object, even when seats change twice within a second.

use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Error;
use super::objects::event::utc_text;
use crate::db::AnyConnection;
use crate::db::schema::published_occurrences as table;

/// One published object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedObject {
    /// Database id; 0 before the row is stored.
    pub id: i64,
    /// The event it belongs to.
    pub event_id: i64,
    /// An occurrence's original start; `None` for an event's own object.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// The object id.
    pub object_id: String,
    /// Activities sent about the object so far.
    pub version: i32,
    /// SHA-256 (hex) of the object as last sent, without `updated`.
    pub fingerprint: String,
    /// End of the occurrence as last sent; once it has passed the object is left alone.
    pub ends_at: DateTime<Utc>,
    /// Whether the last activity was a Delete.
    pub deleted: bool,
    /// `updated` of the last activity.
    pub updated_at: DateTime<Utc>,
}

type Row = (
    i64,
    i64,
    Option<NaiveDateTime>,
    String,
    i32,
    String,
    NaiveDateTime,
    bool,
    NaiveDateTime,
);

const COLUMNS: (
    table::id,
    table::event_id,
    table::recurrence_id,
    table::object_id,
    table::version,
    table::fingerprint,
    table::ends_at,
    table::deleted,
    table::updated_at,
) = (
    table::id,
    table::event_id,
    table::recurrence_id,
    table::object_id,
    table::version,
    table::fingerprint,
    table::ends_at,
    table::deleted,
    table::updated_at,
);

fn from_row(row: Row) -> PublishedObject {
    let (id, event_id, recurrence_id, object_id, version, fingerprint, ends_at, deleted, updated) =
        row;
    PublishedObject {
        id,
        event_id,
        recurrence_id: recurrence_id.map(|t| t.and_utc()),
        object_id,
        version,
        fingerprint,
        ends_at: ends_at.and_utc(),
        deleted,
        updated_at: updated.and_utc(),
    }
}

/// Lists the published objects of event `event_id`.
pub fn of_event(conn: &mut AnyConnection, event_id: i64) -> Result<Vec<PublishedObject>, Error> {
    let rows: Vec<Row> = table::table
        .filter(table::event_id.eq(event_id))
        .order(table::id)
        .select(COLUMNS)
        .load(conn)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Finds the published object with id `object_id`.
pub fn find(conn: &mut AnyConnection, object_id: &str) -> Result<Option<PublishedObject>, Error> {
    let row: Option<Row> = table::table
        .filter(table::object_id.eq(object_id))
        .select(COLUMNS)
        .first(conn)
        .optional()?;
    Ok(row.map(from_row))
}

/// Stores `object`: inserts it when its id is 0, else updates its row.
pub fn save(conn: &mut AnyConnection, object: &PublishedObject) -> Result<(), Error> {
    let values = (
        table::event_id.eq(object.event_id),
        table::recurrence_id.eq(object.recurrence_id.map(|t| t.naive_utc())),
        table::object_id.eq(&object.object_id),
        table::version.eq(object.version),
        table::fingerprint.eq(&object.fingerprint),
        table::ends_at.eq(object.ends_at.naive_utc()),
        table::deleted.eq(object.deleted),
        table::updated_at.eq(object.updated_at.naive_utc()),
    );
    if object.id == 0 {
        diesel::insert_into(table::table)
            .values(values)
            .execute(conn)?;
    } else {
        diesel::update(table::table.find(object.id))
            .set(values)
            .execute(conn)?;
    }
    Ok(())
}

/// Forgets every object of a deleted event. Event ids are never reused, so neither are the
/// activity ids of its objects.
pub fn forget_event(conn: &mut AnyConnection, event_id: i64) -> Result<usize, Error> {
    Ok(diesel::delete(table::table.filter(table::event_id.eq(event_id))).execute(conn)?)
}

/// Sets `updated` of an object served on request to that of its last activity, so a peer that
/// fetches it reads the version it was last sent.
pub fn stamp(conn: &mut AnyConnection, object: &mut super::protocol::Event) -> Result<(), Error> {
    if let Some(published) = find(conn, &object.id)?
        && !published.deleted
    {
        object.updated = utc_text(published.updated_at);
    }
    Ok(())
}

/// Returns the SHA-256 (hex) of `object` without its `updated` field.
pub fn fingerprint(object: &Value) -> String {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("updated");
    }
    // serde_json keeps object keys sorted, so equal objects give equal text.
    super::hex(&Sha256::digest(copy.to_string().as_bytes()))
}

/// Returns the `updated` of the next activity about an object: `now` in whole seconds, and at
/// least one second after the `previous` one.
pub fn next_updated(previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
    match previous {
        Some(previous) if previous >= now => previous + Duration::seconds(1),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    #[test]
    fn fingerprint_ignores_updated_only() {
        let first = json!({"id": "a", "name": "x", "updated": "2030-01-01T00:00:00Z"});
        let later = json!({"id": "a", "name": "x", "updated": "2030-02-01T00:00:00Z"});
        let renamed = json!({"id": "a", "name": "y", "updated": "2030-01-01T00:00:00Z"});
        assert_eq!(fingerprint(&first), fingerprint(&later));
        assert_ne!(fingerprint(&first), fingerprint(&renamed));
    }

    #[test]
    fn updated_rises_within_one_second() {
        let now = at("2030-01-01T10:00:00.400Z");
        assert_eq!(next_updated(None, now), at("2030-01-01T10:00:00Z"));
        let previous = at("2030-01-01T10:00:00Z");
        assert_eq!(
            next_updated(Some(previous), now),
            at("2030-01-01T10:00:01Z")
        );
        let old = at("2029-12-31T10:00:00Z");
        assert_eq!(next_updated(Some(old), now), at("2030-01-01T10:00:00Z"));
    }
}
