//! Finding the occurrence a booking addresses, and checking that it is real.

use chrono::{DateTime, Duration, Utc};

use super::{Error, OccurrenceKey};
use crate::calendar::event::EventStatus;
use crate::calendar::occurrence::{Occurrence, occurrences};
use crate::calendar::store::{self, StoredEvent};
use crate::calendar::time::Window;
use crate::db::AnyConnection;

/// An occurrence that bookings can address.
#[derive(Clone, Debug, PartialEq)]
pub struct Bookable {
    /// The event, as stored.
    pub event: StoredEvent,
    /// The occurrence, after overrides.
    pub occurrence: Occurrence,
}

impl Bookable {
    /// Returns whether the organizer cancelled this occurrence (or the whole event).
    pub fn cancelled(&self) -> bool {
        self.occurrence.details.status == EventStatus::Cancelled
    }
}

/// Loads the event and finds its occurrence with `key.recurrence_id`.
///
/// A one-off event has one occurrence, addressed by its start. An occurrence that an override
/// moved is still addressed by its original start.
pub fn find(conn: &mut AnyConnection, key: OccurrenceKey) -> Result<Bookable, Error> {
    let event = store::find_event(conn, key.event_id)?.ok_or(Error::EventNotFound(key.event_id))?;
    let occurrence =
        find_in_event(&event, key.recurrence_id)?.ok_or(Error::OccurrenceNotFound {
            event_id: key.event_id,
            recurrence_id: key.recurrence_id,
        })?;
    Ok(Bookable { event, occurrence })
}

fn find_in_event(
    stored: &StoredEvent,
    recurrence_id: DateTime<Utc>,
) -> Result<Option<Occurrence>, Error> {
    let event = &stored.event;
    // Unmoved instances start at their recurrence id.
    let mut windows = vec![Window {
        from: recurrence_id,
        to: recurrence_id + Duration::seconds(1),
    }];
    // A moved instance starts at the start its override sets, so look there too.
    for change in &event.overrides {
        if change.recurrence_id.to_utc(event.schedule.basis) != recurrence_id {
            continue;
        }
        let basis = change.basis.unwrap_or(event.schedule.basis);
        if let Some(start) = change.start {
            let moved = basis.to_utc(start);
            windows.push(Window {
                from: moved,
                to: moved + Duration::seconds(1),
            });
        }
    }
    for window in windows {
        let found = occurrences(event, window, 100)
            .map_err(|e| Error::Corrupt(format!("event {} cannot be expanded: {e}", stored.id)))?;
        let hit = found
            .occurrences
            .into_iter()
            .find(|o| o.recurrence_id.unwrap_or(o.start) == recurrence_id);
        if hit.is_some() {
            return Ok(hit);
        }
    }
    Ok(None)
}
