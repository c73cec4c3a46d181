//! Finding the occurrence a booking addresses, and checking that it is real.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

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
    let version = Version {
        event_id: event.id,
        uid: event.event.uid.clone(),
        sequence: event.sequence,
        updated_at: event.updated_at,
        recurrence_id: key.recurrence_id,
    };
    if let Some(occurrence) = lock_cache().get(&version).cloned() {
        return Ok(Bookable { event, occurrence });
    }
    let occurrence =
        find_in_event(&event, key.recurrence_id)?.ok_or(Error::OccurrenceNotFound {
            event_id: key.event_id,
            recurrence_id: key.recurrence_id,
        })?;
    let mut cache = lock_cache();
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(version, occurrence.clone());
    drop(cache);
    Ok(Bookable { event, occurrence })
}

/// Occurrences kept in the expansion cache before it is emptied.
const CACHE_ENTRIES: usize = 10_000;

/// An occurrence of one revision of one event. Every change to an event or its overrides
/// raises its sequence and update time, so a cached expansion is never used after a change.
/// The UID keeps events of different databases in one process apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Version {
    event_id: i64,
    uid: String,
    sequence: i32,
    updated_at: DateTime<Utc>,
    recurrence_id: DateTime<Utc>,
}

/// Locks the expansion cache. Finding one occurrence expands the series up to it, so every
/// booking of a long series would repeat that work. Found occurrences are cached per event
/// revision instead.
fn lock_cache() -> std::sync::MutexGuard<'static, HashMap<Version, Occurrence>> {
    static CACHE: OnceLock<Mutex<HashMap<Version, Occurrence>>> = OnceLock::new();
    CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
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
