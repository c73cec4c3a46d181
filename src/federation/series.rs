//! Publishing a recurring event as its upcoming occurrences.
//!
//! Each occurrence that has not ended and starts within [`HORIZON`] of now is sent as an
//! `Event` of its own (at most [`MAX_OCCURRENCE_OBJECTS`], the earliest first), with the
//! occurrence's times, status and seats left. [`sync`] compares these objects with what
//! [`super::published`] recorded and sends only the difference:
//!
//! - Create for an occurrence sent for the first time, or again after a Delete;
//! - Update for one whose object changed (moved, retitled, cancelled, seats left);
//! - Delete with a Tombstone for one peers have that is no longer upcoming: excluded, moved
//!   out of the horizon, dropped by a change of the series, or beyond the cap after an added
//!   date. An occurrence that simply ended is left alone, so peers keep it in their history.
//!
//! Time brings occurrences within the horizon without any change to the event, so a periodic
//! job (see [`super::refresh`]) calls [`sync`] for every recurring event.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::Error;
use super::objects::event::{Publisher, occurrence_object, utc_text};
use super::publish::{send, tombstone};
use super::published::{self, PublishedObject};
use crate::calendar::occurrence::{Occurrence, not_ended};
use crate::calendar::store::StoredEvent;
use crate::db::AnyConnection;

/// How far ahead occurrences are published: about two months, which covers what people plan
/// with a calendar without flooding followers of a daily series.
pub const HORIZON: Duration = Duration::days(60);
/// Most occurrence objects of one event published at once; a daily series fills it in 50 days.
pub const MAX_OCCURRENCE_OBJECTS: usize = 50;

/// The count of activities one [`sync`] sent, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Creates sent.
    pub created: usize,
    /// Updates sent.
    pub updated: usize,
    /// Deletes sent.
    pub deleted: usize,
}

impl Sent {
    /// Returns the number of activities sent.
    pub fn total(self) -> usize {
        self.created + self.updated + self.deleted
    }
}

/// Sends the Creates, Updates and Deletes that bring peers' copies of `stored`'s occurrence
/// objects in line with the event as stored at `now`. A one-off event has no occurrence
/// objects, so any that a former series left are deleted.
pub fn sync(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    stored: &StoredEvent,
    now: DateTime<Utc>,
) -> Result<Sent, Error> {
    let seats = crate::booking::store::occurrence_seats(conn, stored.id)?;
    let mut last: HashMap<String, PublishedObject> = published::of_event(conn, stored.id)?
        .into_iter()
        .filter(|p| p.recurrence_id.is_some())
        .map(|p| (p.object_id.clone(), p))
        .collect();
    let mut sent = Sent::default();
    for occurrence in upcoming(stored, now)? {
        let Some(recurrence_id) = occurrence.recurrence_id else {
            continue;
        };
        let object = occurrence_object(stored, &occurrence, publisher, &seats);
        let object = serde_json::to_value(&object).unwrap_or(Value::Null);
        let object_id = object["id"].as_str().unwrap_or_default().to_owned();
        let fingerprint = published::fingerprint(&object);
        let record = last.remove(&object_id);
        let kind = match &record {
            None => "Create",
            Some(record) if record.deleted => "Create",
            Some(record) if record.fingerprint != fingerprint => "Update",
            Some(_) => continue,
        };
        let mut record = record.unwrap_or(PublishedObject {
            id: 0,
            event_id: stored.id,
            recurrence_id: Some(recurrence_id),
            object_id,
            version: 0,
            fingerprint: String::new(),
            ends_at: occurrence.end,
            deleted: false,
            updated_at: now,
        });
        record.fingerprint = fingerprint;
        record.ends_at = occurrence.end;
        record.deleted = false;
        emit(
            conn,
            publisher,
            stored.calendar_id,
            &mut record,
            kind,
            object,
            now,
        )?;
        if kind == "Create" {
            sent.created += 1;
        } else {
            sent.updated += 1;
        }
    }
    for mut record in last.into_values() {
        if record.deleted || record.ends_at <= now {
            continue;
        }
        let object = tombstone(&record.object_id, now);
        record.deleted = true;
        emit(
            conn,
            publisher,
            stored.calendar_id,
            &mut record,
            "Delete",
            object,
            now,
        )?;
        sent.deleted += 1;
    }
    if sent.total() > 0 {
        tracing::debug!(
            event = stored.id,
            created = sent.created,
            updated = sent.updated,
            deleted = sent.deleted,
            "occurrence objects published"
        );
    }
    Ok(sent)
}

/// Sends a Delete of every occurrence object of deleted event `event_id` that peers have and
/// that has not ended, then deletes the records of the event's objects.
pub fn withdraw(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    event_id: i64,
    calendar_id: i64,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let mut deleted = 0;
    for mut record in published::of_event(conn, event_id)? {
        if record.recurrence_id.is_none() || record.deleted || record.ends_at <= now {
            continue;
        }
        let object = tombstone(&record.object_id, now);
        record.deleted = true;
        emit(
            conn,
            publisher,
            calendar_id,
            &mut record,
            "Delete",
            object,
            now,
        )?;
        deleted += 1;
    }
    published::forget_event(conn, event_id)?;
    Ok(deleted)
}

/// Sends `kind` about `object` with the record's next version and `updated`, and stores the
/// record.
fn emit(
    conn: &mut AnyConnection,
    publisher: &Publisher<'_>,
    calendar_id: i64,
    record: &mut PublishedObject,
    kind: &str,
    mut object: Value,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let previous = (record.version > 0).then_some(record.updated_at);
    let updated = published::next_updated(previous, now);
    let stamp = if kind == "Delete" {
        "deleted"
    } else {
        "updated"
    };
    object[stamp] = Value::String(utc_text(updated));
    record.version += 1;
    record.updated_at = updated;
    let id = format!(
        "{}#{}-{}",
        record.object_id,
        kind.to_ascii_lowercase(),
        record.version
    );
    send(conn, publisher, calendar_id, &id, kind, &object)?;
    published::save(conn, record)
}

/// Lists the occurrences of a recurring event that have not ended at `now` and start before
/// `now + HORIZON`, at most [`MAX_OCCURRENCE_OBJECTS`]. Empty for a one-off event.
///
/// An event that cannot be expanded is an error rather than an empty list, which would delete
/// every occurrence at peers.
pub fn upcoming(stored: &StoredEvent, now: DateTime<Utc>) -> Result<Vec<Occurrence>, Error> {
    let schedule = &stored.event.schedule;
    if schedule.rrule.is_none() && schedule.rdates.is_empty() {
        return Ok(Vec::new());
    }
    not_ended(&stored.event, now, now + HORIZON, MAX_OCCURRENCE_OBJECTS).map_err(|e| {
        crate::calendar::Error::Corrupt(format!("event {} cannot be expanded: {e}", stored.id))
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::event::{EventDetails, NewEvent, Schedule};
    use crate::calendar::time::{EventLength, TimeBasis};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    fn stored(rrule: Option<&str>) -> StoredEvent {
        StoredEvent {
            id: 1,
            calendar_id: 1,
            event: NewEvent {
                uid: "u@test".to_owned(),
                details: EventDetails::default(),
                schedule: Schedule {
                    start: at("2030-01-01T09:00:00Z").naive_utc(),
                    basis: TimeBasis::Utc,
                    length: EventLength {
                        days: 0,
                        seconds: 7200,
                    },
                    rrule: rrule.map(str::to_owned),
                    rdates: Vec::new(),
                    exdates: Vec::new(),
                },
                capacity: None,
                overrides: Vec::new(),
            },
            sequence: 0,
            created_at: at("2029-12-01T00:00:00Z"),
            updated_at: at("2029-12-01T00:00:00Z"),
        }
    }

    #[test]
    fn upcoming_stops_at_the_cap() -> Result<(), Error> {
        let daily = upcoming(&stored(Some("FREQ=DAILY")), at("2030-01-01T00:00:00Z"))?;
        assert_eq!(daily.len(), MAX_OCCURRENCE_OBJECTS);
        assert_eq!(daily[0].start, at("2030-01-01T09:00:00Z"));
        Ok(())
    }

    #[test]
    fn upcoming_stops_at_the_horizon() -> Result<(), Error> {
        let now = at("2030-01-01T00:00:00Z");
        let weekly = upcoming(&stored(Some("FREQ=WEEKLY")), now)?;
        assert_eq!(
            weekly.len(),
            9,
            "2030-01-01 to 2030-02-26, the last before 03-02"
        );
        assert!(weekly.iter().all(|o| o.start < now + HORIZON));
        Ok(())
    }

    #[test]
    fn upcoming_keeps_a_running_occurrence() -> Result<(), Error> {
        let during = at("2030-01-08T10:00:00Z");
        let weekly = upcoming(&stored(Some("FREQ=WEEKLY")), during)?;
        assert_eq!(weekly[0].start, at("2030-01-08T09:00:00Z"));
        Ok(())
    }

    #[test]
    fn upcoming_fills_the_cap_for_frequent_slots() -> Result<(), Error> {
        // Slots every 5 or 15 minutes have more ended occurrences in the look-back than the
        // cap, so none of them may take the place of a future one.
        let now = at("2030-01-03T12:05:00Z");
        for minutes in [5_i64, 15] {
            let mut slots = stored(Some(&format!("FREQ=MINUTELY;INTERVAL={minutes}")));
            slots.event.schedule.length.seconds = minutes * 60;
            let upcoming = upcoming(&slots, now)?;
            assert_eq!(
                upcoming.len(),
                MAX_OCCURRENCE_OBJECTS,
                "every {minutes} min"
            );
            assert!(upcoming[0].start <= now, "every {minutes} min");
            assert!(upcoming[0].end > now, "every {minutes} min");
        }
        Ok(())
    }

    #[test]
    fn one_off_event_has_no_occurrence_objects() -> Result<(), Error> {
        assert!(upcoming(&stored(None), at("2029-12-31T00:00:00Z"))?.is_empty());
        Ok(())
    }
}
