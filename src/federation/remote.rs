//! Remote events: `Event` objects from trusted peers, stored with their occurrences so that
//! the agenda can list them beside local ones.
//!
//! Only the object's origin may change it, and only with a newer version (`updated`, else
//! `published`). A deleted event keeps its row, marked deleted, so that a late copy of an
//! older Create cannot bring it back.
//!
//! An occurrence object of a series we store (its `rose:series`) is not a remote event of its
//! own: it changes that series' occurrence with the same recurrence id (see
//! [`super::remote_series`]). [`upsert`] and [`delete`] report the stored occurrences whose
//! start changed or which are gone as [`MovedOccurrence`]s, so that reminders of local
//! people's RSVPs to remote events can follow them.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::incoming::RemoteEventData;
use super::remote_series::{self, MovedOccurrence, Overrides};
use super::{Error, domain_of};
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
    /// The series it is an occurrence of, when it is an occurrence object that arrived before
    /// its series.
    pub series_object_id: Option<String>,
    /// Its original start in that series.
    pub recurrence_id: Option<NaiveDateTime>,
}

/// The effect of storing an incoming object, with the stored occurrences it moved or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The effect on the object.
    pub outcome: Outcome,
    /// Stored occurrences, not yet ended, whose start changed or which are gone.
    pub moved: Vec<MovedOccurrence>,
}

impl Stored {
    fn only(outcome: Outcome) -> Self {
        Stored {
            outcome,
            moved: Vec::new(),
        }
    }
}

/// One stored occurrence of a remote event, after the occurrence objects its origin sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOccurrence {
    /// Original start: the key the origin uses for it (the start, for a one-off event).
    pub recurrence_id: Option<DateTime<Utc>>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Status the occurrence's own object gave, overriding the event's.
    pub status: Option<String>,
    /// Seats left the occurrence's own object gave.
    pub remaining_capacity: Option<i32>,
    /// Id of the occurrence's own object, when the origin sent one.
    pub object_id: Option<String>,
}

impl RemoteOccurrence {
    /// Returns the occurrence's start and end.
    pub fn span(&self) -> Span {
        (self.start, self.end)
    }
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

/// Lists the stored occurrences of a remote event, as (start, end) instants in order, moved
/// ones at their new times and deleted ones left out.
pub fn occurrences_of(conn: &mut AnyConnection, remote_event_id: i64) -> Result<Vec<Span>, Error> {
    Ok(occurrence_details_of(conn, remote_event_id)?
        .iter()
        .map(RemoteOccurrence::span)
        .collect())
}

/// Lists the stored occurrences of a remote event in order of start, deleted ones left out.
pub fn occurrence_details_of(
    conn: &mut AnyConnection,
    remote_event_id: i64,
) -> Result<Vec<RemoteOccurrence>, Error> {
    let rows: Vec<OccurrenceRow> = remote_occurrences::table
        .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
        .filter(remote_occurrences::deleted.eq(false))
        .order(remote_occurrences::start_at)
        .select(OCCURRENCE_COLUMNS)
        .load(conn)?;
    Ok(rows.into_iter().map(occurrence_from_row).collect())
}

/// Lists remote occurrences whose start lies in `[from, to)`, with their events, by start.
/// Moved occurrences are listed at their new start; deleted ones are left out.
///
/// Only events of servers whose content `policy` merges now are listed: a peer blocked or no
/// longer trusted after its events arrived drops out of the agenda (its rows stay, and come
/// back if it is trusted again).
pub fn occurrences_between(
    conn: &mut AnyConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
    policy: super::TrustPolicy,
) -> Result<Vec<(RemoteEvent, RemoteOccurrence)>, Error> {
    use crate::db::schema::peers;
    let mut query = remote_occurrences::table
        .inner_join(remote_events::table)
        .filter(remote_occurrences::start_at.ge(from.naive_utc()))
        .filter(remote_occurrences::start_at.lt(to.naive_utc()))
        .filter(remote_occurrences::deleted.eq(false))
        .filter(remote_events::deleted.eq(false))
        .into_boxed();
    query = match policy {
        super::TrustPolicy::AllowList => query.filter(
            remote_events::origin.eq_any(
                peers::table
                    .filter(peers::state.eq(super::peers::PeerState::Trusted.as_str()))
                    .select(peers::domain),
            ),
        ),
        super::TrustPolicy::Open => query.filter(diesel::dsl::not(
            remote_events::origin.eq_any(
                peers::table
                    .filter(peers::state.eq(super::peers::PeerState::Blocked.as_str()))
                    .select(peers::domain),
            ),
        )),
    };
    let rows: Vec<(RemoteEvent, OccurrenceRow)> = query
        .order((remote_occurrences::start_at, remote_events::id))
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .select((remote_events::all_columns, OCCURRENCE_COLUMNS))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(event, row)| (event, occurrence_from_row(row)))
        .collect())
}

type OccurrenceRow = (
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<String>,
    Option<i32>,
    Option<String>,
);

const OCCURRENCE_COLUMNS: (
    remote_occurrences::start_at,
    remote_occurrences::end_at,
    remote_occurrences::recurrence_id,
    remote_occurrences::status,
    remote_occurrences::remaining_capacity,
    remote_occurrences::object_id,
) = (
    remote_occurrences::start_at,
    remote_occurrences::end_at,
    remote_occurrences::recurrence_id,
    remote_occurrences::status,
    remote_occurrences::remaining_capacity,
    remote_occurrences::object_id,
);

fn occurrence_from_row(row: OccurrenceRow) -> RemoteOccurrence {
    let (start, end, recurrence_id, status, remaining_capacity, object_id) = row;
    RemoteOccurrence {
        recurrence_id: recurrence_id.map(|t| t.and_utc()),
        start: start.and_utc(),
        end: end.and_utc(),
        status,
        remaining_capacity,
        object_id,
    }
}

/// Stores a Create or Update of `data` from `origin`, if it is new or newer.
///
/// An occurrence object whose `rose:series` names a series of the same origin that is stored
/// here changes that series' occurrence instead. One whose series is not stored yet is kept as
/// a remote event of its own, and folded into the series when the series arrives: peers
/// deliver concurrently, so the series and its occurrences can arrive in any order.
pub fn upsert(
    conn: &mut AnyConnection,
    origin: &str,
    actor_id: &str,
    data: &RemoteEventData,
    object_json: &str,
    now: DateTime<Utc>,
) -> Result<Stored, Error> {
    // Some copies of series objects name themselves in `rose:series`.
    let series_id = data
        .series
        .as_deref()
        .filter(|series| *series != data.object_id)
        .filter(|series| domain_of(series).as_deref() == Some(origin));
    let spans = expand(data, now)?;
    write_transaction(conn, |conn| {
        // A series and its occurrence objects are stored under one lock, so that an occurrence
        // arriving at the same time as its series is either folded in or applied, never lost.
        remote_series::lock_series(conn, series_id.unwrap_or(&data.object_id))?;
        if let Some(series_id) = series_id
            && let Some(series) = find(conn, series_id)?
        {
            return remote_series::apply_occurrence(conn, origin, &series, data, now);
        }
        let event = Incoming {
            origin,
            actor_id,
            data,
            object_json,
            series_id,
        };
        store_event(conn, &event, &spans, now)
    })
}

/// An object to store as a remote event of its own.
struct Incoming<'a> {
    origin: &'a str,
    actor_id: &'a str,
    data: &'a RemoteEventData,
    object_json: &'a str,
    /// The series it is an occurrence of, when it names another object of its origin.
    series_id: Option<&'a str>,
}

/// Stores an object as a remote event of its own, with `spans` as its occurrences.
fn store_event(
    conn: &mut AnyConnection,
    incoming: &Incoming<'_>,
    spans: &[Span],
    now: DateTime<Utc>,
) -> Result<Stored, Error> {
    let Incoming {
        origin,
        actor_id,
        data,
        object_json,
        series_id,
    } = *incoming;
    let version = data.version.unwrap_or(now).naive_utc();
    let existing = find(conn, &data.object_id)?;
    if let Some(stored) = &existing {
        if stored.origin != origin {
            return Ok(Stored::only(Outcome::Ignored(format!(
                "object belongs to {}, not {origin}",
                stored.origin
            ))));
        }
        if stored.deleted {
            return Ok(Stored::only(Outcome::Ignored(
                "object was deleted by its origin".into(),
            )));
        }
        if version <= stored.object_updated {
            return Ok(Stored::only(Outcome::Ignored(format!(
                "version {version} is not newer than the stored {}",
                stored.object_updated
            ))));
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
        (
            remote_events::series_object_id.eq(series_id),
            remote_events::recurrence_id
                .eq(series_id.and(data.recurrence_id).map(|t| t.naive_utc())),
        ),
    );
    let (id, outcome) = if let Some(stored) = existing {
        diesel::update(remote_events::table.find(stored.id))
            .set(values)
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
    let keep = if data.recurrence.is_some() {
        Overrides::InExpansion
    } else {
        Overrides::All
    };
    let mut moved = remote_series::replace_occurrences(conn, id, spans, keep, now)?;
    let stored = find(conn, &data.object_id)?
        .ok_or_else(|| Error::NotFound(format!("remote event {} vanished", data.object_id)))?;
    moved.extend(remote_series::fold_early_occurrences(conn, &stored, now)?);
    Ok(Stored { outcome, moved })
}

/// Marks a remote event, or one occurrence of a stored series, deleted when `origin` owns it
/// and `version` is not older.
pub fn delete(
    conn: &mut AnyConnection,
    origin: &str,
    object_id: &str,
    version: DateTime<Utc>,
) -> Result<Stored, Error> {
    write_transaction(conn, |conn| {
        if let Some(stored) = remote_series::delete_occurrence(conn, origin, object_id, version)? {
            return Ok(stored);
        }
        let Some(stored) = find(conn, object_id)? else {
            // Deliveries can arrive out of order: keep a tombstone so that the Create, when it
            // comes late, does not bring the event back. Only the origin reaches this point.
            if super::domain_of(object_id).as_deref() != Some(origin) {
                return Ok(Stored::only(Outcome::Ignored(format!(
                    "object is not on {origin}"
                ))));
            }
            insert_tombstone(conn, origin, object_id, version)?;
            return Ok(Stored::only(Outcome::Deleted));
        };
        if stored.origin != origin {
            return Ok(Stored::only(Outcome::Ignored(format!(
                "object belongs to {}, not {origin}",
                stored.origin
            ))));
        }
        if stored.deleted {
            return Ok(Stored::only(Outcome::Ignored("already deleted".into())));
        }
        if version.naive_utc() < stored.object_updated {
            return Ok(Stored::only(Outcome::Ignored(format!(
                "delete of {version} is older than the stored version {}",
                stored.object_updated
            ))));
        }
        diesel::update(remote_events::table.find(stored.id))
            .set((
                remote_events::deleted.eq(true),
                remote_events::object_updated.eq(version.naive_utc()),
            ))
            .execute(conn)?;
        let moved =
            remote_series::replace_occurrences(conn, stored.id, &[], Overrides::Nothing, version)?;
        Ok(Stored {
            outcome: Outcome::Deleted,
            moved,
        })
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
