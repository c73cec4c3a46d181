//! The point inside the booking transaction where a booking becomes live or stops being live.
//!
//! A booking is live while it takes seats as a confirmed booking. [`record`] receives every
//! such change of one transaction before it commits, so work that must happen exactly when a
//! booking starts or ends (enqueueing reminders, federating an `Update`) can be written in the
//! same transaction and is never lost or duplicated by a crash. A remote person's booking
//! gets no reminders here, and the reply to their RSVP is sent instead.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Booking, Error};
use crate::db::AnyConnection;
use crate::federation::rsvp;
use crate::notify::reminders::{self, OccurrenceRef};

/// A change in whether a booking takes seats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveChange {
    /// The booking now takes seats: booked, confirmed from a hold, or promoted.
    Started(Booking),
    /// The booking no longer takes seats: cancelled.
    Ended(Booking),
}

/// Records the live changes of one booking transaction, inside that transaction: a booking
/// that starts gets the attendee's reminders, one that ends loses them.
pub(crate) fn record(
    conn: &mut AnyConnection,
    changes: &[LiveChange],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut one_off: HashMap<i64, bool> = HashMap::new();
    for change in changes {
        let booking = match change {
            LiveChange::Started(booking) | LiveChange::Ended(booking) => booking,
        };
        // Remote people get no reminders from us because their own server reminds them. A
        // change to their booking sends a reply to their RSVP instead.
        if rsvp::is_remote_attendee(&booking.attendee) {
            match change {
                LiveChange::Started(_) => rsvp::incoming::booking_started(conn, booking, now),
                LiveChange::Ended(_) => rsvp::incoming::booking_ended(conn, booking, now),
            }
            .map_err(|e| Error::RemoteAnswer(e.to_string()))?;
            continue;
        }
        let is_one_off = if let Some(known) = one_off.get(&booking.event_id) {
            *known
        } else {
            let event = crate::calendar::store::find_event(conn, booking.event_id)?
                .ok_or(Error::EventNotFound(booking.event_id))?;
            let schedule = &event.event.schedule;
            let known = schedule.rrule.is_none() && schedule.rdates.is_empty();
            one_off.insert(booking.event_id, known);
            known
        };
        // Reminders name a one-off event's only occurrence without a recurrence id.
        let occurrence = OccurrenceRef {
            event_id: booking.event_id,
            recurrence_id: (!is_one_off).then_some(booking.recurrence_id),
            remote: false,
        };
        match change {
            LiveChange::Started(_) => {
                let created = reminders::schedule(conn, occurrence, &booking.attendee, now)?;
                tracing::debug!(booking = booking.id, attendee = %booking.attendee, created, "booking became live");
            }
            LiveChange::Ended(_) => {
                let removed = reminders::cancel(conn, occurrence, &booking.attendee)?;
                tracing::debug!(booking = booking.id, attendee = %booking.attendee, removed, "booking stopped being live");
            }
        }
    }
    Ok(())
}
