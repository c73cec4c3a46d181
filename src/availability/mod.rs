//! Availability: whether one person can book one occurrence, and when that person is busy.
//!
//! Datalog rules ([`rules`]) make the decision over *facts*, which are plain values. Facts
//! describe the occurrences involved (times, origin, trust, capacity, seats taken, seats held
//! by live holds, buffers, booking window, cancellation) and the person's live bookings and
//! busy blocks. At most one *request* is added: book, hold, confirm a hold, or promote from
//! the waitlist. [`facts`] loads them from storage for one person and one time window, so the
//! cost of a decision depends on that person's calendar, not on the size of the database.
//!
//! Times are Unix seconds (UTC). Occurrences are referred to by their index in
//! [`Facts::occurrences`].

pub mod facts;
pub mod freebusy;
mod rules;

use serde::Serialize;

pub use rules::evaluate;

/// Most facts one evaluation accepts; loading more is refused with [`facts::Error::TooManyFacts`].
pub const MAX_FACTS: usize = 10_000;

/// Where an occurrence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Scheduled on this server.
    Local,
    /// Received from another server, identified by an index into the caller's list of peers.
    Remote(u32),
}

/// One occurrence as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OccurrenceFact {
    /// Start, Unix seconds.
    pub start: i64,
    /// End, Unix seconds.
    pub end: i64,
    /// Local or federated.
    pub origin: Origin,
    /// Whether its origin is trusted; local occurrences always are.
    pub trusted: bool,
    /// Whether the organizer cancelled it.
    pub cancelled: bool,
    /// Seats in total, or `None` for no limit.
    pub capacity: Option<i64>,
    /// Seats taken by live bookings.
    pub seats_taken: i64,
    /// Seats reserved by holds that have not expired.
    pub seats_held: i64,
    /// Free time its attendees need before it, seconds.
    pub buffer_before: i64,
    /// Free time its attendees need after it, seconds.
    pub buffer_after: i64,
    /// Bookings are refused before this instant, if set.
    pub opens_at: Option<i64>,
    /// Bookings are refused from this instant on, if set.
    pub closes_at: Option<i64>,
}

/// The kind of change a request makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Book seats now.
    Book,
    /// Reserve seats until an expiry, for a payment to complete.
    Hold,
    /// Turn a hold into a booking.
    Confirm,
    /// Move a waitlisted request onto the occurrence.
    Promote,
}

/// A request for seats on one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFact {
    /// Index of the occurrence in [`Facts::occurrences`].
    pub occurrence: u32,
    /// Seats wanted; a group is all or nothing.
    pub seats: i64,
    /// What is asked for.
    pub kind: RequestKind,
    /// Whether a request that does not fit may wait for seats instead of being refused.
    pub waitlist: bool,
    /// For [`RequestKind::Confirm`]: whether the hold has expired.
    pub hold_lapsed: bool,
}

/// A time the person is unavailable besides their bookings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyBlockFact {
    /// Stored id.
    pub id: u32,
    /// Start, Unix seconds.
    pub start: i64,
    /// End, Unix seconds.
    pub end: i64,
}

/// The facts of one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The current time, Unix seconds.
    pub now: i64,
    /// The occurrences involved: the requested one and those the person has booked.
    pub occurrences: Vec<OccurrenceFact>,
    /// Indexes of occurrences the person holds a live booking or hold on.
    pub booked: Vec<u32>,
    /// The person's busy blocks.
    pub busy_blocks: Vec<BusyBlockFact>,
    /// The request to decide, if any.
    pub request: Option<RequestFact>,
}

impl Facts {
    /// Number of facts, for the [`MAX_FACTS`] bound.
    pub fn len(&self) -> usize {
        self.occurrences.len() + self.booked.len() + self.busy_blocks.len() + 1
    }

    /// Whether there is nothing but the clock.
    pub fn is_empty(&self) -> bool {
        self.occurrences.is_empty() && self.busy_blocks.is_empty()
    }
}

/// What makes a person busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "index")]
pub enum BusySource {
    /// A live booking on the occurrence with this index.
    Booking(u32),
    /// The busy block with this id.
    Block(u32),
}

/// A busy interval, buffers included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BusyInterval {
    /// Start, Unix seconds.
    pub start: i64,
    /// End, Unix seconds.
    pub end: i64,
    /// What causes it.
    pub source: BusySource,
}

/// The outcome of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Seats are taken.
    Booked,
    /// Seats are reserved until the hold expires.
    Held,
    /// No seats now; the request waits in arrival order.
    Waitlisted,
    /// Not enough seats, and no waitlist.
    Full,
    /// The person is busy at that time, or already booked it.
    Conflict,
    /// The occurrence cannot be booked at all (cancelled, not open, closed, untrusted) or the
    /// hold to confirm has expired.
    Rejected,
    /// A cancel gave the seats up (or found them given up already). The rules never derive it.
    Cancelled,
}

/// Why a verdict was given, highest priority first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The organizer cancelled the occurrence.
    OccurrenceCancelled,
    /// The occurrence comes from a server that is not trusted.
    UntrustedOrigin,
    /// The hold to confirm expired before the confirmation arrived.
    HoldExpired,
    /// The booking window has not opened yet.
    BookingNotOpen,
    /// The booking window has closed.
    BookingClosed,
    /// The person already has a live booking on this occurrence.
    AlreadyBooked,
    /// The occurrence overlaps another of the person's bookings, buffers included.
    OverlapsBooking,
    /// The occurrence overlaps one of the person's busy blocks.
    OverlapsBusyBlock,
    /// Seats taken plus seats held plus seats requested exceed the capacity.
    CapacityReached,
    /// The seats are reserved.
    HoldPlaced,
    /// The seats fit.
    SeatsAvailable,
    /// The caller gave the seats up.
    CancelledByCaller,
    /// The occurrence's capacity was set.
    CapacityChanged,
}

impl Reason {
    /// The verdict a refusal for this reason gives.
    pub fn refusal_verdict(self) -> Verdict {
        match self {
            Reason::AlreadyBooked | Reason::OverlapsBooking | Reason::OverlapsBusyBlock => {
                Verdict::Conflict
            }
            Reason::CapacityReached => Verdict::Full,
            Reason::CancelledByCaller => Verdict::Cancelled,
            Reason::HoldPlaced => Verdict::Held,
            Reason::SeatsAvailable | Reason::CapacityChanged => Verdict::Booked,
            Reason::OccurrenceCancelled
            | Reason::UntrustedOrigin
            | Reason::HoldExpired
            | Reason::BookingNotOpen
            | Reason::BookingClosed => Verdict::Rejected,
        }
    }

    /// The stored and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OccurrenceCancelled => "occurrence_cancelled",
            Reason::UntrustedOrigin => "untrusted_origin",
            Reason::HoldExpired => "hold_expired",
            Reason::BookingNotOpen => "booking_not_open",
            Reason::BookingClosed => "booking_closed",
            Reason::AlreadyBooked => "already_booked",
            Reason::OverlapsBooking => "overlaps_booking",
            Reason::OverlapsBusyBlock => "overlaps_busy_block",
            Reason::CapacityReached => "capacity_reached",
            Reason::HoldPlaced => "hold_placed",
            Reason::SeatsAvailable => "seats_available",
            Reason::CancelledByCaller => "cancelled_by_caller",
            Reason::CapacityChanged => "capacity_changed",
        }
    }
}

/// The verdict on a request with every reason that applies, the deciding one first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The outcome.
    pub verdict: Verdict,
    /// Reasons sorted by priority; the first decided the verdict.
    pub reasons: Vec<Reason>,
}

/// What the rules derive, each list sorted so that identical facts give identical output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// When the person is busy.
    pub busy: Vec<BusyInterval>,
    /// What the requested occurrence collides with.
    pub conflicts: Vec<BusySource>,
    /// Indexes of occurrences with no seat left.
    pub full: Vec<u32>,
    /// The verdict on the request, if there was one.
    pub decision: Option<Decision>,
}
