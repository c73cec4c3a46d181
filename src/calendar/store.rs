//! Queries for calendars, events and overrides.
//!
//! Events are stored as their schedule (wall start, basis, length, recurrence); occurrences are
//! computed when read. `span_start`/`span_end` bound where an event's occurrences can fall (pinned
//! UTC, `span_end` NULL for an endless series), so a window query loads only events that can
//! have an occurrence in it.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::event::{EventDetails, EventStatus, NewEvent, NewOverride, Place, Schedule};
use super::time::{EventLength, Moment, TimeBasis};
use super::{Calendar, Error, NewCalendar, Visibility};
use crate::db::schema::{calendars, event_overrides, events};
use crate::db::{AnyConnection, write_transaction};

/// An event as stored, with its id and revision.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Database id.
    pub id: i64,
    /// The calendar it belongs to.
    pub calendar_id: i64,
    /// The event itself, overrides included.
    pub event: NewEvent,
    /// Revision number, raised on every change (iCalendar SEQUENCE).
    pub sequence: i32,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable)]
struct CalendarRow {
    id: i64,
    slug: String,
    name: String,
    default_zone: String,
    visibility: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Queryable)]
struct EventRow {
    id: i64,
    calendar_id: i64,
    uid: String,
    title: String,
    description: Option<String>,
    location: Option<String>,
    place_json: Option<String>,
    online_url: Option<String>,
    capacity: Option<i32>,
    status: String,
    start_wall: NaiveDateTime,
    time_basis: String,
    zone: Option<String>,
    length_days: i64,
    length_seconds: i64,
    rrule: Option<String>,
    rdates_json: String,
    exdates_json: String,
    _span_start: NaiveDateTime,
    _span_end: Option<NaiveDateTime>,
    sequence: i32,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Queryable)]
struct OverrideRow {
    _id: i64,
    event_id: i64,
    recurrence_id: NaiveDateTime,
    start_wall: Option<NaiveDateTime>,
    time_basis: Option<String>,
    zone: Option<String>,
    length_days: Option<i64>,
    length_seconds: Option<i64>,
    details_json: Option<String>,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = events)]
struct EventValues {
    uid: String,
    title: String,
    description: Option<String>,
    location: Option<String>,
    place_json: Option<String>,
    online_url: Option<String>,
    capacity: Option<i32>,
    status: String,
    start_wall: NaiveDateTime,
    time_basis: String,
    zone: Option<String>,
    length_days: i64,
    length_seconds: i64,
    rrule: Option<String>,
    rdates_json: String,
    exdates_json: String,
    span_start: NaiveDateTime,
    span_end: Option<NaiveDateTime>,
    updated_at: NaiveDateTime,
}

// ---- calendars ----

/// Stores a new calendar; a taken slug is [`Error::SlugTaken`].
pub fn insert_calendar(conn: &mut AnyConnection, new: &NewCalendar) -> Result<Calendar, Error> {
    let now = Utc::now().naive_utc();
    write_transaction(conn, |conn| {
        let taken = calendars::table
            .filter(calendars::slug.eq(&new.slug))
            .count()
            .get_result::<i64>(conn)?;
        if taken > 0 {
            return Err(Error::SlugTaken(new.slug.clone()));
        }
        diesel::insert_into(calendars::table)
            .values((
                calendars::slug.eq(&new.slug),
                calendars::name.eq(&new.name),
                calendars::default_zone.eq(new.default_zone.name()),
                calendars::visibility.eq(new.visibility.as_str()),
                calendars::created_at.eq(now),
                calendars::updated_at.eq(now),
            ))
            .execute(conn)?;
        find_calendar(conn, &new.slug)?.ok_or_else(|| Error::CalendarNotFound(new.slug.clone()))
    })
}

/// Finds a calendar by slug.
pub fn find_calendar(conn: &mut AnyConnection, slug: &str) -> Result<Option<Calendar>, Error> {
    let row = calendars::table
        .filter(calendars::slug.eq(slug))
        .first::<CalendarRow>(conn)
        .optional()?;
    row.map(calendar_from_row).transpose()
}

/// Finds a calendar by id.
pub fn find_calendar_by_id(conn: &mut AnyConnection, id: i64) -> Result<Option<Calendar>, Error> {
    let row = calendars::table
        .find(id)
        .first::<CalendarRow>(conn)
        .optional()?;
    row.map(calendar_from_row).transpose()
}

/// Lists calendars by slug; unlisted ones only when asked.
pub fn list_calendars(
    conn: &mut AnyConnection,
    include_unlisted: bool,
) -> Result<Vec<Calendar>, Error> {
    let mut query = calendars::table.order(calendars::slug.asc()).into_boxed();
    if !include_unlisted {
        query = query.filter(calendars::visibility.eq(Visibility::Public.as_str()));
    }
    let rows = query.load::<CalendarRow>(conn)?;
    rows.into_iter().map(calendar_from_row).collect()
}

/// Replaces a calendar's name, zone and visibility (the slug stays).
pub fn update_calendar(
    conn: &mut AnyConnection,
    slug: &str,
    changes: &NewCalendar,
) -> Result<Calendar, Error> {
    let now = Utc::now().naive_utc();
    let updated = diesel::update(calendars::table.filter(calendars::slug.eq(slug)))
        .set((
            calendars::name.eq(&changes.name),
            calendars::default_zone.eq(changes.default_zone.name()),
            calendars::visibility.eq(changes.visibility.as_str()),
            calendars::updated_at.eq(now),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Err(Error::CalendarNotFound(slug.to_owned()));
    }
    find_calendar(conn, slug)?.ok_or_else(|| Error::CalendarNotFound(slug.to_owned()))
}

/// Deletes a calendar with its events; `false` when there was none.
pub fn delete_calendar(conn: &mut AnyConnection, slug: &str) -> Result<bool, Error> {
    write_transaction(conn, |conn| {
        let Some(calendar) = find_calendar(conn, slug)? else {
            return Ok(false);
        };
        // Delete children explicitly: SQLite enforces ON DELETE CASCADE only with the
        // foreign_keys pragma, and a connection opened by another tool may lack it.
        let event_ids = events::table
            .filter(events::calendar_id.eq(calendar.id))
            .select(events::id);
        for id in event_ids.load::<i64>(conn)? {
            reminders_hook(crate::notify::reminders::event_deleted(conn, id))?;
        }
        diesel::delete(event_overrides::table.filter(event_overrides::event_id.eq_any(event_ids)))
            .execute(conn)?;
        diesel::delete(events::table.filter(events::calendar_id.eq(calendar.id))).execute(conn)?;
        diesel::delete(calendars::table.find(calendar.id)).execute(conn)?;
        Ok(true)
    })
}

fn calendar_from_row(row: CalendarRow) -> Result<Calendar, Error> {
    let default_zone = row
        .default_zone
        .parse()
        .map_err(|_| Error::Corrupt(format!("calendar {} zone {:?}", row.id, row.default_zone)))?;
    let visibility = Visibility::parse(&row.visibility)
        .ok_or_else(|| Error::Corrupt(format!("calendar {} visibility", row.id)))?;
    Ok(Calendar {
        id: row.id,
        slug: row.slug,
        name: row.name,
        default_zone,
        visibility,
        created_at: row.created_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
    })
}

// ---- events ----

/// Stores a new event with its overrides; a UID already in the calendar is [`Error::UidTaken`].
pub fn insert_event(
    conn: &mut AnyConnection,
    calendar_id: i64,
    event: &NewEvent,
) -> Result<StoredEvent, Error> {
    let values = event_values(event)?;
    write_transaction(conn, |conn| {
        if find_event_id_by_uid(conn, calendar_id, &event.uid)?.is_some() {
            return Err(Error::UidTaken(event.uid.clone()));
        }
        let id = insert_event_row(conn, calendar_id, &values)?;
        insert_overrides(conn, id, event)?;
        find_event(conn, id)?.ok_or(Error::EventNotFound(id))
    })
}

/// Replaces an event (and all its overrides) and raises its sequence.
pub fn replace_event(
    conn: &mut AnyConnection,
    id: i64,
    event: &NewEvent,
) -> Result<StoredEvent, Error> {
    let values = event_values(event)?;
    write_transaction(conn, |conn| replace_event_row(conn, id, event, &values))
}

/// Inserts the event, or replaces the one with the same UID in the calendar: importing the same
/// file twice updates instead of duplicating. Returns the event and whether it was new.
pub fn upsert_event_by_uid(
    conn: &mut AnyConnection,
    calendar_id: i64,
    event: &NewEvent,
) -> Result<(StoredEvent, bool), Error> {
    let prepared = prepare_event(event)?;
    upsert_prepared(conn, calendar_id, &prepared)
}

/// An event with its column values computed, which includes expanding its schedule once.
///
/// Preparing is the expensive part of a write, so callers that write many events prepare them
/// all before opening the transaction and hold the write lock only for the inserts.
pub struct PreparedEvent<'a> {
    event: &'a NewEvent,
    values: EventValues,
}

/// Computes the column values of `event`; fails on a schedule that cannot be expanded.
pub fn prepare_event(event: &NewEvent) -> Result<PreparedEvent<'_>, Error> {
    Ok(PreparedEvent {
        event,
        values: event_values(event)?,
    })
}

/// Writes a prepared event like [`upsert_event_by_uid`].
pub fn upsert_prepared(
    conn: &mut AnyConnection,
    calendar_id: i64,
    prepared: &PreparedEvent<'_>,
) -> Result<(StoredEvent, bool), Error> {
    let (event, values) = (prepared.event, &prepared.values);
    write_transaction(conn, |conn| {
        if let Some(id) = find_event_id_by_uid(conn, calendar_id, &event.uid)? {
            return Ok((replace_event_row(conn, id, event, values)?, false));
        }
        let id = insert_event_row(conn, calendar_id, values)?;
        insert_overrides(conn, id, event)?;
        let stored = find_event(conn, id)?.ok_or(Error::EventNotFound(id))?;
        Ok((stored, true))
    })
}

/// Deletes an event; `false` when there was none.
pub fn delete_event(conn: &mut AnyConnection, id: i64) -> Result<bool, Error> {
    write_transaction(conn, |conn| {
        diesel::delete(event_overrides::table.filter(event_overrides::event_id.eq(id)))
            .execute(conn)?;
        let deleted = diesel::delete(events::table.find(id)).execute(conn)?;
        reminders_hook(crate::notify::reminders::event_deleted(conn, id))?;
        Ok(deleted > 0)
    })
}

/// Loads one event with its overrides.
pub fn find_event(conn: &mut AnyConnection, id: i64) -> Result<Option<StoredEvent>, Error> {
    let Some(row) = events::table.find(id).first::<EventRow>(conn).optional()? else {
        return Ok(None);
    };
    let overrides = event_overrides::table
        .filter(event_overrides::event_id.eq(id))
        .order(event_overrides::recurrence_id.asc())
        .load::<OverrideRow>(conn)?;
    event_from_rows(row, overrides).map(Some)
}

/// Finds an event's id by its UID within a calendar.
pub fn find_event_id_by_uid(
    conn: &mut AnyConnection,
    calendar_id: i64,
    uid: &str,
) -> Result<Option<i64>, Error> {
    Ok(events::table
        .filter(events::calendar_id.eq(calendar_id))
        .filter(events::uid.eq(uid))
        .select(events::id)
        .first::<i64>(conn)
        .optional()?)
}

/// Loads the events of the given calendars whose span meets `[from, to)` (pinned UTC), ordered
/// by id, with their overrides.
pub fn events_meeting(
    conn: &mut AnyConnection,
    calendar_ids: &[i64],
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<Vec<StoredEvent>, Error> {
    let rows = events::table
        .filter(events::calendar_id.eq_any(calendar_ids))
        .filter(events::span_start.lt(to))
        .filter(events::span_end.is_null().or(events::span_end.ge(from)))
        .order(events::id.asc())
        .load::<EventRow>(conn)?;
    attach_overrides(conn, rows)
}

/// Loads every event of one calendar, ordered by id, with overrides.
pub fn events_of_calendar(
    conn: &mut AnyConnection,
    calendar_id: i64,
) -> Result<Vec<StoredEvent>, Error> {
    let rows = events::table
        .filter(events::calendar_id.eq(calendar_id))
        .order(events::id.asc())
        .load::<EventRow>(conn)?;
    attach_overrides(conn, rows)
}

fn attach_overrides(
    conn: &mut AnyConnection,
    rows: Vec<EventRow>,
) -> Result<Vec<StoredEvent>, Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut overrides: std::collections::HashMap<i64, Vec<OverrideRow>> =
        std::collections::HashMap::new();
    // Chunk the id list: SQLite limits bound parameters per statement.
    for chunk in ids.chunks(500) {
        let loaded = event_overrides::table
            .filter(event_overrides::event_id.eq_any(chunk))
            .order(event_overrides::recurrence_id.asc())
            .load::<OverrideRow>(conn)?;
        for row in loaded {
            overrides.entry(row.event_id).or_default().push(row);
        }
    }
    rows.into_iter()
        .map(|row| {
            let own = overrides.remove(&row.id).unwrap_or_default();
            event_from_rows(row, own)
        })
        .collect()
}

fn insert_event_row(
    conn: &mut AnyConnection,
    calendar_id: i64,
    values: &EventValues,
) -> Result<i64, Error> {
    let now = Utc::now().naive_utc();
    let id = diesel::insert_into(events::table)
        .values((
            values,
            events::calendar_id.eq(calendar_id),
            events::sequence.eq(0),
            events::created_at.eq(now),
        ))
        .returning(events::id)
        .get_result::<i64>(conn)?;
    Ok(id)
}

fn replace_event_row(
    conn: &mut AnyConnection,
    id: i64,
    event: &NewEvent,
    values: &EventValues,
) -> Result<StoredEvent, Error> {
    let updated = diesel::update(events::table.find(id))
        .set((values, events::sequence.eq(events::sequence + 1)))
        .execute(conn)?;
    if updated == 0 {
        return Err(Error::EventNotFound(id));
    }
    diesel::delete(event_overrides::table.filter(event_overrides::event_id.eq(id)))
        .execute(conn)?;
    insert_overrides(conn, id, event)?;
    // Reminders follow their occurrences: moved ones move, cancelled or removed ones go.
    reminders_hook(crate::notify::reminders::event_changed(
        conn,
        id,
        Utc::now(),
    ))?;
    find_event(conn, id)?.ok_or(Error::EventNotFound(id))
}

fn reminders_hook(result: Result<(), crate::notify::Error>) -> Result<(), Error> {
    use crate::notify::Error as N;
    match result {
        Ok(()) => Ok(()),
        Err(N::Calendar(error)) => Err(error),
        Err(N::Queue(crate::delivery::Error::Database(error))) => Err(Error::Database(error)),
        Err(other) => Err(Error::Corrupt(format!("cannot update reminders: {other}"))),
    }
}

fn insert_overrides(
    conn: &mut AnyConnection,
    event_id: i64,
    event: &NewEvent,
) -> Result<(), Error> {
    for o in &event.overrides {
        let (basis, zone) = o.basis.map(basis_columns).unzip();
        let details = o.details.as_ref().map(to_json).transpose()?;
        diesel::insert_into(event_overrides::table)
            .values((
                event_overrides::event_id.eq(event_id),
                event_overrides::recurrence_id
                    .eq(o.recurrence_id.to_utc(event.schedule.basis).naive_utc()),
                event_overrides::start_wall.eq(o.start),
                event_overrides::time_basis.eq(basis),
                event_overrides::zone.eq(zone.flatten()),
                event_overrides::length_days.eq(o.length.map(|l| l.days)),
                event_overrides::length_seconds.eq(o.length.map(|l| l.seconds)),
                event_overrides::details_json.eq(details),
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn event_values(event: &NewEvent) -> Result<EventValues, Error> {
    let schedule = &event.schedule;
    let details = &event.details;
    let (time_basis, zone) = basis_columns(schedule.basis);
    let (span_start, span_end) = super::span::schedule_span(event)?;

    Ok(EventValues {
        uid: event.uid.clone(),
        title: details.title.clone(),
        description: details.description.clone(),
        location: details.location.clone(),
        place_json: details.place.as_ref().map(to_json).transpose()?,
        online_url: details.online_url.clone(),
        capacity: event.capacity,
        status: details.status.as_str().to_owned(),
        start_wall: schedule.start,
        time_basis,
        zone,
        length_days: schedule.length.days,
        length_seconds: schedule.length.seconds,
        rrule: schedule.rrule.clone(),
        rdates_json: to_json(&schedule.rdates)?,
        exdates_json: to_json(&schedule.exdates)?,
        span_start: span_start.naive_utc(),
        span_end: span_end.map(|end| end.naive_utc()),
        updated_at: Utc::now().naive_utc(),
    })
}

fn event_from_rows(row: EventRow, overrides: Vec<OverrideRow>) -> Result<StoredEvent, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("event {} {what}", row.id));
    let basis = basis_from_columns(&row.time_basis, row.zone.as_deref())
        .ok_or_else(|| corrupt("time basis"))?;
    let status = EventStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?;
    let place: Option<Place> = row.place_json.as_deref().map(from_json).transpose()?;
    let schedule = Schedule {
        start: row.start_wall,
        basis,
        length: EventLength {
            days: row.length_days,
            seconds: row.length_seconds,
        },
        rrule: row.rrule,
        rdates: from_json(&row.rdates_json)?,
        exdates: from_json(&row.exdates_json)?,
    };
    let overrides = overrides
        .into_iter()
        .map(|row| override_from_row(&row))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(StoredEvent {
        id: row.id,
        calendar_id: row.calendar_id,
        event: NewEvent {
            uid: row.uid,
            details: EventDetails {
                title: row.title,
                description: row.description,
                location: row.location,
                place,
                online_url: row.online_url,
                status,
            },
            schedule,
            capacity: row.capacity,
            overrides,
        },
        sequence: row.sequence,
        created_at: row.created_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
    })
}

fn override_from_row(row: &OverrideRow) -> Result<NewOverride, Error> {
    let basis = match row.time_basis.as_deref() {
        Some(kind) => Some(
            basis_from_columns(kind, row.zone.as_deref())
                .ok_or_else(|| Error::Corrupt(format!("override of event {}", row.event_id)))?,
        ),
        None => None,
    };
    let length = match (row.length_days, row.length_seconds) {
        (Some(days), Some(seconds)) => Some(EventLength { days, seconds }),
        _ => None,
    };
    Ok(NewOverride {
        recurrence_id: Moment::Utc(row.recurrence_id.and_utc()),
        start: row.start_wall,
        basis,
        length,
        details: row.details_json.as_deref().map(from_json).transpose()?,
    })
}

/// The `(time_basis, zone)` columns for a basis.
fn basis_columns(basis: TimeBasis) -> (String, Option<String>) {
    match basis {
        TimeBasis::Zoned(tz) => ("zoned".to_owned(), Some(tz.name().to_owned())),
        TimeBasis::Utc => ("utc".to_owned(), None),
        TimeBasis::Floating => ("floating".to_owned(), None),
        TimeBasis::AllDay => ("all_day".to_owned(), None),
    }
}

fn basis_from_columns(kind: &str, zone: Option<&str>) -> Option<TimeBasis> {
    match (kind, zone) {
        ("zoned", Some(zone)) => zone.parse().ok().map(TimeBasis::Zoned),
        ("utc", _) => Some(TimeBasis::Utc),
        ("floating", _) => Some(TimeBasis::Floating),
        ("all_day", _) => Some(TimeBasis::AllDay),
        _ => None,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("cannot decode {text:?}: {e}")))
}
