//! Telling peers that an occurrence's seats left changed.
//!
//! Peers keep a copy of each of our events with its `remainingAttendeeCapacity`. The booking
//! transaction does not know where the event is published, so it enqueues a job, in the same
//! transaction, whose handler (`federation::refresh`) sends an `Update` with the seats left at
//! the time it runs. While a job for the occurrence is pending, further changes add nothing:
//! a burst of bookings ends in one Update carrying the final count.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Error, OccurrenceKey};
use crate::db::AnyConnection;
use crate::delivery::queue::{self, NewJob};

/// Job kind of a seats-left Update.
pub const KIND: &str = "federation-seats";
/// Delay before the job runs, so that bookings arriving together share one Update.
pub const COALESCE: Duration = Duration::seconds(2);
/// Attempts before the job dies; each only reads the database and enqueues deliveries.
const MAX_ATTEMPTS: i32 = 10;

/// The payload of a seats-left job: the occurrence whose seats changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatsChanged {
    /// The event.
    pub event_id: i64,
    /// The occurrence's original start (a one-off event's start).
    pub recurrence_id: DateTime<Utc>,
}

/// Enqueues a seats-left job for `key` unless one is pending. Joins the caller's transaction,
/// which has locked the occurrence's capacity row, so two bookings of one occurrence cannot
/// both miss the pending job.
pub(crate) fn seats_changed(
    conn: &mut AnyConnection,
    key: OccurrenceKey,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let prefix = format!(
        "{KIND}/{}/{}/",
        key.event_id,
        key.recurrence_id.format("%Y%m%dT%H%M%SZ")
    );
    if queue::has_pending_with_prefix(conn, &prefix)? {
        return Ok(());
    }
    let payload = serde_json::to_value(SeatsChanged {
        event_id: key.event_id,
        recurrence_id: key.recurrence_id,
    })
    .map_err(|e| Error::Corrupt(format!("cannot encode a seats-left job: {e}")))?;
    // A finished job keeps its dedup key for the retention period, so each job gets a key of
    // its own. The pending check above is what coalesces a burst.
    queue::enqueue(
        conn,
        &NewJob {
            kind: KIND.to_owned(),
            dedup_key: format!("{prefix}{}", now.timestamp_micros()),
            payload,
            run_at: now + COALESCE,
            deadline: None,
            max_attempts: MAX_ATTEMPTS,
        },
        now,
    )?;
    Ok(())
}
