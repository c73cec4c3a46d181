//! Our people's RSVPs to remote events.
//!
//! [`join`] records the RSVP as `requested` and publishes a `Join` from the person's actor to
//! the event's organizer. The organizer's `Accept` makes it `accepted` and schedules the
//! person's reminders, which then follow the remote event as its origin updates it. A
//! `TentativeAccept` marked `rose:waitlisted` makes it `waitlisted`, and a `Reject` makes it
//! `refused`, keeping the reason given. [`leave`] publishes a `Leave` and removes the
//! reminders.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use super::{clean_reason, remote_occurrence};
use crate::calendar::validate::InvalidField;
use crate::db::schema::{outgoing_rsvps, remote_events};
use crate::db::{AnyConnection, write_transaction};
use crate::federation::incoming::{id_of, type_of};
use crate::federation::peers::{self, PeerState};
use crate::federation::remote::RemoteEvent;
use crate::federation::{Error, TrustPolicy, actors, outbox};
use crate::notify::reminders::{self, OccurrenceRef};

/// An RSVP of one of our people, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutgoingRsvp {
    /// Row id.
    pub id: i64,
    /// Our person.
    pub person: String,
    /// The remote event.
    pub remote_event_id: i64,
    /// Its object id.
    pub object_id: String,
    /// The occurrence's start when the person joined; it names the occurrence.
    pub occurrence: DateTime<Utc>,
    /// `requested`, `accepted`, `waitlisted`, `tentative`, `refused`, `left` or `cancelled`
    /// (the organizer cancelled or deleted the occurrence).
    pub state: String,
    /// The organizer's reason, for a refusal or a waitlist.
    pub reason: Option<String>,
    /// The id of the `Join` sent.
    pub join_id: String,
}

#[derive(Queryable, Clone, Debug)]
struct Row {
    id: i64,
    person: String,
    remote_event_id: i64,
    occurrence_start: NaiveDateTime,
    object_id: String,
    inbox: String,
    join_activity_id: String,
    version: i32,
    state: String,
    reason: Option<String>,
    _created_at: NaiveDateTime,
    _updated_at: NaiveDateTime,
}

impl Row {
    fn shown(self) -> OutgoingRsvp {
        OutgoingRsvp {
            id: self.id,
            person: self.person,
            remote_event_id: self.remote_event_id,
            object_id: self.object_id,
            occurrence: self.occurrence_start.and_utc(),
            state: self.state,
            reason: self.reason,
            join_id: self.join_activity_id,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state.as_str(), "requested" | "accepted" | "waitlisted")
    }
}

/// Loads a remote event by id, refusing deleted ones.
pub fn find_event(conn: &mut AnyConnection, remote_event_id: i64) -> Result<RemoteEvent, Error> {
    let found: Option<RemoteEvent> = remote_events::table
        .find(remote_event_id)
        .first(conn)
        .optional()?;
    match found {
        Some(event) if !event.deleted => Ok(event),
        _ => Err(Error::NotFound(format!(
            "remote event {remote_event_id} not found"
        ))),
    }
}

/// Loads remote event `remote_event_id` for one of our people to join. Like [`find_event`],
/// and the event's server must be trusted under `policy`: a `Join` never goes to a server
/// that is blocked or whose events we do not merge.
pub fn find_joinable_event(
    conn: &mut AnyConnection,
    remote_event_id: i64,
    policy: TrustPolicy,
) -> Result<RemoteEvent, Error> {
    let event = find_event(conn, remote_event_id)?;
    if peers::effective_state(conn, &event.origin, policy)? != PeerState::Trusted {
        return Err(InvalidField::new(
            "remote_event_id",
            remote_event_id.to_string(),
            format!(
                "comes from {}, a server that is not trusted here",
                event.origin
            ),
        )
        .into());
    }
    Ok(event)
}

/// Returns the occurrence reference reminders use for an RSVP: a remote series' occurrence by its
/// start, a one-off remote event's only occurrence without one.
fn reminder_ref(event: &RemoteEvent, occurrence: DateTime<Utc>) -> OccurrenceRef {
    OccurrenceRef {
        event_id: event.id,
        recurrence_id: event.rrule.is_some().then_some(occurrence),
        remote: true,
    }
}

/// Checks that `occurrence` names an occurrence of `event` that is not cancelled and lies
/// ahead. Returns the start that names it (the occurrence's own for a series, the event's for
/// a one-off event) and the occurrence's own object id, if its origin sent one.
fn bookable_start(
    conn: &mut AnyConnection,
    event: &RemoteEvent,
    occurrence: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, Option<String>), Error> {
    let remote_event_id = event.id;
    let lookup = if event.rrule.is_some() {
        let Some(start) = occurrence else {
            return Err(InvalidField::new(
                "occurrence",
                "",
                "is required for a recurring event: give the start of one occurrence",
            )
            .into());
        };
        Some(start)
    } else {
        None
    };
    let found = remote_occurrence(conn, remote_event_id, lookup)?.ok_or_else(|| {
        InvalidField::new(
            "occurrence",
            occurrence.map(|o| o.to_rfc3339()).unwrap_or_default(),
            "is not an occurrence of this event",
        )
    })?;
    // A one-off event needs no occurrence; one that is given must be its start.
    if let Some(given) = occurrence
        && lookup.is_none()
        && given != found.start
    {
        return Err(InvalidField::new(
            "occurrence",
            given.to_rfc3339(),
            format!(
                "is not the start of this one-off event, which is {}",
                found.start.to_rfc3339()
            ),
        )
        .into());
    }
    if found.cancelled {
        return Err(InvalidField::new(
            "occurrence",
            found.start.to_rfc3339(),
            "is cancelled by its organizer",
        )
        .into());
    }
    if found.start <= now {
        return Err(InvalidField::new(
            "occurrence",
            found.start.to_rfc3339(),
            "has already started",
        )
        .into());
    }
    Ok((lookup.unwrap_or(found.start), found.object_id))
}

/// Records person `person`'s RSVP to an occurrence of remote event `remote_event_id` and
/// publishes the `Join` to `inbox`, the organizer's inbox. `occurrence` is the occurrence's
/// start; a one-off event needs none. Joining again while an RSVP is open changes nothing.
/// Joins the caller's transaction.
pub fn join(
    conn: &mut AnyConnection,
    public_url: &str,
    person: &str,
    remote_event_id: i64,
    occurrence: Option<DateTime<Utc>>,
    inbox: &str,
    now: DateTime<Utc>,
) -> Result<OutgoingRsvp, Error> {
    actors::check_person_id(person)?;
    write_transaction(conn, |conn| {
        let event = find_event(conn, remote_event_id)?;
        if event.status == "cancelled" {
            return Err(InvalidField::new(
                "remote_event_id",
                remote_event_id.to_string(),
                "names an event its organizer cancelled",
            )
            .into());
        }
        let (start, occurrence_object) = bookable_start(conn, &event, occurrence, now)?;
        let existing: Option<Row> = outgoing_rsvps::table
            .filter(outgoing_rsvps::person.eq(person))
            .filter(outgoing_rsvps::remote_event_id.eq(remote_event_id))
            .filter(outgoing_rsvps::occurrence_start.eq(start.naive_utc()))
            .first(conn)
            .optional()?;
        if let Some(row) = existing.as_ref().filter(|row| row.is_open()) {
            return Ok(row.clone().shown());
        }
        actors::ensure_person(conn, person)?;
        let version = existing.as_ref().map_or(1, |row| row.version + 1);
        // A series' occurrence is joined by its own object when the origin published one
        // (and by the series with rose:recurrenceId in any case).
        let object = occurrence_object.unwrap_or_else(|| event.object_id.clone());
        let actor = actors::person_id(public_url, person);
        let join_id = format!(
            "{actor}/rsvps/{remote_event_id}-{}-{version}",
            start.format("%Y%m%dT%H%M%SZ")
        );
        let id = match &existing {
            Some(row) => {
                diesel::update(outgoing_rsvps::table.find(row.id))
                    .set((
                        outgoing_rsvps::join_activity_id.eq(&join_id),
                        outgoing_rsvps::object_id.eq(&object),
                        outgoing_rsvps::inbox.eq(inbox),
                        outgoing_rsvps::version.eq(version),
                        outgoing_rsvps::state.eq("requested"),
                        outgoing_rsvps::reason.eq(None::<String>),
                        outgoing_rsvps::updated_at.eq(now.naive_utc()),
                    ))
                    .execute(conn)?;
                row.id
            }
            None => diesel::insert_into(outgoing_rsvps::table)
                .values((
                    outgoing_rsvps::person.eq(person),
                    outgoing_rsvps::remote_event_id.eq(remote_event_id),
                    outgoing_rsvps::occurrence_start.eq(start.naive_utc()),
                    outgoing_rsvps::object_id.eq(&object),
                    outgoing_rsvps::inbox.eq(inbox),
                    outgoing_rsvps::join_activity_id.eq(&join_id),
                    outgoing_rsvps::version.eq(version),
                    outgoing_rsvps::state.eq("requested"),
                    outgoing_rsvps::created_at.eq(now.naive_utc()),
                    outgoing_rsvps::updated_at.eq(now.naive_utc()),
                ))
                .returning(outgoing_rsvps::id)
                .get_result(conn)?,
        };
        let mut activity = json!({
            "@context": [
                "https://www.w3.org/ns/activitystreams",
                {"rose": "https://rose-ash.org/ns/events#"}
            ],
            "id": join_id,
            "type": "Join",
            "actor": actor,
            "object": object,
            "to": [event.actor_id],
            "published": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        });
        if event.rrule.is_some() {
            activity["rose:recurrenceId"] =
                Value::String(start.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
        outbox::publish(conn, &activity, &[inbox.to_owned()])?;
        tracing::info!(person, event = %event.object_id, "RSVP sent to a remote event");
        let row: Row = outgoing_rsvps::table.find(id).first(conn)?;
        Ok(row.shown())
    })
}

/// Withdraws RSVP `id` of `person`: publishes a `Leave` and removes the reminders. Returns
/// `None` when the person has no such RSVP. Joins the caller's transaction.
pub fn leave(
    conn: &mut AnyConnection,
    public_url: &str,
    person: &str,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<OutgoingRsvp>, Error> {
    write_transaction(conn, |conn| {
        let row: Option<Row> = outgoing_rsvps::table
            .find(id)
            .filter(outgoing_rsvps::person.eq(person))
            .first(conn)
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        if row.state == "left" {
            return Ok(Some(row.shown()));
        }
        diesel::update(outgoing_rsvps::table.find(row.id))
            .set((
                outgoing_rsvps::state.eq("left"),
                outgoing_rsvps::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        let event: Option<RemoteEvent> = remote_events::table
            .find(row.remote_event_id)
            .first(conn)
            .optional()?;
        if let Some(event) = &event {
            let occurrence = reminder_ref(event, row.occurrence_start.and_utc());
            reminders::cancel(conn, occurrence, person)?;
            let actor = actors::person_id(public_url, person);
            let mut activity = json!({
                "@context": [
                    "https://www.w3.org/ns/activitystreams",
                    {"rose": "https://rose-ash.org/ns/events#"}
                ],
                "id": format!("{}/leave", row.join_activity_id),
                "type": "Leave",
                "actor": actor,
                "object": row.object_id,
                "to": [event.actor_id],
                "published": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            });
            // Like the Join, the Leave names a series' occurrence by its recurrence id.
            if event.rrule.is_some() {
                activity["rose:recurrenceId"] = Value::String(
                    row.occurrence_start
                        .and_utc()
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                );
            }
            outbox::publish(conn, &activity, std::slice::from_ref(&row.inbox))?;
        }
        let row: Row = outgoing_rsvps::table.find(row.id).first(conn)?;
        Ok(Some(row.shown()))
    })
}

/// Marks `cancelled` the open RSVPs to remote event `remote_event_id` whose occurrence its
/// origin cancelled, removed or deleted, and returns how many. Their reminders are removed by
/// [`reminders::remote_event_changed`]. Joins the caller's transaction.
pub fn remote_event_changed(
    conn: &mut AnyConnection,
    remote_event_id: i64,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let open: Vec<Row> = outgoing_rsvps::table
        .filter(outgoing_rsvps::remote_event_id.eq(remote_event_id))
        .filter(outgoing_rsvps::state.eq_any(["requested", "accepted", "waitlisted"]))
        .load(conn)?;
    let event: Option<RemoteEvent> = remote_events::table
        .find(remote_event_id)
        .first(conn)
        .optional()?;
    let mut cancelled = 0;
    for row in open {
        let occurrence_gone = match &event {
            Some(event) => {
                let lookup = event
                    .rrule
                    .is_some()
                    .then(|| row.occurrence_start.and_utc());
                remote_occurrence(conn, remote_event_id, lookup)?.is_none_or(|o| o.cancelled)
            }
            None => true,
        };
        if occurrence_gone {
            diesel::update(outgoing_rsvps::table.find(row.id))
                .set((
                    outgoing_rsvps::state.eq("cancelled"),
                    outgoing_rsvps::reason
                        .eq("The organizer cancelled or removed this occurrence."),
                    outgoing_rsvps::updated_at.eq(now.naive_utc()),
                ))
                .execute(conn)?;
            cancelled += 1;
        }
    }
    Ok(cancelled)
}

/// Lists `person`'s RSVPs to remote events, newest first.
pub fn list(conn: &mut AnyConnection, person: &str) -> Result<Vec<OutgoingRsvp>, Error> {
    let rows: Vec<Row> = outgoing_rsvps::table
        .filter(outgoing_rsvps::person.eq(person))
        .order(outgoing_rsvps::id.desc())
        .load(conn)?;
    Ok(rows.into_iter().map(Row::shown).collect())
}

/// Returns whether `activity` (an Accept, TentativeAccept or Reject) responds to one of our
/// people's `Join`s.
pub fn answers_our_join(conn: &mut AnyConnection, activity: &Value) -> Result<bool, Error> {
    let Some(object_id) = activity.get("object").and_then(id_of) else {
        return Ok(false);
    };
    let count: i64 = outgoing_rsvps::table
        .filter(outgoing_rsvps::join_activity_id.eq(object_id))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// Records the organizer's response to one of our `Join`s and returns what happened. Only
/// the event's organizer (its attributed actor, or another actor of its origin) may respond.
pub fn receive_answer(
    conn: &mut AnyConnection,
    sender: &str,
    activity: &Value,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let Some(join_id) = activity.get("object").and_then(id_of) else {
        return Ok("ignored: response without an object".to_owned());
    };
    let row: Option<Row> = outgoing_rsvps::table
        .filter(outgoing_rsvps::join_activity_id.eq(join_id))
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok("ignored: not a response to a current RSVP of ours".to_owned());
    };
    let event: RemoteEvent = remote_events::table.find(row.remote_event_id).first(conn)?;
    let from_origin = super::super::domain_of(sender).as_deref() == Some(event.origin.as_str());
    if sender != event.actor_id && !from_origin {
        return Ok(format!(
            "ignored: {sender} is not the organizer of {}",
            event.object_id
        ));
    }
    if row.state == "left" {
        return Ok("ignored: the person already left".to_owned());
    }
    // A late response about an occurrence the organizer has since cancelled, removed or deleted
    // changes nothing: there is nothing left to attend or to be reminded of.
    let lookup = event
        .rrule
        .is_some()
        .then(|| row.occurrence_start.and_utc());
    let live = remote_occurrence(conn, event.id, lookup)?.is_some_and(|o| !o.cancelled);
    if row.state == "cancelled" || !live {
        return Ok(format!(
            "ignored: the organizer cancelled or removed that occurrence of {}",
            event.object_id
        ));
    }
    let text = ["content", "summary"]
        .iter()
        .find_map(|name| activity.get(*name).and_then(Value::as_str))
        .map(clean_reason)
        .filter(|t| !t.is_empty());
    let kind = type_of(activity).unwrap_or_default();
    let waitlisted = activity
        .get("rose:waitlisted")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let state = match kind {
        "Accept" => "accepted",
        "TentativeAccept" if waitlisted => "waitlisted",
        "TentativeAccept" => "tentative",
        "Reject" => "refused",
        _ => return Ok(format!("ignored: {kind} is not a response to a Join")),
    };
    diesel::update(outgoing_rsvps::table.find(row.id))
        .set((
            outgoing_rsvps::state.eq(state),
            outgoing_rsvps::reason.eq(if state == "accepted" {
                None
            } else {
                text.clone()
            }),
            outgoing_rsvps::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    let occurrence = reminder_ref(&event, row.occurrence_start.and_utc());
    if state == "accepted" {
        reminders::schedule(conn, occurrence, &row.person, now)?;
    } else {
        reminders::cancel(conn, occurrence, &row.person)?;
    }
    tracing::info!(person = %row.person, event = %event.object_id, state, "organizer responded to an RSVP");
    Ok(match text {
        Some(reason) if state != "accepted" => {
            format!("RSVP of {} is {state}: {reason}", row.person)
        }
        _ => format!("RSVP of {} is {state}", row.person),
    })
}
