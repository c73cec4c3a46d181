//! The append-only ledger and its check against the projection.
//!
//! Each booking's entries, replayed in id order, must lead to the state the `bookings` table
//! shows, and the seats of its `booked` bookings must add up to each capacity row's
//! `seats_taken`. [`verify`] rebuilds both from the ledger and lists every difference.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{BookingState, Error};
use crate::db::AnyConnection;
use crate::db::schema::{bookings, ledger_entries, occurrence_capacities};

/// Kind of change a ledger entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Seats taken by a new booking.
    Booked,
    /// Seats reserved by a new hold.
    Held,
    /// A new request put on the waitlist.
    Waitlisted,
    /// A hold turned into a booking.
    Confirmed,
    /// A waitlisted request moved onto the occurrence.
    Promoted,
    /// A booking, hold or waitlist place given up.
    Cancelled,
    /// A hold that lapsed unconfirmed.
    Expired,
}

impl EntryKind {
    /// Returns the stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Booked => "booked",
            EntryKind::Held => "held",
            EntryKind::Waitlisted => "waitlisted",
            EntryKind::Confirmed => "confirmed",
            EntryKind::Promoted => "promoted",
            EntryKind::Cancelled => "cancelled",
            EntryKind::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            EntryKind::Booked,
            EntryKind::Held,
            EntryKind::Waitlisted,
            EntryKind::Confirmed,
            EntryKind::Promoted,
            EntryKind::Cancelled,
            EntryKind::Expired,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// Returns the state a booking reaches through this entry from `before` (`None` for a new
    /// booking), or `None` when the transition is not allowed.
    pub fn next_state(self, before: Option<BookingState>) -> Option<BookingState> {
        use BookingState as S;
        match (self, before) {
            (EntryKind::Booked, None)
            | (EntryKind::Confirmed, Some(S::Held))
            | (EntryKind::Promoted, Some(S::Waitlisted)) => Some(S::Booked),
            (EntryKind::Held, None) => Some(S::Held),
            (EntryKind::Waitlisted, None) => Some(S::Waitlisted),
            (EntryKind::Cancelled, Some(S::Booked | S::Held | S::Waitlisted)) => Some(S::Cancelled),
            (EntryKind::Expired, Some(S::Held)) => Some(S::Expired),
            _ => None,
        }
    }
}

/// An entry to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// The booking it changes.
    pub booking_id: i64,
    /// The occurrence's capacity row.
    pub capacity_id: i64,
    /// Who.
    pub attendee: String,
    /// What.
    pub kind: EntryKind,
    /// How many seats.
    pub seats: i32,
    /// The idempotency key of the request that caused it.
    pub idempotency_key: Option<String>,
    /// Order reference of a confirmation.
    pub order_ref: Option<String>,
    /// Expiry of a hold.
    pub hold_expires_at: Option<DateTime<Utc>>,
}

/// Appends entries in one statement.
pub(crate) fn append(
    conn: &mut AnyConnection,
    entries: &[NewEntry],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = entries
        .iter()
        .map(|entry| {
            (
                ledger_entries::booking_id.eq(entry.booking_id),
                ledger_entries::capacity_id.eq(entry.capacity_id),
                ledger_entries::attendee.eq(entry.attendee.clone()),
                ledger_entries::kind.eq(entry.kind.as_str()),
                ledger_entries::seats.eq(entry.seats),
                ledger_entries::idempotency_key.eq(entry.idempotency_key.clone()),
                ledger_entries::order_ref.eq(entry.order_ref.clone()),
                ledger_entries::hold_expires_at.eq(entry.hold_expires_at.map(|t| t.naive_utc())),
                ledger_entries::recorded_at.eq(now.naive_utc()),
            )
        })
        .collect();
    // SQLite allows at most 32,766 bound parameters per statement; 9 per row.
    for chunk in rows.chunks(1_000) {
        match conn {
            AnyConnection::Postgresql(pg) => {
                diesel::insert_into(ledger_entries::table)
                    .values(chunk)
                    .execute(pg)?;
            }
            AnyConnection::Sqlite(sqlite) => {
                diesel::insert_into(ledger_entries::table)
                    .values(chunk)
                    .execute(sqlite)?;
            }
        }
    }
    Ok(())
}

/// Result of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Ledger entries replayed.
    pub entries: usize,
    /// Bookings in the projection.
    pub bookings: usize,
    /// Capacity rows in the projection.
    pub occurrences: usize,
    /// Each difference between the ledger and the projection, in words.
    pub differences: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Replayed {
    capacity_id: i64,
    seats: i32,
    state: BookingState,
}

/// Rebuilds the projection from the ledger and compares it with the stored one.
///
/// Reads run in one transaction so that the ledger and the projection are seen at the same
/// moment.
// NOTE: the whole ledger is loaded into memory; fine for millions of entries, not for billions.
pub fn verify(conn: &mut AnyConnection) -> Result<Verification, Error> {
    crate::db::write_transaction(conn, |conn| {
        let mut report = Verification::default();
        let replayed = replay(conn, &mut report)?;
        compare_bookings(conn, &replayed, &mut report)?;
        compare_seats(conn, &replayed, &mut report)?;
        Ok(report)
    })
}

fn replay(
    conn: &mut AnyConnection,
    report: &mut Verification,
) -> Result<BTreeMap<i64, Replayed>, Error> {
    let entries = ledger_entries::table
        .order(ledger_entries::id.asc())
        .select((
            ledger_entries::id,
            ledger_entries::booking_id,
            ledger_entries::capacity_id,
            ledger_entries::kind,
            ledger_entries::seats,
        ))
        .load::<(i64, i64, i64, String, i32)>(conn)?;
    report.entries = entries.len();
    let mut replayed: BTreeMap<i64, Replayed> = BTreeMap::new();
    for (entry_id, booking_id, capacity_id, kind_text, seats) in entries {
        let Some(kind) = EntryKind::parse(&kind_text) else {
            report.differences.push(format!(
                "ledger entry {entry_id} has unknown kind {kind_text:?}"
            ));
            continue;
        };
        let before = replayed.get(&booking_id).map(|r| r.state);
        let Some(state) = kind.next_state(before) else {
            report.differences.push(format!(
                "ledger entry {entry_id}: {} is not allowed on booking {booking_id} in state {}",
                kind.as_str(),
                before.map_or("(new)", BookingState::as_str)
            ));
            continue;
        };
        replayed.insert(
            booking_id,
            Replayed {
                capacity_id,
                seats,
                state,
            },
        );
    }
    Ok(replayed)
}

fn compare_bookings(
    conn: &mut AnyConnection,
    replayed: &BTreeMap<i64, Replayed>,
    report: &mut Verification,
) -> Result<(), Error> {
    let stored = bookings::table
        .order(bookings::id.asc())
        .select((
            bookings::id,
            bookings::capacity_id,
            bookings::seats,
            bookings::state,
        ))
        .load::<(i64, i64, i32, String)>(conn)?;
    report.bookings = stored.len();
    let mut seen = 0;
    for (id, capacity_id, seats, state) in stored {
        let Some(expected) = replayed.get(&id) else {
            report
                .differences
                .push(format!("booking {id} has no ledger entries"));
            continue;
        };
        seen += 1;
        if expected.state.as_str() != state {
            report.differences.push(format!(
                "booking {id} is {state} in the projection, {} in the ledger",
                expected.state.as_str()
            ));
        }
        if expected.seats != seats || expected.capacity_id != capacity_id {
            report.differences.push(format!(
                "booking {id} has {seats} seats on capacity row {capacity_id} in the \
                 projection, {} on {} in the ledger",
                expected.seats, expected.capacity_id
            ));
        }
    }
    if seen != replayed.len() {
        report.differences.push(format!(
            "the ledger names {} bookings that the projection lacks",
            replayed.len() - seen
        ));
    }
    Ok(())
}

fn compare_seats(
    conn: &mut AnyConnection,
    replayed: &BTreeMap<i64, Replayed>,
    report: &mut Verification,
) -> Result<(), Error> {
    let mut expected: HashMap<i64, i64> = HashMap::new();
    for booking in replayed.values() {
        if booking.state == BookingState::Booked {
            *expected.entry(booking.capacity_id).or_default() += i64::from(booking.seats);
        }
    }
    let rows = occurrence_capacities::table
        .order(occurrence_capacities::id.asc())
        .select((
            occurrence_capacities::id,
            occurrence_capacities::event_id,
            occurrence_capacities::recurrence_id,
            occurrence_capacities::capacity,
            occurrence_capacities::seats_taken,
        ))
        .load::<(i64, i64, NaiveDateTime, Option<i32>, i32)>(conn)?;
    report.occurrences = rows.len();
    for (id, event_id, recurrence_id, capacity, seats_taken) in rows {
        let want = expected.remove(&id).unwrap_or(0);
        let occurrence = format!(
            "occurrence {}/{}",
            event_id,
            recurrence_id.format("%Y%m%dT%H%M%SZ")
        );
        if want != i64::from(seats_taken) {
            report.differences.push(format!(
                "{occurrence} has {seats_taken} seats taken in the projection, {want} in the ledger"
            ));
        }
        if let Some(capacity) = capacity.filter(|&c| i64::from(c) < want) {
            report.differences.push(format!(
                "{occurrence} is overbooked: {want} seats booked, capacity {capacity}"
            ));
        }
    }
    for capacity_id in expected.keys() {
        report.differences.push(format!(
            "the ledger books seats on capacity row {capacity_id}, which does not exist"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_booking_life_cycle() {
        use BookingState as S;
        assert_eq!(EntryKind::Booked.next_state(None), Some(S::Booked));
        assert_eq!(
            EntryKind::Confirmed.next_state(Some(S::Held)),
            Some(S::Booked)
        );
        assert_eq!(EntryKind::Confirmed.next_state(Some(S::Expired)), None);
        assert_eq!(EntryKind::Cancelled.next_state(Some(S::Cancelled)), None);
        assert_eq!(
            EntryKind::Promoted.next_state(Some(S::Waitlisted)),
            Some(S::Booked)
        );
        assert_eq!(EntryKind::Booked.next_state(Some(S::Booked)), None);
    }
}
