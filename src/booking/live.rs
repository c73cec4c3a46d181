//! The point inside the booking transaction where a booking becomes live or stops being live.
//!
//! A booking is live while it takes seats as a confirmed booking. [`record`] receives every
//! such change of one transaction before it commits, so work that must happen exactly when a
//! booking starts or ends (enqueueing reminders, federating an `Update`) can be written in the
//! same transaction and is never lost or duplicated by a crash.

use super::{Booking, Error};
use crate::db::AnyConnection;

/// A change in whether a booking takes seats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveChange {
    /// The booking now takes seats: booked, confirmed from a hold, or promoted.
    Started(Booking),
    /// The booking no longer takes seats: cancelled.
    Ended(Booking),
}

/// Records the live changes of one booking transaction, inside that transaction.
// NOTE: nothing is enqueued yet; reminders hook in here once the delivery queue exists.
#[expect(
    clippy::unnecessary_wraps,
    reason = "enqueueing reminders here will write in the transaction and can fail"
)]
pub(crate) fn record(_conn: &mut AnyConnection, changes: &[LiveChange]) -> Result<(), Error> {
    for change in changes {
        match change {
            LiveChange::Started(booking) => {
                tracing::debug!(booking = booking.id, attendee = %booking.attendee, "booking became live");
            }
            LiveChange::Ended(booking) => {
                tracing::debug!(booking = booking.id, attendee = %booking.attendee, "booking stopped being live");
            }
        }
    }
    Ok(())
}
