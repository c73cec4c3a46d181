//! Remote events: `Event` objects from trusted peers, stored with their occurrences so that
//! the agenda can list them beside local ones.
//!
//! Only the object's origin may change it, and only with a newer version (`updated`, else
//! `published`). A deleted event keeps its row, marked deleted, so that a late copy of an
//! older Create cannot bring it back.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::Error;
use super::incoming::RemoteEventData;
use crate::calendar::event::{EventDetails, NewEvent, Place, Schedule};
use crate::calendar::occurrence::occurrences;
use crate::calendar::time::{EventLength, Moment, TimeBasis, Window};
use crate::db::schema::{remote_events, remote_occurrences};
use crate::db::{AnyConnection, write_transaction};

/// Length given to an event that arrives without `endTime`, for overlap checks and listings.
/// FEP-8a8e specifies that such an event has no end to show, so the stored `end_at` stays empty.
pub const DEFAULT_LENGTH: Duration = Duration::hours(2);
/// How far ahead a peer's series is expanded.
pub const SERIES_HORIZON: Duration = Duration::days(400);
/// Most occurrences stored for one remote series.
pub const MAX_SERIES_OCCURRENCES: usize = 500;

/// One occurrence: start and end instants.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The effect of storing an incoming object, with the reason when there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new remote event was stored.
    Created,
    /// A stored remote event was replaced by a newer version.
    Updated,
    /// A stored remote event was marked deleted.
    Deleted,
    /// Nothing changed; the text gives the reason.
    Ignored(String),
}

/// A stored remote event.
#[derive(Debug, Clone, Queryable)]
pub struct RemoteEvent {
    /// Database id.
    pub id: i64,
    /// Object id.
    pub object_id: String,
    /// Host of the object id.
    pub origin: String,
    /// Actor it came from.
    pub actor_id: String,
    /// Title.
    pub title: String,
    /// Human-facing page.
    pub url: Option<String>,
    /// IANA zone name.
    pub zone: Option<String>,
    /// Start (naive UTC).
    pub start_at: NaiveDateTime,
    /// End (naive UTC), when the peer sent one.
    pub end_at: Option<NaiveDateTime>,
    /// Place on one line.
    pub location: Option<String>,
    /// Place as JSON.
    pub place_json: Option<String>,
    /// Online link.
    pub online_url: Option<String>,
    /// Seats, `None` for unlimited.
    pub capacity: Option<i32>,
    /// Seats left, as the peer last reported.
    pub remaining_capacity: Option<i32>,
    /// `confirmed`, `tentative` or `cancelled`.
    pub status: String,
    /// RRULE of a series.
    pub rrule: Option<String>,
    /// Version of the stored copy.
    pub object_updated: NaiveDateTime,
    /// Whether its origin deleted it.
    pub deleted: bool,
    /// The object as received.
    pub object_json: String,
    /// When it was last stored.
    pub received_at: NaiveDateTime,
}

impl RemoteEvent {
    /// Reads the stored place.
    pub fn place(&self) -> Option<Place> {
        serde_json::from_str(self.place_json.as_deref()?).ok()
    }
}

/// Finds a remote event by object id.
pub fn find(conn: &mut AnyConnection, object_id: &str) -> Result<Option<RemoteEvent>, Error> {
    Ok(remote_events::table
        .filter(remote_events::object_id.eq(object_id))
        .first(conn)
        .optional()?)
}

/// Lists the stored occurrences of a remote event, as (start, end) instants in order.
pub fn occurrences_of(conn: &mut AnyConnection, remote_event_id: i64) -> Result<Vec<Span>, Error> {
    let rows: Vec<(NaiveDateTime, NaiveDateTime)> = remote_occurrences::table
        .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
        .order(remote_occurrences::start_at)
        .select((remote_occurrences::start_at, remote_occurrences::end_at))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(s, e)| (s.and_utc(), e.and_utc()))
        .collect())
}

/// Lists remote occurrences whose start lies in `[from, to)`, with their events, by start.
pub fn occurrences_between(
    conn: &mut AnyConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<(RemoteEvent, Span)>, Error> {
    let rows: Vec<(RemoteEvent, (NaiveDateTime, NaiveDateTime))> = remote_occurrences::table
        .inner_join(remote_events::table)
        .filter(remote_occurrences::start_at.ge(from.naive_utc()))
        .filter(remote_occurrences::start_at.lt(to.naive_utc()))
        .filter(remote_events::deleted.eq(false))
        .order((remote_occurrences::start_at, remote_events::id))
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .select((
            remote_events::all_columns,
            (remote_occurrences::start_at, remote_occurrences::end_at),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(event, (start, end))| (event, (start.and_utc(), end.and_utc())))
        .collect())
}

/// Stores a Create or Update of `data` from `origin`, if it is new or newer.
pub fn upsert(
    conn: &mut AnyConnection,
    origin: &str,
    actor_id: &str,
    data: &RemoteEventData,
    object_json: &str,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let spans = expand(data, now)?;
    let version = data.version.unwrap_or(now).naive_utc();
    write_transaction(conn, |conn| {
        let existing = find(conn, &data.object_id)?;
        if let Some(stored) = &existing {
            if stored.origin != origin {
                return Ok(Outcome::Ignored(format!(
                    "object belongs to {}, not {origin}",
                    stored.origin
                )));
            }
            if stored.deleted {
                return Ok(Outcome::Ignored("object was deleted by its origin".into()));
            }
            if version <= stored.object_updated {
                return Ok(Outcome::Ignored(format!(
                    "version {version} is not newer than the stored {}",
                    stored.object_updated
                )));
            }
        }
        let place = data.place.as_ref();
        let values = (
            remote_events::origin.eq(origin),
            remote_events::actor_id.eq(actor_id),
            remote_events::title.eq(&data.title),
            remote_events::url.eq(&data.url),
            remote_events::zone.eq(data.zone.map(|tz| tz.name().to_owned())),
            remote_events::start_at.eq(data.start.naive_utc()),
            remote_events::end_at.eq(data.end.map(|t| t.naive_utc())),
            remote_events::location.eq(place.map(Place::one_line)),
            remote_events::place_json.eq(place.and_then(|p| serde_json::to_string(p).ok())),
            remote_events::online_url.eq(&data.online_url),
            remote_events::capacity.eq(data.capacity),
            remote_events::remaining_capacity.eq(data.remaining_capacity),
            remote_events::status.eq(data.status.as_str()),
            remote_events::rrule.eq(data.recurrence.as_ref().map(|r| r.rrule.clone())),
            remote_events::object_updated.eq(version),
            remote_events::object_json.eq(object_json),
            remote_events::received_at.eq(now.naive_utc()),
        );
        let (id, outcome) = if let Some(stored) = existing {
            diesel::update(remote_events::table.find(stored.id))
                .set(values)
                .execute(conn)?;
            diesel::delete(
                remote_occurrences::table.filter(remote_occurrences::remote_event_id.eq(stored.id)),
            )
            .execute(conn)?;
            (stored.id, Outcome::Updated)
        } else {
            let id = diesel::insert_into(remote_events::table)
                .values((
                    values,
                    remote_events::object_id.eq(&data.object_id),
                    remote_events::deleted.eq(false),
                ))
                .returning(remote_events::id)
                .get_result(conn)?;
            (id, Outcome::Created)
        };
        // One insert per row: diesel has no batch insert over the two-backend connection.
        for (start, end) in &spans {
            diesel::insert_into(remote_occurrences::table)
                .values((
                    remote_occurrences::remote_event_id.eq(id),
                    remote_occurrences::start_at.eq(start.naive_utc()),
                    remote_occurrences::end_at.eq(end.naive_utc()),
                ))
                .execute(conn)?;
        }
        Ok(outcome)
    })
}

/// Marks a remote event deleted when `origin` owns it and `version` is not older.
pub fn delete(
    conn: &mut AnyConnection,
    origin: &str,
    object_id: &str,
    version: DateTime<Utc>,
) -> Result<Outcome, Error> {
    write_transaction(conn, |conn| {
        let Some(stored) = find(conn, object_id)? else {
            // Deliveries can arrive out of order: keep a tombstone so that the Create, when it
            // comes late, does not bring the event back. Only the origin reaches this point.
            if super::domain_of(object_id).as_deref() != Some(origin) {
                return Ok(Outcome::Ignored(format!("object is not on {origin}")));
            }
            insert_tombstone(conn, origin, object_id, version)?;
            return Ok(Outcome::Deleted);
        };
        if stored.origin != origin {
            return Ok(Outcome::Ignored(format!(
                "object belongs to {}, not {origin}",
                stored.origin
            )));
        }
        if stored.deleted {
            return Ok(Outcome::Ignored("already deleted".into()));
        }
        if version.naive_utc() < stored.object_updated {
            return Ok(Outcome::Ignored(format!(
                "delete of {version} is older than the stored version {}",
                stored.object_updated
            )));
        }
        diesel::update(remote_events::table.find(stored.id))
            .set((
                remote_events::deleted.eq(true),
                remote_events::object_updated.eq(version.naive_utc()),
            ))
            .execute(conn)?;
        diesel::delete(
            remote_occurrences::table.filter(remote_occurrences::remote_event_id.eq(stored.id)),
        )
        .execute(conn)?;
        Ok(Outcome::Deleted)
    })
}

fn insert_tombstone(
    conn: &mut AnyConnection,
    origin: &str,
    object_id: &str,
    version: DateTime<Utc>,
) -> Result<(), Error> {
    let at = version.naive_utc();
    diesel::insert_into(remote_events::table)
        .values((
            remote_events::object_id.eq(object_id),
            remote_events::origin.eq(origin),
            remote_events::actor_id.eq(origin),
            remote_events::title.eq(""),
            remote_events::start_at.eq(at),
            remote_events::status.eq("cancelled"),
            remote_events::object_updated.eq(at),
            remote_events::deleted.eq(true),
            remote_events::object_json.eq("{}"),
            remote_events::received_at.eq(Utc::now().naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Computes the occurrences of an incoming event: its series within the horizon when it carries our
/// recurrence terms, else the one span it names.
fn expand(data: &RemoteEventData, now: DateTime<Utc>) -> Result<Vec<Span>, Error> {
    let length = data.end.map_or(DEFAULT_LENGTH, |end| end - data.start);
    let (Some(series), Some(zone)) = (&data.recurrence, data.zone) else {
        return Ok(vec![(data.start, data.start + length)]);
    };
    let event = NewEvent {
        uid: data.object_id.clone(),
        details: EventDetails::default(),
        schedule: Schedule {
            start: series.dtstart,
            basis: TimeBasis::Zoned(zone),
            length: EventLength {
                days: 0,
                seconds: length.num_seconds(),
            },
            rrule: Some(series.rrule.clone()),
            rdates: Vec::new(),
            exdates: series.exdates.iter().map(|t| Moment::Utc(*t)).collect(),
        },
        capacity: None,
        overrides: Vec::new(),
    };
    let window = Window {
        from: now - Duration::days(1),
        to: now + SERIES_HORIZON,
    };
    let expanded = occurrences(&event, window, MAX_SERIES_OCCURRENCES).map_err(|e| {
        Error::Invalid(crate::calendar::validate::InvalidField::new(
            "object.rose:rrule",
            &series.rrule,
            e.to_string(),
        ))
    })?;
    Ok(expanded
        .occurrences
        .into_iter()
        .map(|o| (o.start, o.end))
        .collect())
}
