//! Recurrence: the instances that an RRULE, RDATEs and EXDATEs produce (RFC 5545 sections 3.3.10
//! and 3.8.5).
//!
//! The *recurrence set* is the RRULE's instances (COUNT and UNTIL apply to the rule alone), plus
//! DTSTART and the RDATEs, minus the EXDATEs. Identical instants count once. The set is sorted,
//! then cut to a half-open window `[from, to)` on the start instant, then to a limit.
//!
//! The rule is evaluated on the wall clock of DTSTART's basis for every FREQ, and each wall time
//! becomes an instant through [`resolve_local`](super::time::resolve_local): a time in a DST gap
//! takes the offset in force before the gap, and a repeated time means its first occurrence.
//! Floating and all-day values are pinned (read as UTC) and never go through a zone. The set ends
//! at 9999-12-31 because iCalendar cannot write later years.
//!
//! Daily and longer rules run on the rrule crate (see `walk`); sub-daily rules run here (see
//! `sub_daily`) because the crate breaks their grid when BYHOUR skips hours.

mod corpus;
mod expand;
mod offsets;
mod rule;
mod sub_daily;
mod walk;

#[cfg(test)]
mod tests;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::time::{Moment, TimeBasis, Window};

pub use corpus::expand_corpus_line;

/// Maximum number of instances one expansion returns; a larger `limit` is cut to this and marks the result
/// truncated.
pub const MAX_INSTANCES: usize = 10_000;

/// Longest RRULE value, in bytes (the limit the API and the importer state).
pub const MAX_RULE_BYTES: usize = super::limits::MAX_RRULE_BYTES;

/// Maximum number of values in one `BYxxx` list. RFC 5545 allows at most 366 distinct values (BYYEARDAY), and
/// the signed forms double that.
pub const MAX_LIST_VALUES: usize = 732;

/// Maximum number of RDATE or EXDATE values on one recurrence.
pub const MAX_DATES: usize = 10_000;

/// Maximum number of generation steps (wall times produced by the rule, or sub-daily periods looked at) in
/// one expansion. A window far from DTSTART on a rule with COUNT must walk from DTSTART and can
/// reach this.
pub const MAX_STEPS: u64 = 2_000_000;

/// A recurring (or one-off) start and the values that shape its recurrence set.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrence {
    /// DTSTART as a wall time on `basis` (midnight for all-day).
    pub start: NaiveDateTime,
    /// Mapping from wall times to instants.
    pub basis: TimeBasis,
    /// RRULE value without the `RRULE:` prefix.
    pub rrule: Option<String>,
    /// RDATE values.
    pub rdates: Vec<Moment>,
    /// EXDATE values.
    pub exdates: Vec<Moment>,
}

/// One member of a recurrence set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The wall time of `utc` on the recurrence's basis. For a rule time inside a DST gap this
    /// is the shifted time that the clock shows.
    pub wall: NaiveDateTime,
    /// The start instant (pinned for floating and all-day recurrences).
    pub utc: DateTime<Utc>,
}

/// The instances of one expansion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Instances in start order.
    pub instances: Vec<Instance>,
    /// Whether instances were left out: more than the limit matched, or the search for further
    /// rule instances stopped before the set or the window ended.
    pub truncated: bool,
}

/// Error from expanding a recurrence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    /// The RRULE value is longer than [`MAX_RULE_BYTES`].
    #[error("rrule is {length} bytes long, over the limit of {limit} bytes")]
    RuleTooLong {
        /// Length of the value.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// A rule part has no `=`.
    #[error("rrule part {part:?} is not of the form NAME=VALUE")]
    MalformedPart {
        /// The part as written.
        part: String,
    },
    /// A rule part that RFC 5545 does not define.
    #[error("rrule part {name:?} is unknown")]
    UnknownPart {
        /// The part's name.
        name: String,
    },
    /// A rule part given twice.
    #[error("rrule part {name} appears more than once")]
    RepeatedPart {
        /// The part's name.
        name: String,
    },
    /// FREQ is missing.
    #[error("rrule has no FREQ part, which is required")]
    MissingFreq,
    /// Both COUNT and UNTIL are present, which RFC 5545 forbids.
    #[error("rrule must not contain both COUNT and UNTIL")]
    CountWithUntil,
    /// A value is malformed, out of range or not allowed with the rule's FREQ.
    #[error("rrule {name} value {value:?} is invalid: {reason}")]
    InvalidValue {
        /// The part's name.
        name: String,
        /// The value as written.
        value: String,
        /// Description of the problem and of the allowed values.
        reason: String,
    },
    /// A `BYxxx` list is longer than [`MAX_LIST_VALUES`].
    #[error("rrule {name} lists {count} values, over the limit of {limit}")]
    TooManyValues {
        /// The part's name.
        name: String,
        /// Number of values given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The rrule crate rejected the rule.
    #[error("rrule is invalid: {reason}")]
    Rejected {
        /// The crate's message.
        reason: String,
    },
    /// Too many RDATE or EXDATE values.
    #[error("{field} has {count} values, over the limit of {limit}")]
    TooManyDates {
        /// `rdate` or `exdate`.
        field: &'static str,
        /// Number of values given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The expansion needed more than [`MAX_STEPS`] steps.
    #[error(
        "expanding rrule {rule:?} needs more than {limit} steps; use a window closer to DTSTART \
         or a rule without COUNT"
    )]
    TooManySteps {
        /// The rule.
        rule: String,
        /// The limit.
        limit: u64,
    },
}

impl Recurrence {
    /// Expands the recurrence set inside `window` (all of it when `None`), returning at most
    /// `limit` instances (and never more than [`MAX_INSTANCES`]).
    pub fn expand(
        &self,
        window: Option<Window>,
        limit: usize,
    ) -> Result<Expansion, RecurrenceError> {
        expand::expand(self, window, limit)
    }
}
