//! Queries behind the booking function: capacity rows, attendee rows and the bookings
//! projection. Locking differs per backend: PostgreSQL takes row locks with `FOR UPDATE`;
//! SQLite has one writer at a time, held from `BEGIN IMMEDIATE`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{Booking, BookingState, Error, OccurrenceKey};
use crate::db::AnyConnection;
use crate::db::schema::{attendees, bookings, occurrence_capacities};

/// The capacity row of one occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Queryable)]
pub struct CapacityRow {
    /// Database id.
    pub id: i64,
    /// The occurrence's own capacity, overriding the event's.
    pub capacity_override: Option<i32>,
    /// The capacity in force at the last seat increase; `None` means no limit.
    pub capacity: Option<i32>,
    /// Seats taken by bookings.
    pub seats_taken: i32,
}

type CapacityColumns = (
    occurrence_capacities::id,
    occurrence_capacities::capacity_override,
    occurrence_capacities::capacity,
    occurrence_capacities::seats_taken,
);

const CAPACITY_COLUMNS: CapacityColumns = (
    occurrence_capacities::id,
    occurrence_capacities::capacity_override,
    occurrence_capacities::capacity,
    occurrence_capacities::seats_taken,
);

/// Locks the occurrence's capacity row, creating it on first use. Must run inside a write
/// transaction.
pub(crate) fn lock_capacity_row(
    conn: &mut AnyConnection,
    key: OccurrenceKey,
    now: DateTime<Utc>,
) -> Result<CapacityRow, Error> {
    if let Some(row) = select_capacity_row(conn, key, true)? {
        return Ok(row);
    }
    let values = (
        occurrence_capacities::event_id.eq(key.event_id),
        occurrence_capacities::recurrence_id.eq(key.recurrence_id.naive_utc()),
        occurrence_capacities::seats_taken.eq(0),
        occurrence_capacities::created_at.eq(now.naive_utc()),
        occurrence_capacities::updated_at.eq(now.naive_utc()),
    );
    // Two first bookings can race to create the row; the loser's insert does nothing and it
    // then waits for the winner's lock.
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::insert_into(occurrence_capacities::table)
                .values(values)
                .on_conflict_do_nothing()
                .execute(pg)?;
        }
        AnyConnection::Sqlite(sqlite) => {
            diesel::insert_or_ignore_into(occurrence_capacities::table)
                .values(values)
                .execute(sqlite)?;
        }
    }
    select_capacity_row(conn, key, true)?
        .ok_or_else(|| Error::Corrupt(format!("capacity row of event {} vanished", key.event_id)))
}

/// Reads the occurrence's capacity row, locking it on PostgreSQL when `lock` is set.
pub fn select_capacity_row(
    conn: &mut AnyConnection,
    key: OccurrenceKey,
    lock: bool,
) -> Result<Option<CapacityRow>, Error> {
    let query = occurrence_capacities::table
        .filter(occurrence_capacities::event_id.eq(key.event_id))
        .filter(occurrence_capacities::recurrence_id.eq(key.recurrence_id.naive_utc()))
        .select(CAPACITY_COLUMNS);
    let row = match conn {
        AnyConnection::Postgresql(pg) if lock => query.for_update().first(pg).optional()?,
        AnyConnection::Postgresql(pg) => query.first(pg).optional()?,
        AnyConnection::Sqlite(sqlite) => query.first(sqlite).optional()?,
    };
    Ok(row)
}

/// Writes the capacity row's seats and the capacity they were checked against.
pub(crate) fn update_capacity_row(
    conn: &mut AnyConnection,
    row: &CapacityRow,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    diesel::update(occurrence_capacities::table.find(row.id))
        .set((
            occurrence_capacities::capacity_override.eq(row.capacity_override),
            occurrence_capacities::capacity.eq(row.capacity),
            occurrence_capacities::seats_taken.eq(row.seats_taken),
            occurrence_capacities::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Creates missing attendee rows and locks all of them, in sorted order so that two
/// transactions never wait for each other's attendees in a cycle.
pub(crate) fn lock_attendees(
    conn: &mut AnyConnection,
    ids: &[&str],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let rows: Vec<_> = sorted
        .iter()
        .map(|id| {
            (
                attendees::id.eq(*id),
                attendees::created_at.eq(now.naive_utc()),
            )
        })
        .collect();
    match conn {
        AnyConnection::Postgresql(pg) => {
            // One statement creates and locks: ON CONFLICT DO UPDATE locks each existing row
            // it meets, in the sorted order of the values, until the transaction ends. The
            // update writes the id the row already has, so nothing changes.
            diesel::insert_into(attendees::table)
                .values(&rows)
                .on_conflict(attendees::id)
                .do_update()
                .set(attendees::id.eq(diesel::upsert::excluded(attendees::id)))
                .execute(pg)?;
        }
        AnyConnection::Sqlite(sqlite) => {
            diesel::insert_or_ignore_into(attendees::table)
                .values(&rows)
                .execute(sqlite)?;
        }
    }
    Ok(())
}

#[derive(Queryable)]
struct BookingRow {
    id: i64,
    capacity_id: i64,
    event_id: i64,
    recurrence_id: NaiveDateTime,
    attendee: String,
    seats: i32,
    state: String,
    starts_at: NaiveDateTime,
    ends_at: NaiveDateTime,
    hold_expires_at: Option<NaiveDateTime>,
    order_ref: Option<String>,
    created_at: NaiveDateTime,
}

type BookingColumns = (
    bookings::id,
    bookings::capacity_id,
    bookings::event_id,
    bookings::recurrence_id,
    bookings::attendee,
    bookings::seats,
    bookings::state,
    bookings::starts_at,
    bookings::ends_at,
    bookings::hold_expires_at,
    bookings::order_ref,
    bookings::created_at,
);

const BOOKING_COLUMNS: BookingColumns = (
    bookings::id,
    bookings::capacity_id,
    bookings::event_id,
    bookings::recurrence_id,
    bookings::attendee,
    bookings::seats,
    bookings::state,
    bookings::starts_at,
    bookings::ends_at,
    bookings::hold_expires_at,
    bookings::order_ref,
    bookings::created_at,
);

fn booking_from_row(row: BookingRow) -> Result<Booking, Error> {
    let state = BookingState::parse(&row.state)
        .ok_or_else(|| Error::Corrupt(format!("booking {} state {:?}", row.id, row.state)))?;
    Ok(Booking {
        id: row.id,
        event_id: row.event_id,
        recurrence_id: row.recurrence_id.and_utc(),
        attendee: row.attendee,
        seats: row.seats,
        state,
        starts_at: row.starts_at.and_utc(),
        ends_at: row.ends_at.and_utc(),
        hold_expires_at: row.hold_expires_at.map(|t| t.and_utc()),
        order_ref: row.order_ref,
        created_at: row.created_at.and_utc(),
        capacity_id: row.capacity_id,
    })
}

/// Loads one booking.
pub fn find_booking(conn: &mut AnyConnection, id: i64) -> Result<Option<Booking>, Error> {
    let row = bookings::table
        .find(id)
        .select(BOOKING_COLUMNS)
        .first::<BookingRow>(conn)
        .optional()?;
    row.map(booking_from_row).transpose()
}

/// Lists an occurrence's bookings in one state, oldest first.
pub(crate) fn bookings_in_state(
    conn: &mut AnyConnection,
    capacity_id: i64,
    state: BookingState,
    limit: i64,
) -> Result<Vec<Booking>, Error> {
    let rows = bookings::table
        .filter(bookings::capacity_id.eq(capacity_id))
        .filter(bookings::state.eq(state.as_str()))
        .order(bookings::id.asc())
        .limit(limit)
        .select(BOOKING_COLUMNS)
        .load::<BookingRow>(conn)?;
    rows.into_iter().map(booking_from_row).collect()
}

/// Lists a person's bookings, newest first.
pub fn bookings_of_attendee(
    conn: &mut AnyConnection,
    attendee: &str,
    limit: i64,
) -> Result<Vec<Booking>, Error> {
    let rows = bookings::table
        .filter(bookings::attendee.eq(attendee))
        .order(bookings::id.desc())
        .limit(limit)
        .select(BOOKING_COLUMNS)
        .load::<BookingRow>(conn)?;
    rows.into_iter().map(booking_from_row).collect()
}

/// Sum of seats held by holds on the occurrence that have not expired at `now`.
pub fn live_held_seats(
    conn: &mut AnyConnection,
    capacity_id: i64,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    let seats = bookings::table
        .filter(bookings::capacity_id.eq(capacity_id))
        .filter(bookings::state.eq(BookingState::Held.as_str()))
        .filter(bookings::hold_expires_at.gt(now.naive_utc()))
        .select(bookings::seats)
        .load::<i32>(conn)?;
    Ok(seats.into_iter().map(i64::from).sum())
}

/// Inserts a new booking and returns it with its id.
pub(crate) fn insert_booking(
    conn: &mut AnyConnection,
    booking: &Booking,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    let id = diesel::insert_into(bookings::table)
        .values((
            bookings::capacity_id.eq(booking.capacity_id),
            bookings::event_id.eq(booking.event_id),
            bookings::recurrence_id.eq(booking.recurrence_id.naive_utc()),
            bookings::attendee.eq(&booking.attendee),
            bookings::seats.eq(booking.seats),
            bookings::state.eq(booking.state.as_str()),
            bookings::starts_at.eq(booking.starts_at.naive_utc()),
            bookings::ends_at.eq(booking.ends_at.naive_utc()),
            bookings::hold_expires_at.eq(booking.hold_expires_at.map(|t| t.naive_utc())),
            bookings::order_ref.eq(&booking.order_ref),
            bookings::created_at.eq(now.naive_utc()),
            bookings::updated_at.eq(now.naive_utc()),
        ))
        .returning(bookings::id)
        .get_result::<i64>(conn)?;
    Ok(id)
}

/// Moves a booking to a new state.
pub(crate) fn set_booking_state(
    conn: &mut AnyConnection,
    booking: &Booking,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    diesel::update(bookings::table.find(booking.id))
        .set((
            bookings::state.eq(booking.state.as_str()),
            bookings::order_ref.eq(&booking.order_ref),
            bookings::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores an event's booking settings, replacing earlier ones.
pub fn save_settings(
    conn: &mut AnyConnection,
    event_id: i64,
    settings: &crate::availability::facts::EventSettings,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    use crate::db::schema::booking_settings as s;
    crate::db::write_transaction(conn, |conn| {
        diesel::delete(s::table.find(event_id)).execute(conn)?;
        diesel::insert_into(s::table)
            .values((
                s::event_id.eq(event_id),
                s::buffer_before_seconds.eq(settings.buffer_before_seconds),
                s::buffer_after_seconds.eq(settings.buffer_after_seconds),
                s::opens_before_seconds.eq(settings.opens_before_seconds),
                s::closes_before_seconds.eq(settings.closes_before_seconds),
                s::waitlist.eq(settings.waitlist),
                s::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Adds a busy block for a person (creating the person's row on first use) and returns its id.
pub fn insert_busy_block(
    conn: &mut AnyConnection,
    attendee: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    label: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    use crate::db::schema::busy_blocks as b;
    crate::db::write_transaction(conn, |conn| {
        create_attendee(conn, attendee, now)?;
        let id = diesel::insert_into(b::table)
            .values((
                b::attendee.eq(attendee),
                b::starts_at.eq(start.naive_utc()),
                b::ends_at.eq(end.naive_utc()),
                b::label.eq(label),
                b::created_at.eq(now.naive_utc()),
            ))
            .returning(b::id)
            .get_result::<i64>(conn)?;
        Ok(id)
    })
}

/// Deletes a person's busy block; `false` when there was none.
pub fn delete_busy_block(conn: &mut AnyConnection, attendee: &str, id: i64) -> Result<bool, Error> {
    use crate::db::schema::busy_blocks as b;
    let deleted =
        diesel::delete(b::table.find(id).filter(b::attendee.eq(attendee))).execute(conn)?;
    Ok(deleted > 0)
}

fn create_attendee(conn: &mut AnyConnection, id: &str, now: DateTime<Utc>) -> Result<(), Error> {
    let values = (
        attendees::id.eq(id),
        attendees::created_at.eq(now.naive_utc()),
    );
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::insert_into(attendees::table)
                .values(values)
                .on_conflict_do_nothing()
                .execute(pg)?;
        }
        AnyConnection::Sqlite(sqlite) => {
            diesel::insert_or_ignore_into(attendees::table)
                .values(values)
                .execute(sqlite)?;
        }
    }
    Ok(())
}

/// Lists an occurrence's bookings, oldest first.
pub fn bookings_of_occurrence(
    conn: &mut AnyConnection,
    capacity_id: i64,
    limit: i64,
) -> Result<Vec<Booking>, Error> {
    let rows = bookings::table
        .filter(bookings::capacity_id.eq(capacity_id))
        .order(bookings::id.asc())
        .limit(limit)
        .select(BOOKING_COLUMNS)
        .load::<BookingRow>(conn)?;
    rows.into_iter().map(booking_from_row).collect()
}

/// The seats of one occurrence as the projection stores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OccurrenceSeats {
    /// The occurrence's own capacity, overriding the event's.
    pub capacity_override: Option<i32>,
    /// Seats taken by bookings.
    pub seats_taken: i32,
}

/// Loads the seats of every occurrence of `event_id` that has a capacity row, keyed by
/// recurrence id (a one-off event's start). Occurrences without a row have no seats taken.
pub fn occurrence_seats(
    conn: &mut AnyConnection,
    event_id: i64,
) -> Result<std::collections::HashMap<DateTime<Utc>, OccurrenceSeats>, Error> {
    let rows: Vec<(NaiveDateTime, Option<i32>, i32)> = occurrence_capacities::table
        .filter(occurrence_capacities::event_id.eq(event_id))
        .select((
            occurrence_capacities::recurrence_id,
            occurrence_capacities::capacity_override,
            occurrence_capacities::seats_taken,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(recurrence_id, capacity_override, seats_taken)| {
            let seats = OccurrenceSeats {
                capacity_override,
                seats_taken,
            };
            (recurrence_id.and_utc(), seats)
        })
        .collect())
}
