//! Remote people's RSVPs to our occurrences.
//!
//! Every function here runs inside the inbox's transaction (or the booking's, for
//! [`booking_started`] and [`booking_ended`]), so the seat, the stored RSVP and the outgoing
//! `Accept` or `Reject` commit together or not at all.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use serde_json::{Value, json};

use super::{attendee_for, short_hash};
use crate::booking::apply::{Answer, apply};
use crate::booking::{BookRequest, Booking, Command, OccurrenceKey, Outcome, Reason, Verdict};
use crate::calendar::event::EventStatus;
use crate::calendar::occurrence::not_ended;
use crate::calendar::store::{self, StoredEvent};
use crate::calendar::time::TimeBasis;
use crate::db::AnyConnection;
use crate::db::schema::incoming_rsvps;
use crate::federation::incoming::{id_of, type_of};
use crate::federation::{Error, actors, outbox};

/// A remote person's intent for an occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// `Join`, or `Accept` of the `Event`: requests a seat.
    Going,
    /// `TentativeAccept` of the `Event`: kept, takes no seat.
    Maybe,
    /// `Leave`, `Undo` of the `Join`, or `Reject` of the `Event`: gives the seat up.
    NotGoing,
}

/// The remote person who sent the RSVP.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    /// Actor id.
    pub actor_id: &'a str,
    /// Inbox for our reply.
    pub inbox: &'a str,
}

/// One of our occurrences, as an RSVP names it.
#[derive(Clone, Debug)]
pub struct LocalOccurrence {
    /// Bookings' address of it.
    key: OccurrenceKey,
    /// The calendar actor, which sends the reply.
    calendar_actor: String,
    title: String,
    start: DateTime<Utc>,
    zone: Tz,
}

/// The occurrence an RSVP's object names, if any.
#[derive(Clone, Debug)]
pub enum Target {
    /// Not one of our events: the activity is something else (a reply to our own Join or
    /// Follow, say).
    NotOurs,
    /// One of our event URLs with no occurrence to book, for the reason given.
    Missing {
        /// Our actor that sends the reply: the instance.
        replier: String,
        /// The object id as sent.
        object_id: String,
        /// Why.
        reason: String,
    },
    /// One of our occurrences.
    Found(LocalOccurrence),
}

/// Finds which of our occurrences an RSVP activity names. The object is the `Event` (its id,
/// or the object itself), or an `Invite` of it. Our ids are `/events/{id}` for a one-off
/// event or a series and `/events/{id}/occurrences/{YYYYMMDDTHHMMSSZ}` for one occurrence.
/// A series named without an occurrence means the occurrence given by the activity's
/// `rose:recurrenceId`, or else its next one that has not ended, which is the one its object
/// shows.
pub fn resolve(
    conn: &mut AnyConnection,
    public_url: &str,
    activity: &Value,
    now: DateTime<Utc>,
) -> Result<Target, Error> {
    let mut object = activity.get("object");
    if object.and_then(type_of) == Some("Invite") {
        object = object.and_then(|invite| invite.get("object"));
    }
    let Some(object_id) = object.and_then(id_of).map(str::to_owned) else {
        return Ok(Target::NotOurs);
    };

    let prefix = format!("{public_url}/events/");
    let Some(path) = object_id.strip_prefix(&prefix) else {
        return Ok(Target::NotOurs);
    };
    let missing = |reason: String| Target::Missing {
        replier: actors::instance_id(public_url),
        object_id: object_id.clone(),
        reason,
    };

    let (id_text, occurrence_text) = match path.split_once("/occurrences/") {
        Some((id, occurrence)) => (id, Some(occurrence)),
        None => (path, None),
    };

    let Ok(event_id) = id_text.parse::<i64>() else {
        return Ok(missing(format!(
            "{object_id} is not an event of this server"
        )));
    };
    let Some(stored) = store::find_event(conn, event_id)? else {
        return Ok(missing(format!("event {object_id} does not exist")));
    };
    let Some(calendar) = store::find_calendar_by_id(conn, stored.calendar_id)? else {
        return Ok(missing(format!("event {object_id} does not exist")));
    };

    let named = match occurrence_text {
        Some(text) => match NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ") {
            Ok(rid) => Some(rid.and_utc()),
            Err(_) => return Ok(missing(format!("{object_id} names no occurrence"))),
        },
        // An unreadable rose:recurrenceId names no occurrence: falling back to the next one
        // would book (or give up) a seat the person did not name.
        None => match activity.get("rose:recurrenceId") {
            None | Some(Value::Null) => None,
            Some(value) => {
                match value
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                {
                    Some(rid) => Some(rid.to_utc()),
                    None => {
                        return Ok(missing(format!(
                            "rose:recurrenceId {value} of {object_id} is not an RFC 3339 time"
                        )));
                    }
                }
            }
        },
    };
    let recurring =
        stored.event.schedule.rrule.is_some() || !stored.event.schedule.rdates.is_empty();
    let found = if recurring {
        match named {
            Some(rid) => find_by_recurrence_id(&stored, rid),
            None => next_occurrence(&stored, now),
        }
    } else {
        next_occurrence(&stored, DateTime::<Utc>::MIN_UTC)
    };
    let Some((rid, start, title)) = found else {
        return Ok(missing(format!(
            "event {object_id} has no such occurrence, or none ahead"
        )));
    };

    let zone = match stored.event.schedule.basis {
        TimeBasis::Zoned(zone) => zone,
        _ => calendar.default_zone,
    };
    Ok(Target::Found(LocalOccurrence {
        key: OccurrenceKey {
            event_id,
            recurrence_id: rid,
        },
        calendar_actor: actors::calendar_id(public_url, &calendar.slug),
        title,
        start,
        zone,
    }))
}

/// (recurrence id, start, title) of the occurrence with recurrence id `rid`.
fn find_by_recurrence_id(
    stored: &StoredEvent,
    rid: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>, String)> {
    let found = crate::notify::reminders::find_occurrence(&stored.event, Some(rid)).ok()??;
    Some((rid, found.start, found.details.title))
}

/// (recurrence id, start, title) of the first occurrence not ended by `now` and not cancelled.
fn next_occurrence(
    stored: &StoredEvent,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>, String)> {
    let found = not_ended(&stored.event, now, DateTime::<Utc>::MAX_UTC, 64).ok()?;
    found
        .into_iter()
        .find(|o| o.details.status != EventStatus::Cancelled)
        .map(|o| (o.recurrence_id.unwrap_or(o.start), o.start, o.details.title))
}

#[derive(Queryable, Clone, Debug)]
struct Row {
    id: i64,
    event_id: i64,
    recurrence_id: NaiveDateTime,
    actor_id: String,
    attendee: String,
    inbox: String,
    calendar_actor: String,
    _activity_id: String,
    activity_json: String,
    state: String,
    booking_id: Option<i64>,
    _reason: Option<String>,
    answers: i32,
    _created_at: NaiveDateTime,
    _updated_at: NaiveDateTime,
}

impl Row {
    fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "booked" | "waitlisted")
    }
}

fn find_row(
    conn: &mut AnyConnection,
    key: OccurrenceKey,
    actor_id: &str,
) -> Result<Option<Row>, Error> {
    Ok(incoming_rsvps::table
        .filter(incoming_rsvps::event_id.eq(key.event_id))
        .filter(incoming_rsvps::recurrence_id.eq(key.recurrence_id.naive_utc()))
        .filter(incoming_rsvps::actor_id.eq(actor_id))
        .first(conn)
        .optional()?)
}

/// Acts on an RSVP of `sender` for one of our occurrences and returns what happened.
pub fn receive(
    conn: &mut AnyConnection,
    sender: Sender<'_>,
    activity: &Value,
    intent: Intent,
    target: Target,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let occurrence = match target {
        Target::NotOurs => return Ok("ignored: not one of our events".to_owned()),
        Target::Missing {
            replier,
            object_id,
            reason,
        } => {
            if intent == Intent::Going {
                reject_unknown(conn, sender, activity, &replier, &object_id, &reason)?;
            }
            return Ok(format!("refused: {reason}"));
        }
        Target::Found(occurrence) => occurrence,
    };
    match intent {
        Intent::Going => going(conn, sender, activity, &occurrence, now),
        Intent::Maybe => maybe(conn, sender, activity, &occurrence, now),
        Intent::NotGoing => not_going(conn, sender, &occurrence, now),
    }
}

/// Gives up the seat of the RSVP whose `Join` had id `join_id`, for an `Undo` of it. `None`
/// when this actor sent no RSVP with that id.
pub fn undo_join(
    conn: &mut AnyConnection,
    actor_id: &str,
    join_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, Error> {
    let row: Option<Row> = incoming_rsvps::table
        .filter(incoming_rsvps::actor_id.eq(actor_id))
        .filter(incoming_rsvps::activity_id.eq(join_id))
        .first(conn)
        .optional()?;
    row.map(|row| give_up(conn, &row, now)).transpose()
}

fn going(
    conn: &mut AnyConnection,
    sender: Sender<'_>,
    activity: &Value,
    occurrence: &LocalOccurrence,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let existing = find_row(conn, occurrence.key, sender.actor_id)?;
    if let Some(row) = existing.as_ref().filter(|row| row.is_live()) {
        // A repeated Join gets the same reply again and takes no second seat.
        let row = record(
            conn,
            Some(row),
            sender,
            activity,
            occurrence,
            &row.state.clone(),
            row.booking_id,
            None,
            now,
        )?;
        let (kind, content) = if row.state == "booked" {
            ("Accept", None)
        } else {
            ("TentativeAccept", Some(waitlisted_text(occurrence)))
        };
        send_reply(conn, &row, kind, content.as_deref(), now)?;
        return Ok(format!("{} is already {}", row.attendee, row.state));
    }
    let attendee = attendee_for(conn, sender.actor_id)?;
    let command = Command::Book(BookRequest {
        attendee: attendee.clone(),
        seats: 1,
        hold_seconds: None,
        waitlist: true,
        idempotency: None,
    });
    let result = apply(conn, occurrence.key, &[command], now)?
        .into_iter()
        .next()
        .unwrap_or(Err(crate::booking::Error::Corrupt(
            "the booking function returned no result".to_owned(),
        )));
    let (state, booking_id, kind, content) = match result {
        Ok(Answer::Decided(outcome)) => decide(&outcome, occurrence),
        Ok(Answer::Replayed(_)) => {
            return Err(crate::booking::Error::Corrupt(
                "a request without an idempotency key was replayed".to_owned(),
            )
            .into());
        }
        Err(
            error @ (crate::booking::Error::EventNotFound(_)
            | crate::booking::Error::OccurrenceNotFound { .. }),
        ) => ("refused", None, "Reject", Some(error.to_string())),
        Err(other) => return Err(other.into()),
    };
    let reason = (state == "refused").then(|| content.clone().unwrap_or_default());
    let row = record(
        conn,
        existing.as_ref(),
        sender,
        activity,
        occurrence,
        state,
        booking_id,
        reason.as_deref(),
        now,
    )?;
    send_reply(conn, &row, kind, content.as_deref(), now)?;
    tracing::info!(attendee = %attendee, state, event = occurrence.key.event_id, "remote RSVP decided");
    Ok(match reason {
        Some(reason) => format!("refused {attendee}: {reason}"),
        None => format!("{attendee} is {state}"),
    })
}

/// Maps the booking function's outcome to (stored state, booking, reply type, reply text).
fn decide(
    outcome: &Outcome,
    occurrence: &LocalOccurrence,
) -> (&'static str, Option<i64>, &'static str, Option<String>) {
    let booking_id = outcome.booking.as_ref().map(|b| b.id);
    match outcome.verdict {
        Verdict::Booked | Verdict::Held => ("booked", booking_id, "Accept", None),
        Verdict::Waitlisted => (
            "waitlisted",
            booking_id,
            "TentativeAccept",
            Some(waitlisted_text(occurrence)),
        ),
        Verdict::Full | Verdict::Conflict | Verdict::Rejected | Verdict::Cancelled => {
            let reason = outcome.reasons.first().copied();
            (
                "refused",
                None,
                "Reject",
                Some(rejection_reason(reason, outcome, occurrence)),
            )
        }
    }
}

fn when(occurrence: &LocalOccurrence) -> String {
    crate::notify::messages::local_time(occurrence.start, occurrence.zone)
}

fn waitlisted_text(occurrence: &LocalOccurrence) -> String {
    format!(
        "{} on {} is full. You are on its waitlist and get a seat, with an Accept, when one \
         opens up.",
        occurrence.title,
        when(occurrence)
    )
}

fn rejection_reason(
    reason: Option<Reason>,
    outcome: &Outcome,
    occurrence: &LocalOccurrence,
) -> String {
    let named = format!("{} on {}", occurrence.title, when(occurrence));
    match reason {
        Some(Reason::CapacityReached) => match outcome.seats.capacity {
            Some(capacity) => {
                format!(
                    "{named} is full ({capacity} of {capacity} seats taken) and has no waitlist."
                )
            }
            None => format!("{named} is full."),
        },
        Some(Reason::OccurrenceCancelled) => format!("{named} is cancelled."),
        Some(Reason::BookingNotOpen) => format!("Bookings for {named} are not open yet."),
        Some(Reason::BookingClosed) => format!("Bookings for {named} have closed."),
        Some(Reason::AlreadyBooked) => format!("You already have a seat at {named}."),
        Some(Reason::OverlapsBooking | Reason::OverlapsBusyBlock) => {
            format!("{named} overlaps another of your bookings here.")
        }
        Some(other) => format!("{named} cannot be booked: {}.", other.as_str()),
        None => format!("{named} cannot be booked."),
    }
}

fn maybe(
    conn: &mut AnyConnection,
    sender: Sender<'_>,
    activity: &Value,
    occurrence: &LocalOccurrence,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let existing = find_row(conn, occurrence.key, sender.actor_id)?;
    if let Some(row) = existing.as_ref().filter(|row| row.is_live()) {
        // Moving from going to maybe gives the seat back.
        give_up(conn, row, now)?;
    }
    let existing = find_row(conn, occurrence.key, sender.actor_id)?;
    let row = record(
        conn,
        existing.as_ref(),
        sender,
        activity,
        occurrence,
        "tentative",
        None,
        None,
        now,
    )?;
    Ok(format!("{} might come; no seat taken", row.attendee))
}

fn not_going(
    conn: &mut AnyConnection,
    sender: Sender<'_>,
    occurrence: &LocalOccurrence,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    if let Some(row) = find_row(conn, occurrence.key, sender.actor_id)? {
        return give_up(conn, &row, now);
    }
    // A Leave of a series that names no occurrence means the person's one open RSVP to it.
    let open: Vec<Row> = incoming_rsvps::table
        .filter(incoming_rsvps::event_id.eq(occurrence.key.event_id))
        .filter(incoming_rsvps::actor_id.eq(sender.actor_id))
        .filter(incoming_rsvps::state.eq_any(["booked", "waitlisted"]))
        .load(conn)?;
    match open.as_slice() {
        [only] => give_up(conn, only, now),
        [] => Ok("ignored: this actor has no RSVP for that occurrence".to_owned()),
        _ => Ok(
            "ignored: this actor has several RSVPs to the series; the Leave names none of them"
                .to_owned(),
        ),
    }
}

/// Marks the RSVP left and cancels its booking. The row changes first, so that
/// [`booking_ended`] finds a person who left, not a booking the organizer cancelled.
fn give_up(conn: &mut AnyConnection, row: &Row, now: DateTime<Utc>) -> Result<String, Error> {
    if !row.is_live() {
        set_state(conn, row.id, "left", None, now)?;
        return Ok(format!("{} had no seat to give up", row.attendee));
    }
    set_state(conn, row.id, "left", None, now)?;
    if let Some(booking_id) = row.booking_id {
        let key = OccurrenceKey {
            event_id: row.event_id,
            recurrence_id: row.recurrence_id.and_utc(),
        };
        let results = apply(conn, key, &[Command::Cancel { booking_id }], now)?;
        for result in results {
            match result {
                Ok(_) | Err(crate::booking::Error::BookingNotFound(_)) => {}
                Err(other) => return Err(other.into()),
            }
        }
    }
    Ok(format!("{} gave up their seat", row.attendee))
}

fn set_state(
    conn: &mut AnyConnection,
    id: i64,
    state: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    diesel::update(incoming_rsvps::table.find(id))
        .set((
            incoming_rsvps::state.eq(state),
            incoming_rsvps::reason.eq(reason),
            incoming_rsvps::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Inserts or updates the RSVP row of `sender` for `occurrence` and returns it.
#[expect(
    clippy::too_many_arguments,
    reason = "one row's columns, named at the call site"
)]
fn record(
    conn: &mut AnyConnection,
    existing: Option<&Row>,
    sender: Sender<'_>,
    activity: &Value,
    occurrence: &LocalOccurrence,
    state: &str,
    booking_id: Option<i64>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Row, Error> {
    let activity_id = id_of(activity).unwrap_or_default().to_owned();
    let activity_json = replied_activity(activity).to_string();
    let id = if let Some(row) = existing {
        diesel::update(incoming_rsvps::table.find(row.id))
            .set((
                incoming_rsvps::inbox.eq(sender.inbox),
                incoming_rsvps::activity_id.eq(&activity_id),
                incoming_rsvps::activity_json.eq(&activity_json),
                incoming_rsvps::state.eq(state),
                incoming_rsvps::booking_id.eq(booking_id),
                incoming_rsvps::reason.eq(reason),
                incoming_rsvps::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        row.id
    } else {
        let attendee = attendee_for(conn, sender.actor_id)?;
        diesel::insert_into(incoming_rsvps::table)
            .values((
                incoming_rsvps::event_id.eq(occurrence.key.event_id),
                incoming_rsvps::recurrence_id.eq(occurrence.key.recurrence_id.naive_utc()),
                incoming_rsvps::actor_id.eq(sender.actor_id),
                incoming_rsvps::attendee.eq(&attendee),
                incoming_rsvps::inbox.eq(sender.inbox),
                incoming_rsvps::calendar_actor.eq(&occurrence.calendar_actor),
                incoming_rsvps::activity_id.eq(&activity_id),
                incoming_rsvps::activity_json.eq(&activity_json),
                incoming_rsvps::state.eq(state),
                incoming_rsvps::booking_id.eq(booking_id),
                incoming_rsvps::reason.eq(reason),
                incoming_rsvps::answers.eq(0),
                incoming_rsvps::created_at.eq(now.naive_utc()),
                incoming_rsvps::updated_at.eq(now.naive_utc()),
            ))
            .returning(incoming_rsvps::id)
            .get_result(conn)?
    };
    Ok(incoming_rsvps::table.find(id).first(conn)?)
}

/// Returns the part of a received activity that a reply repeats as its object: id, type,
/// actor and the object's id. Nothing else of it, and nothing of other attendees, goes out.
fn replied_activity(activity: &Value) -> Value {
    let object = activity
        .get("object")
        .and_then(id_of)
        .map_or(Value::Null, |id| Value::String(id.to_owned()));
    json!({
        "id": id_of(activity),
        "type": type_of(activity),
        "actor": activity.get("actor").and_then(id_of),
        "object": object,
    })
}

/// Sends `kind` (Accept, TentativeAccept or Reject) of the row's activity to its person
/// alone, through the outbox.
fn send_reply(
    conn: &mut AnyConnection,
    row: &Row,
    kind: &str,
    content: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let number = row.answers + 1;
    diesel::update(incoming_rsvps::table.find(row.id))
        .set(incoming_rsvps::answers.eq(number))
        .execute(conn)?;
    let object: Value = serde_json::from_str(&row.activity_json).unwrap_or(Value::Null);
    let mut activity = json!({
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            {"rose": "https://rose-ash.org/ns/events#"}
        ],
        "id": format!("{}/rsvps/{}/answers/{number}", row.calendar_actor, row.id),
        "type": kind,
        "actor": row.calendar_actor,
        "to": [row.actor_id],
        "object": object,
        "published": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    if let Some(content) = content {
        activity["content"] = Value::String(content.to_owned());
        activity["summary"] = Value::String(content.to_owned());
    }
    if row.state == "waitlisted" && kind == "TentativeAccept" {
        activity["rose:waitlisted"] = Value::Bool(true);
    }
    outbox::publish(conn, &activity, std::slice::from_ref(&row.inbox))?;
    Ok(())
}

/// Answers a `Join` of something of ours that does not exist (or has no occurrence ahead)
/// with a `Reject` from the instance actor.
fn reject_unknown(
    conn: &mut AnyConnection,
    sender: Sender<'_>,
    activity: &Value,
    replier: &str,
    object_id: &str,
    reason: &str,
) -> Result<(), Error> {
    let Some(join_id) = id_of(activity) else {
        return Ok(());
    };
    let reply = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{replier}#reject-{}", short_hash(join_id)),
        "type": "Reject",
        "actor": replier,
        "to": [sender.actor_id],
        "object": {"id": join_id, "type": type_of(activity), "actor": sender.actor_id, "object": object_id},
        "content": reason,
        "summary": reason,
    });
    outbox::publish(conn, &reply, &[sender.inbox.to_owned()])?;
    Ok(())
}

/// Called by the booking transaction when a remote person's booking starts taking seats.
/// A waitlisted RSVP that a cancellation promoted gets its `Accept` now.
pub fn booking_started(
    conn: &mut AnyConnection,
    booking: &Booking,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let row: Option<Row> = incoming_rsvps::table
        .filter(incoming_rsvps::booking_id.eq(booking.id))
        .filter(incoming_rsvps::state.eq("waitlisted"))
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(());
    };
    set_state(conn, row.id, "booked", None, now)?;
    let row = Row {
        state: "booked".to_owned(),
        ..row
    };
    send_reply(
        conn,
        &row,
        "Accept",
        Some("A seat opened up: you are booked."),
        now,
    )?;
    tracing::info!(attendee = %row.attendee, booking = booking.id, "waitlisted remote RSVP promoted");
    Ok(())
}

/// Called by the booking transaction when a remote person's booking stops taking seats.
/// When the person did not leave themselves, the organizer cancelled it, and the person gets
/// a `Reject`.
pub fn booking_ended(
    conn: &mut AnyConnection,
    booking: &Booking,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let row: Option<Row> = incoming_rsvps::table
        .filter(incoming_rsvps::booking_id.eq(booking.id))
        .filter(incoming_rsvps::state.eq_any(["booked", "waitlisted"]))
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(());
    };
    let reason = "The organizer cancelled your booking.";
    set_state(conn, row.id, "refused", Some(reason), now)?;
    let row = Row {
        state: "refused".to_owned(),
        ..row
    };
    send_reply(conn, &row, "Reject", Some(reason), now)?;
    Ok(())
}
