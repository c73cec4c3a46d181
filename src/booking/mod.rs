//! Bookings: an append-only ledger, the projection it feeds, holds, the waitlist and
//! idempotency.
//!
//! Vocabulary:
//! - The *capacity row* of an occurrence (`occurrence_capacities`) is created on first use and
//!   locked by every write to that occurrence's bookings.
//! - A *ledger entry* records one change (booked, held, confirmed, waitlisted, promoted,
//!   cancelled, expired). Entries are never updated or deleted; database triggers refuse it.
//! - The *projection* is the current state the ledger implies: seats taken per occurrence and
//!   each booking's state. It is updated in the same transaction as the entries, and
//!   [`ledger::verify`] rebuilds it from the ledger to compare.
//! - A booking is *live* while it takes seats as a confirmed booking (state `booked`). A *hold*
//!   reserves seats until its expiry; it counts against capacity only while that expiry lies in
//!   the future, so no sweeper is needed for correctness (lapsed holds are marked expired the
//!   next time the occurrence is written).
//!
//! Every change goes through [`apply::apply`], the one booking function; [`group`] batches
//! waiting requests for the same occurrence into one transaction (group commit).

pub mod announce;
pub mod apply;
pub mod follow;
pub mod group;
pub mod idempotency;
pub mod ledger;
pub mod live;
pub mod occurrence;
pub mod store;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::availability::{Reason, Verdict};

/// Maximum seats one request may ask for.
pub const MAX_SEATS_PER_REQUEST: i64 = 1_000;
/// Maximum attendee id length, in characters.
pub const MAX_ATTENDEE_CHARS: usize = 200;
/// Minimum hold, in seconds.
pub const MIN_HOLD_SECONDS: i64 = 1;
/// Maximum hold, in seconds (one day).
pub const MAX_HOLD_SECONDS: i64 = 86_400;
/// Maximum order reference length of a hold confirmation, in characters.
pub const MAX_ORDER_REF_CHARS: usize = 200;

/// An occurrence as bookings address it: the event and the occurrence's original start
/// (its recurrence id; a one-off event's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OccurrenceKey {
    /// The event's id.
    pub event_id: i64,
    /// The occurrence's original start, UTC.
    pub recurrence_id: DateTime<Utc>,
}

/// The state of a booking in the projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    /// Seats reserved until `hold_expires_at`.
    Held,
    /// Seats taken.
    Booked,
    /// Waiting for seats, in arrival order.
    Waitlisted,
    /// Cancelled by the attendee or the caller.
    Cancelled,
    /// A hold that lapsed before it was confirmed.
    Expired,
}

impl BookingState {
    /// Returns the stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BookingState::Held => "held",
            BookingState::Booked => "booked",
            BookingState::Waitlisted => "waitlisted",
            BookingState::Cancelled => "cancelled",
            BookingState::Expired => "expired",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "held" => Some(BookingState::Held),
            "booked" => Some(BookingState::Booked),
            "waitlisted" => Some(BookingState::Waitlisted),
            "cancelled" => Some(BookingState::Cancelled),
            "expired" => Some(BookingState::Expired),
            _ => None,
        }
    }
}

/// A booking as the projection stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Booking {
    /// Database id; also the hold id while the booking is held.
    pub id: i64,
    /// The event.
    pub event_id: i64,
    /// The occurrence's original start, UTC.
    #[serde(with = "utc_basic")]
    pub recurrence_id: DateTime<Utc>,
    /// Who booked.
    pub attendee: String,
    /// Seats, all or nothing.
    pub seats: i32,
    /// Current state.
    pub state: BookingState,
    /// Occurrence start at booking time.
    pub starts_at: DateTime<Utc>,
    /// Occurrence end at booking time.
    pub ends_at: DateTime<Utc>,
    /// When a hold lapses.
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// Order reference given when a hold was confirmed.
    pub order_ref: Option<String>,
    /// When the booking was first recorded.
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub(crate) capacity_id: i64,
}

/// Seats of one occurrence after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeatCount {
    /// Seats in total, or `None` for no limit.
    pub capacity: Option<i64>,
    /// Seats taken by bookings.
    pub seats_taken: i64,
    /// Seats reserved by live holds.
    pub seats_held: i64,
    /// Seats still free, or `None` for no limit.
    pub seats_left: Option<i64>,
}

/// The result of one command, as the caller receives it and as an idempotency key replays it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// What happened.
    pub verdict: Verdict,
    /// Why, the deciding reason first.
    pub reasons: Vec<Reason>,
    /// The booking created or changed, if any.
    pub booking: Option<Booking>,
    /// Seats of the occurrence after the change.
    pub seats: SeatCount,
    /// Whether the command changed anything (a repeated cancel does not).
    pub changed: bool,
    /// Bookings moved from the waitlist onto the occurrence by this command.
    pub promoted: Vec<i64>,
}

impl Outcome {
    /// Returns whether the verdict granted the request.
    pub fn succeeded(&self) -> bool {
        matches!(
            self.verdict,
            Verdict::Booked | Verdict::Held | Verdict::Waitlisted
        )
    }
}

/// A change requested for one occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Book or hold seats.
    Book(BookRequest),
    /// Cancel a booking, release a hold or leave the waitlist.
    Cancel {
        /// The booking.
        booking_id: i64,
    },
    /// Turn a live hold into a booking.
    Confirm {
        /// The hold (its booking id).
        booking_id: i64,
        /// The caller's order reference, kept on the booking and in the ledger.
        order_ref: String,
        /// The idempotency key this confirmation was sent with.
        idempotency: Option<idempotency::Claim>,
    },
    /// Set the occurrence's own capacity (`None`: use the event's).
    SetCapacity {
        /// Seats in total.
        capacity: Option<i64>,
    },
}

/// A request for seats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookRequest {
    /// Who books.
    pub attendee: String,
    /// Seats wanted, 1 to [`MAX_SEATS_PER_REQUEST`].
    pub seats: i64,
    /// Hold for this many seconds instead of booking, for paid tickets.
    pub hold_seconds: Option<i64>,
    /// Whether to join the waitlist when the occurrence is full and the event has one.
    pub waitlist: bool,
    /// The idempotency key this request was sent with.
    pub idempotency: Option<idempotency::Claim>,
}

/// Booking errors other than verdicts: a refused request is an [`Outcome`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event does not exist.
    #[error("event {0} not found")]
    EventNotFound(i64),
    /// The event has no occurrence with that recurrence id.
    #[error("event {event_id} has no occurrence {}", .recurrence_id.format("%Y%m%dT%H%M%SZ"))]
    OccurrenceNotFound {
        /// The event.
        event_id: i64,
        /// The recurrence id asked for.
        recurrence_id: DateTime<Utc>,
    },
    /// No booking has that id (on this occurrence).
    #[error("booking {0} not found")]
    BookingNotFound(i64),
    /// A confirmation named a booking that is not a hold.
    #[error("booking {id} is {state}, not a hold")]
    NotAHold {
        /// The booking.
        id: i64,
        /// Its state.
        state: &'static str,
    },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key {0:?} was already used with a different request")]
    KeyReused(String),
    /// A request with the same idempotency key is still running.
    #[error("a request with idempotency key {0:?} is still running; retry later")]
    KeyInFlight(String),
    /// The occurrence's capacity cannot go below the seats already taken.
    #[error("capacity {requested} is below the {taken} seats already taken")]
    CapacityBelowTaken {
        /// The capacity asked for.
        requested: i64,
        /// Seats taken.
        taken: i64,
    },
    /// Loading availability facts failed.
    #[error(transparent)]
    Facts(#[from] crate::availability::facts::Error),
    /// A change to an event would remove an occurrence that still has live bookings.
    #[error(
        "occurrence {} of event {event_id} has live bookings; cancel them before removing it or \
         moving the series start (an override can move a single occurrence)",
        .recurrence_id.format("%Y%m%dT%H%M%SZ")
    )]
    BookedOccurrenceRemoved {
        /// The event.
        event_id: i64,
        /// The occurrence that would be removed.
        recurrence_id: DateTime<Utc>,
    },
    /// Scheduling or removing the booking's reminders failed.
    #[error(transparent)]
    Notify(#[from] crate::notify::Error),
    /// Reading the event failed.
    #[error(transparent)]
    Calendar(#[from] crate::calendar::Error),
    /// Enqueueing a job failed.
    #[error(transparent)]
    Queue(#[from] crate::delivery::Error),
    /// Stored data cannot be read back.
    #[error("stored booking data is corrupt: {0}")]
    Corrupt(String),
    /// Recording the answer to a remote person's RSVP failed.
    #[error("answering a remote RSVP failed: {0}")]
    RemoteAnswer(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] crate::db::Error),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(crate::db::Error::Query(error))
    }
}

impl Error {
    /// Returns whether running the same work again may succeed. That is the case for a
    /// PostgreSQL deadlock or serialization failure, and for a unique key that a transaction
    /// committed meanwhile.
    pub fn is_transient(&self) -> bool {
        use diesel::result::DatabaseErrorKind as Kind;
        use diesel::result::Error as E;
        let Error::Database(crate::db::Error::Query(E::DatabaseError(kind, info))) = self else {
            return false;
        };
        match kind {
            Kind::SerializationFailure | Kind::UniqueViolation => true,
            // PostgreSQL reports a deadlock as SQLSTATE 40P01, which diesel leaves unclassified.
            _ => info.message().contains("deadlock"),
        }
    }
}

/// Formats instants as `YYYYMMDDTHHMMSSZ`, the spelling occurrence routes use.
pub mod utc_basic {
    use chrono::{DateTime, Utc};

    /// Writes `instant` as `YYYYMMDDTHHMMSSZ`.
    pub fn serialize<S: serde::Serializer>(
        instant: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&instant.format("%Y%m%dT%H%M%SZ").to_string())
    }
}

/// Checks an attendee id: 1 to [`MAX_ATTENDEE_CHARS`] characters of `A-Z a-z 0-9 . _ @ : + -`.
pub fn check_attendee(attendee: &str) -> Result<(), String> {
    let length = attendee.chars().count();
    if length == 0 || length > MAX_ATTENDEE_CHARS {
        return Err(format!(
            "must be 1 to {MAX_ATTENDEE_CHARS} characters, got {length}"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._@:+-".contains(c);
    if let Some(bad) = attendee.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "contains {bad:?}; only letters, digits and . _ @ : + - are allowed"
        ));
    }
    Ok(())
}
