//! Keeps live bookings in step with changes to their event.
//!
//! Bookings copy their occurrence's start and end, which the availability rules use for
//! overlaps and free/busy. When an event or one of its occurrences moves, those copies are
//! updated in the same transaction. A change that would remove an occurrence that still has
//! live bookings is rejected, because the bookings (and their seats) would be left on an
//! occurrence no route can reach while the event is sold again.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{BookingState, Error};
use crate::calendar::event::{EventStatus, NewEvent};
use crate::db::AnyConnection;
use crate::db::schema::bookings;
use crate::notify::reminders::find_occurrence;

/// Updates the times of the live bookings of `event_id` to the occurrences of `event` (the
/// event as it is about to be stored), and returns how many bookings moved. Fails with
/// [`Error::BookedOccurrenceRemoved`] when an occurrence with live bookings no longer exists.
pub fn follow_event(
    conn: &mut AnyConnection,
    event_id: i64,
    event: &NewEvent,
) -> Result<usize, Error> {
    let live = [
        BookingState::Booked.as_str(),
        BookingState::Held.as_str(),
        BookingState::Waitlisted.as_str(),
    ];
    let recurrence_ids: Vec<NaiveDateTime> = bookings::table
        .filter(bookings::event_id.eq(event_id))
        .filter(bookings::state.eq_any(live))
        .select(bookings::recurrence_id)
        .distinct()
        .load(conn)?;
    let schedule = &event.schedule;
    let one_off = schedule.rrule.is_none() && schedule.rdates.is_empty();
    let mut moved = 0;
    for recurrence_id in recurrence_ids {
        let key: DateTime<Utc> = recurrence_id.and_utc();
        // A one-off event's bookings name its start; a series' name the original start.
        let found = if one_off {
            if schedule.basis.to_utc(schedule.start) == key {
                find_occurrence(event, None)?
            } else {
                None
            }
        } else {
            find_occurrence(event, Some(key))?
        };
        let Some(occurrence) = found else {
            return Err(Error::BookedOccurrenceRemoved {
                event_id,
                recurrence_id: key,
            });
        };
        if occurrence.details.status == EventStatus::Cancelled {
            // NOTE: the bookings of a cancelled occurrence keep their state and seats, so
            // reinstating the occurrence restores them. Their reminders go with the occurrence.
            continue;
        }
        moved += diesel::update(
            bookings::table
                .filter(bookings::event_id.eq(event_id))
                .filter(bookings::recurrence_id.eq(recurrence_id))
                .filter(bookings::state.eq_any(live)),
        )
        .set((
            bookings::starts_at.eq(occurrence.start.naive_utc()),
            bookings::ends_at.eq(occurrence.end.naive_utc()),
        ))
        .execute(conn)?;
    }
    Ok(moved)
}
