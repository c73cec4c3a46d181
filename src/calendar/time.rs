//! Time vocabulary shared by events, recurrence and iCalendar.
//!
//! A *wall time* is a clock reading without a zone (`NaiveDateTime`). An event's start is kept as
//! a wall time plus a [`TimeBasis`] that defines how to read it: in an IANA zone, as UTC, as a
//! floating time (the same clock reading wherever the reader is), or as an all-day date.
//!
//! Floating and all-day values have no instant of their own. Where an instant is needed (sorting,
//! window tests) they are *pinned*: the wall time is read as if it were UTC. Callers that know a
//! viewer's zone shift the query window instead of the values.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// How an event's wall times map to instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeBasis {
    /// Local time in an IANA zone; DST gaps and overlaps follow RFC 5545 section 3.3.5.
    Zoned(Tz),
    /// UTC (`Z` suffix in iCalendar).
    Utc,
    /// Floating time: no zone, never read in the server's own zone.
    Floating,
    /// A DATE value: the wall time is always midnight and only the date counts.
    AllDay,
}

impl TimeBasis {
    /// Converts a wall time on this basis to its instant (pinned for floating and all-day).
    pub fn to_utc(self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self {
            TimeBasis::Zoned(tz) => resolve_local(tz, wall),
            TimeBasis::Utc | TimeBasis::Floating | TimeBasis::AllDay => wall.and_utc(),
        }
    }

    /// Converts an instant back to the wall time on this basis.
    pub fn to_wall(self, instant: DateTime<Utc>) -> NaiveDateTime {
        match self {
            TimeBasis::Zoned(tz) => instant.with_timezone(&tz).naive_local(),
            TimeBasis::Utc | TimeBasis::Floating | TimeBasis::AllDay => instant.naive_utc(),
        }
    }

    /// The IANA zone, when there is one.
    pub fn zone(self) -> Option<Tz> {
        match self {
            TimeBasis::Zoned(tz) => Some(tz),
            _ => None,
        }
    }
}

/// Resolves a wall time in `tz` to an instant.
///
/// A wall time inside a spring-forward gap is read with the offset in force before the gap, so
/// it moves forward by the gap's length (RFC 5545 section 3.3.5). A wall time that occurs twice
/// means the first, earlier one.
pub fn resolve_local(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => {
            first.with_timezone(&Utc).min(second.with_timezone(&Utc))
        }
        LocalResult::None => {
            // Read the wall time with the offset in force before the gap. tzdb gaps are at most
            // a day long (Samoa skipped 2011-12-30) and transitions are never closer than a day
            // apart, so the offset a day and a bit before the gap is the one in force before it.
            let before = wall - chrono::Duration::hours(26);
            let offset = tz.offset_from_utc_datetime(&before).fix().local_minus_utc();
            wall.and_utc() - chrono::Duration::seconds(i64::from(offset))
        }
    }
}

/// A recurrence value (RDATE, EXDATE, RECURRENCE-ID) as written: either a wall time on the
/// event's basis or an explicit UTC instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    /// Wall time on the event's [`TimeBasis`] (midnight for all-day dates).
    Wall(NaiveDateTime),
    /// An instant given in UTC.
    Utc(DateTime<Utc>),
}

impl Moment {
    /// The instant this value denotes for an event on `basis` (pinned for floating/all-day).
    pub fn to_utc(self, basis: TimeBasis) -> DateTime<Utc> {
        match self {
            Moment::Wall(wall) => basis.to_utc(wall),
            Moment::Utc(instant) => instant,
        }
    }
}

/// A half-open window `[from, to)` over instant (or pinned) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First instant included.
    pub from: DateTime<Utc>,
    /// First instant excluded.
    pub to: DateTime<Utc>,
}

impl Window {
    /// Whether `instant` lies inside the window.
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.from <= instant && instant < self.to
    }
}

/// How long each occurrence lasts, as iCalendar measures it: `days` are nominal (the same wall
/// time N days later, so a DST change inside stretches or shrinks them) and `seconds` are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventLength {
    /// Nominal days (weeks are stored as seven days).
    pub days: i64,
    /// Exact seconds added after the nominal days.
    pub seconds: i64,
}

impl EventLength {
    /// The end of an occurrence that starts at wall time `start` on `basis`.
    ///
    /// Saturates at chrono's last instant, which validated events (years 1 to 9999, at most a
    /// year long) never reach.
    pub fn end_after(self, basis: TimeBasis, start: NaiveDateTime) -> DateTime<Utc> {
        start
            .checked_add_signed(chrono::Duration::days(self.days))
            .map(|after_days| basis.to_utc(after_days))
            .and_then(|end| end.checked_add_signed(chrono::Duration::seconds(self.seconds)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
