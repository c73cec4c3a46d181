//! The occurrences of remote events, and the occurrence objects that change them.
//!
//! Each remote event has one row per occurrence, keyed by its *recurrence id*: the original
//! start that the origin names in `rose:recurrenceId` (the start itself for a one-off event).
//! An occurrence object from the origin turns its row into an *override*: the row takes the
//! object's start, end, status and seats left, and remembers the object's id and version.
//! Overrides survive a later Update of the series, which re-expands the plain rows around
//! them, and a Delete of the occurrence object leaves a deleted override, so that neither
//! the re-expansion nor a late, older copy brings the occurrence back.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::incoming::RemoteEventData;
use super::remote::{DEFAULT_LENGTH, Outcome, RemoteEvent, Span, Stored, find};
use super::{Error, domain_of};
use crate::db::AnyConnection;
use crate::db::schema::{remote_events, remote_occurrences};

/// A stored occurrence whose start changed or which is gone, as [`super::remote::upsert`] and
/// [`super::remote::delete`] report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedOccurrence {
    /// The remote event (the series) it belongs to.
    pub remote_event_id: i64,
    /// Its original start, which identifies it.
    pub recurrence_id: DateTime<Utc>,
    /// Its start before the change.
    pub old_start: DateTime<Utc>,
    /// Its start after the change; `None` when it is gone (deleted, excluded, or no longer in
    /// the series).
    pub new_start: Option<DateTime<Utc>>,
}

/// The overrides a re-expansion keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overrides {
    /// Those whose recurrence id the new expansion still has: the series is expanded here, so
    /// an override of an instance the series lost is stale.
    InExpansion,
    /// All: the series is stored as the one occurrence its object names (no rule we can
    /// expand), so its occurrence objects are the only record of the rest.
    All,
    /// None: the event is deleted.
    Nothing,
}

/// Takes a lock on `series_id` for the rest of the transaction (PostgreSQL; SQLite's write
/// transaction already excludes every other writer).
pub fn lock_series(conn: &mut AnyConnection, series_id: &str) -> Result<(), Error> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1)::bigint)")
            .bind::<diesel::sql_types::Text, _>(series_id)
            .execute(pg)?;
    }
    Ok(())
}

#[derive(Clone, Debug, Queryable)]
struct Row {
    id: i64,
    start_at: NaiveDateTime,
    end_at: NaiveDateTime,
    recurrence_id: Option<NaiveDateTime>,
    object_id: Option<String>,
    object_updated: Option<NaiveDateTime>,
    deleted: bool,
}

impl Row {
    fn key(&self) -> DateTime<Utc> {
        self.recurrence_id.unwrap_or(self.start_at).and_utc()
    }

    fn is_override(&self) -> bool {
        self.object_id.is_some() || self.deleted
    }
}

const COLUMNS: (
    remote_occurrences::id,
    remote_occurrences::start_at,
    remote_occurrences::end_at,
    remote_occurrences::recurrence_id,
    remote_occurrences::object_id,
    remote_occurrences::object_updated,
    remote_occurrences::deleted,
) = (
    remote_occurrences::id,
    remote_occurrences::start_at,
    remote_occurrences::end_at,
    remote_occurrences::recurrence_id,
    remote_occurrences::object_id,
    remote_occurrences::object_updated,
    remote_occurrences::deleted,
);

fn rows_of(conn: &mut AnyConnection, remote_event_id: i64) -> Result<Vec<Row>, Error> {
    Ok(remote_occurrences::table
        .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
        .select(COLUMNS)
        .load(conn)?)
}

/// Replaces the plain occurrences of remote event `remote_event_id` with `spans` (each keyed
/// by its start), keeping the overrides that `keep` selects, and reports the occurrences that
/// have not ended by `now` and moved or vanished.
pub fn replace_occurrences(
    conn: &mut AnyConnection,
    remote_event_id: i64,
    spans: &[Span],
    keep: Overrides,
    now: DateTime<Utc>,
) -> Result<Vec<MovedOccurrence>, Error> {
    let old = rows_of(conn, remote_event_id)?;
    let wanted: HashSet<DateTime<Utc>> = spans.iter().map(|(start, _)| *start).collect();
    let kept: Vec<&Row> = old
        .iter()
        .filter(|row| row.is_override())
        .filter(|row| match keep {
            Overrides::InExpansion => wanted.contains(&row.key()),
            Overrides::All => true,
            Overrides::Nothing => false,
        })
        .collect();
    let kept_ids: Vec<i64> = kept.iter().map(|row| row.id).collect();
    diesel::delete(
        remote_occurrences::table
            .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
            .filter(remote_occurrences::id.ne_all(&kept_ids)),
    )
    .execute(conn)?;

    let mut new_starts: HashMap<DateTime<Utc>, DateTime<Utc>> = kept
        .iter()
        .filter(|row| !row.deleted)
        .map(|row| (row.key(), row.start_at.and_utc()))
        .collect();
    let taken: HashSet<DateTime<Utc>> = kept.iter().map(|row| row.key()).collect();
    // One insert per row: diesel has no batch insert over the two-backend connection.
    for (start, end) in spans.iter().filter(|(start, _)| !taken.contains(start)) {
        diesel::insert_into(remote_occurrences::table)
            .values((
                remote_occurrences::remote_event_id.eq(remote_event_id),
                remote_occurrences::start_at.eq(start.naive_utc()),
                remote_occurrences::end_at.eq(end.naive_utc()),
                remote_occurrences::recurrence_id.eq(start.naive_utc()),
                remote_occurrences::deleted.eq(false),
            ))
            .execute(conn)?;
        new_starts.insert(*start, *start);
    }
    Ok(moves(remote_event_id, &old, &new_starts, spans, now))
}

/// Compares the live rows before a re-expansion with the starts after it. A one-off event
/// that moved has a new key as well as a new start, so its one row is paired with its one span.
fn moves(
    remote_event_id: i64,
    old: &[Row],
    new_starts: &HashMap<DateTime<Utc>, DateTime<Utc>>,
    spans: &[Span],
    now: DateTime<Utc>,
) -> Vec<MovedOccurrence> {
    let live: Vec<&Row> = old
        .iter()
        .filter(|row| !row.deleted && row.end_at.and_utc() > now)
        .collect();
    if let ([row], [(start, _)]) = (live.as_slice(), spans)
        && old.len() == 1
        && !row.is_override()
    {
        let old_start = row.start_at.and_utc();
        if old_start == *start {
            return Vec::new();
        }
        return vec![MovedOccurrence {
            remote_event_id,
            recurrence_id: row.key(),
            old_start,
            new_start: Some(*start),
        }];
    }
    live.into_iter()
        .filter_map(|row| {
            let old_start = row.start_at.and_utc();
            let new_start = new_starts.get(&row.key()).copied();
            (new_start != Some(old_start)).then_some(MovedOccurrence {
                remote_event_id,
                recurrence_id: row.key(),
                old_start,
                new_start,
            })
        })
        .collect()
}

/// The values an occurrence object sets on its row.
struct OccurrenceChange<'a> {
    recurrence_id: DateTime<Utc>,
    object_id: &'a str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    status: &'a str,
    remaining_capacity: Option<i32>,
    version: DateTime<Utc>,
}

/// Applies occurrence object `data` of `series`, whose lock the caller holds, when it comes
/// from the series' origin and is newer than the occurrence's last object.
pub fn apply_occurrence(
    conn: &mut AnyConnection,
    origin: &str,
    series: &RemoteEvent,
    data: &RemoteEventData,
    now: DateTime<Utc>,
) -> Result<Stored, Error> {
    let ignored = |reason: String| {
        Ok(Stored {
            outcome: Outcome::Ignored(reason),
            moved: Vec::new(),
        })
    };
    if series.origin != origin {
        return ignored(format!("series belongs to {}, not {origin}", series.origin));
    }
    if series.deleted {
        return ignored("its series was deleted by its origin".into());
    }
    let recurrence_id = data
        .recurrence_id
        .or_else(|| split_occurrence_id(&data.object_id, &series.object_id));
    let Some(recurrence_id) = recurrence_id else {
        return ignored("occurrence object has no rose:recurrenceId".into());
    };
    let change = OccurrenceChange {
        recurrence_id,
        object_id: &data.object_id,
        start: data.start,
        end: data.end,
        status: data.status.as_str(),
        remaining_capacity: data.remaining_capacity,
        version: data.version.unwrap_or(now),
    };
    put_override(conn, series, &change, now)
}

/// Writes `change` onto the series' row for its recurrence id, unless that row already contains
/// the same or a newer version of the occurrence object.
fn put_override(
    conn: &mut AnyConnection,
    series: &RemoteEvent,
    change: &OccurrenceChange<'_>,
    now: DateTime<Utc>,
) -> Result<Stored, Error> {
    let row = find_row(conn, series.id, change.recurrence_id)?;
    let version = change.version.naive_utc();
    if let Some(stored) = row.as_ref().and_then(|r| r.object_updated)
        && version <= stored
    {
        return Ok(Stored {
            outcome: Outcome::Ignored(format!(
                "version {version} is not newer than the stored {stored}"
            )),
            moved: Vec::new(),
        });
    }
    let length = series
        .end_at
        .map_or(DEFAULT_LENGTH, |end| end - series.start_at);
    let end = change.end.unwrap_or(change.start + length);
    let values = (
        remote_occurrences::start_at.eq(change.start.naive_utc()),
        remote_occurrences::end_at.eq(end.naive_utc()),
        remote_occurrences::object_id.eq(change.object_id),
        remote_occurrences::status.eq(change.status),
        remote_occurrences::remaining_capacity.eq(change.remaining_capacity),
        remote_occurrences::object_updated.eq(version),
        remote_occurrences::deleted.eq(false),
    );
    let mut moved = Vec::new();
    let outcome = if let Some(row) = row {
        diesel::update(remote_occurrences::table.find(row.id))
            .set(values)
            .execute(conn)?;
        let old_start = row.start_at.and_utc();
        if !row.deleted && old_start != change.start && row.end_at.and_utc() > now {
            moved.push(MovedOccurrence {
                remote_event_id: series.id,
                recurrence_id: change.recurrence_id,
                old_start,
                new_start: Some(change.start),
            });
        }
        Outcome::Updated
    } else {
        diesel::insert_into(remote_occurrences::table)
            .values((
                values,
                remote_occurrences::remote_event_id.eq(series.id),
                remote_occurrences::recurrence_id.eq(change.recurrence_id.naive_utc()),
            ))
            .execute(conn)?;
        Outcome::Created
    };
    Ok(Stored { outcome, moved })
}

fn find_row(
    conn: &mut AnyConnection,
    remote_event_id: i64,
    recurrence_id: DateTime<Utc>,
) -> Result<Option<Row>, Error> {
    Ok(remote_occurrences::table
        .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
        .filter(remote_occurrences::recurrence_id.eq(recurrence_id.naive_utc()))
        .select(COLUMNS)
        .first(conn)
        .optional()?)
}

/// Folds the occurrence objects of `series` that arrived before it, and were stored as remote
/// events of their own, into its occurrences, then removes those remote events.
pub fn fold_early_occurrences(
    conn: &mut AnyConnection,
    series: &RemoteEvent,
    now: DateTime<Utc>,
) -> Result<Vec<MovedOccurrence>, Error> {
    let early: Vec<RemoteEvent> = remote_events::table
        .filter(remote_events::series_object_id.eq(&series.object_id))
        .filter(remote_events::id.ne(series.id))
        .filter(remote_events::origin.eq(&series.origin))
        .filter(remote_events::deleted.eq(false))
        .load(conn)?;
    let mut moved = Vec::new();
    for occurrence in early {
        let recurrence_id = occurrence
            .recurrence_id
            .map(|t| t.and_utc())
            .or_else(|| split_occurrence_id(&occurrence.object_id, &series.object_id));
        if let Some(recurrence_id) = recurrence_id {
            let change = OccurrenceChange {
                recurrence_id,
                object_id: &occurrence.object_id,
                start: occurrence.start_at.and_utc(),
                end: occurrence.end_at.map(|t| t.and_utc()),
                status: &occurrence.status,
                remaining_capacity: occurrence.remaining_capacity,
                version: occurrence.object_updated.and_utc(),
            };
            moved.extend(put_override(conn, series, &change, now)?.moved);
        }
        diesel::delete(remote_events::table.find(occurrence.id)).execute(conn)?;
    }
    Ok(moved)
}

/// Applies a Delete of `object_id` when it is an occurrence object of a stored series: the
/// occurrence is marked deleted. `None` when `object_id` is no such object.
pub fn delete_occurrence(
    conn: &mut AnyConnection,
    origin: &str,
    object_id: &str,
    version: DateTime<Utc>,
) -> Result<Option<Stored>, Error> {
    let Some((series, recurrence_id)) = occurrence_of(conn, object_id)? else {
        return Ok(None);
    };
    lock_series(conn, &series.object_id)?;
    let ignored = |reason: String| {
        Ok(Some(Stored {
            outcome: Outcome::Ignored(reason),
            moved: Vec::new(),
        }))
    };
    if series.origin != origin {
        return ignored(format!("series belongs to {}, not {origin}", series.origin));
    }
    if series.deleted {
        return ignored("its series was deleted already".into());
    }
    let row = find_row(conn, series.id, recurrence_id)?;
    if let Some(stored) = row.as_ref().and_then(|r| r.object_updated)
        && version.naive_utc() < stored
    {
        return ignored(format!(
            "delete of {version} is older than the stored version {stored}"
        ));
    }
    let mut moved = Vec::new();
    if let Some(row) = row {
        diesel::update(remote_occurrences::table.find(row.id))
            .set((
                remote_occurrences::deleted.eq(true),
                remote_occurrences::object_id.eq(object_id),
                remote_occurrences::object_updated.eq(version.naive_utc()),
            ))
            .execute(conn)?;
        if !row.deleted {
            moved.push(MovedOccurrence {
                remote_event_id: series.id,
                recurrence_id,
                old_start: row.start_at.and_utc(),
                new_start: None,
            });
        }
    } else {
        // Deleted before it was ever stored: keep the deletion, so that the occurrence does
        // not appear when the series is expanded again.
        diesel::insert_into(remote_occurrences::table)
            .values((
                remote_occurrences::remote_event_id.eq(series.id),
                remote_occurrences::start_at.eq(recurrence_id.naive_utc()),
                remote_occurrences::end_at.eq(recurrence_id.naive_utc()),
                remote_occurrences::recurrence_id.eq(recurrence_id.naive_utc()),
                remote_occurrences::object_id.eq(object_id),
                remote_occurrences::object_updated.eq(version.naive_utc()),
                remote_occurrences::deleted.eq(true),
            ))
            .execute(conn)?;
    }
    Ok(Some(Stored {
        outcome: Outcome::Deleted,
        moved,
    }))
}

/// Finds the stored series and recurrence id of occurrence object `object_id`: by the object
/// id an earlier copy left on its row, else by the form of rose-events' occurrence ids.
fn occurrence_of(
    conn: &mut AnyConnection,
    object_id: &str,
) -> Result<Option<(RemoteEvent, DateTime<Utc>)>, Error> {
    let known: Option<(i64, Option<NaiveDateTime>)> = remote_occurrences::table
        .filter(remote_occurrences::object_id.eq(object_id))
        .select((
            remote_occurrences::remote_event_id,
            remote_occurrences::recurrence_id,
        ))
        .first(conn)
        .optional()?;
    if let Some((remote_event_id, Some(recurrence_id))) = known {
        let series: Option<RemoteEvent> = remote_events::table
            .find(remote_event_id)
            .first(conn)
            .optional()?;
        return Ok(series.map(|series| (series, recurrence_id.and_utc())));
    }
    let Some((series_id, _)) = object_id.rsplit_once("/occurrences/") else {
        return Ok(None);
    };
    let Some(series) = find(conn, series_id)? else {
        return Ok(None);
    };
    Ok(split_occurrence_id(object_id, &series.object_id).map(|id| (series, id)))
}

/// Reads the recurrence id from an occurrence id of the form rose-events publishes,
/// `{series id}/occurrences/{YYYYMMDDTHHMMSSZ}`, when it belongs to `series_id`.
pub fn split_occurrence_id(object_id: &str, series_id: &str) -> Option<DateTime<Utc>> {
    let stamp = object_id
        .strip_prefix(series_id)?
        .strip_prefix("/occurrences/")?;
    if domain_of(object_id) != domain_of(series_id) {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrence_ids_of_rose_events_are_read() {
        let series = "https://a.example/events/7";
        let read = split_occurrence_id(
            "https://a.example/events/7/occurrences/20300105T180000Z",
            series,
        );
        let expected = NaiveDateTime::parse_from_str("2030-01-05 18:00:00", "%Y-%m-%d %H:%M:%S")
            .ok()
            .map(|t| t.and_utc());
        assert_eq!(read, expected);
        assert_eq!(
            split_occurrence_id("https://a.example/events/70/occurrences/x", series),
            None
        );
        assert_eq!(
            split_occurrence_id(
                "https://a.example/events/8/occurrences/20300105T180000Z",
                series
            ),
            None
        );
    }
}
