//! RSVPs across servers.
//!
//! - [`incoming`]: a remote person RSVPs to one of our occurrences. A `Join` (or an `Accept` of
//!   the `Event`) asks [`crate::booking::apply::apply`] for a seat, the same function and lock
//!   as local bookings, and the calendar replies `Accept`, `TentativeAccept` (waitlisted) or
//!   `Reject` with the reason. A `TentativeAccept` of the `Event` is kept without a seat, and a
//!   `Leave` (or an `Undo` of the `Join`, or a `Reject` of the `Event`) gives the seat up.
//! - [`outgoing`]: one of our people joins a remote event's occurrence. The `Join` is tracked
//!   until the organizer responds, and an accepted one gets the person's reminders.
//!
//! Remote people book under an attendee id of their own, `ap:` followed by their name and
//! server, which no local booking may use. Replies go to the person alone, and attendee
//! lists are never sent to anyone.

pub mod incoming;
pub mod outgoing;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest as _, Sha256};

use super::Error;
use crate::db::AnyConnection;
use crate::db::schema::{incoming_rsvps, remote_events, remote_occurrences};

/// Prefix of the attendee ids of remote people.
pub const REMOTE_ATTENDEE_PREFIX: &str = "ap:";
/// Maximum length of a reason kept from a peer's response, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Returns whether `attendee` names a remote person.
pub fn is_remote_attendee(attendee: &str) -> bool {
    attendee.starts_with(REMOTE_ATTENDEE_PREFIX)
}

/// Returns the attendee id of remote actor `actor_id`: `ap:name@host`, where the name is the
/// last segment of the actor's path. When that name does not fit the attendee id rules, or
/// another actor of the same host already has it, a name derived from a hash of the actor id
/// is used instead.
pub fn attendee_for(conn: &mut AnyConnection, actor_id: &str) -> Result<String, Error> {
    let known: Option<String> = incoming_rsvps::table
        .filter(incoming_rsvps::actor_id.eq(actor_id))
        .select(incoming_rsvps::attendee)
        .first(conn)
        .optional()?;
    if let Some(known) = known {
        return Ok(known);
    }
    let host = super::domain_of(actor_id).unwrap_or_default();
    let name = url::Url::parse(actor_id)
        .ok()
        .and_then(|url| {
            url.path_segments()
                .and_then(|mut segments| segments.rfind(|s| !s.is_empty()).map(str::to_owned))
        })
        .unwrap_or_default();
    let readable = format!("{REMOTE_ATTENDEE_PREFIX}{name}@{host}");
    if !name.is_empty() && crate::booking::check_attendee(&readable).is_ok() {
        let in_use: i64 = incoming_rsvps::table
            .filter(incoming_rsvps::attendee.eq(&readable))
            .filter(incoming_rsvps::actor_id.ne(actor_id))
            .count()
            .get_result(conn)?;
        if in_use == 0 {
            return Ok(readable);
        }
    }
    let short = short_hash(actor_id);
    let host: String = host.chars().take(150).collect();
    Ok(format!("{REMOTE_ATTENDEE_PREFIX}{short}@{host}"))
}

/// Returns the first 16 hex digits of the SHA-256 of `text`, a short and stable name for a
/// long id.
pub(crate) fn short_hash(text: &str) -> String {
    super::hex(&Sha256::digest(text.as_bytes())[..8])
}

/// One occurrence of a remote event, as reminders and listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOccurrence {
    /// The remote event's title.
    pub title: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Place on one line.
    pub location: Option<String>,
    /// The organizer's page for it, else its object id.
    pub url: String,
    /// Whether the organizer cancelled it (or the whole event).
    pub cancelled: bool,
    /// The occurrence's own object id, when its origin published one.
    pub object_id: Option<String>,
}

/// Start, end, status and object id of a stored remote occurrence.
type OccurrenceRow = (NaiveDateTime, NaiveDateTime, Option<String>, Option<String>);

/// Finds an occurrence of remote event `remote_event_id`: the one starting at
/// `recurrence_id`, or the only one of a one-off event (`None`). A deleted event has none.
pub fn remote_occurrence(
    conn: &mut AnyConnection,
    remote_event_id: i64,
    recurrence_id: Option<DateTime<Utc>>,
) -> Result<Option<RemoteOccurrence>, Error> {
    type EventRow = (String, Option<String>, String, Option<String>, String, bool);
    let event: Option<EventRow> = remote_events::table
        .find(remote_event_id)
        .select((
            remote_events::title,
            remote_events::url,
            remote_events::object_id,
            remote_events::location,
            remote_events::status,
            remote_events::deleted,
        ))
        .first(conn)
        .optional()?;
    let Some((title, url, object_id, location, status, deleted)) = event else {
        return Ok(None);
    };
    if deleted {
        return Ok(None);
    }
    let mut query = remote_occurrences::table
        .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
        .filter(remote_occurrences::deleted.eq(false))
        .select((
            remote_occurrences::start_at,
            remote_occurrences::end_at,
            remote_occurrences::status,
            remote_occurrences::object_id,
        ))
        .order(remote_occurrences::start_at.asc())
        .into_boxed();
    if let Some(rid) = recurrence_id {
        // An occurrence is named by its original start, which stays when the origin moves it.
        // Rows stored before recurrence ids were kept have only their start.
        let rid = rid.naive_utc();
        query = query.filter(
            remote_occurrences::recurrence_id
                .eq(rid)
                .or(remote_occurrences::recurrence_id
                    .is_null()
                    .and(remote_occurrences::start_at.eq(rid))),
        );
    }
    let found: Option<OccurrenceRow> = query.first(conn).optional()?;
    Ok(found.map(
        |(start, end, occurrence_status, occurrence_object)| RemoteOccurrence {
            title,
            start: start.and_utc(),
            end: end.and_utc(),
            location,
            url: url.unwrap_or(object_id),
            cancelled: status == "cancelled" || occurrence_status.as_deref() == Some("cancelled"),
            object_id: occurrence_object,
        },
    ))
}

/// Cleans a reason a peer gave: markup and control characters removed, whitespace folded,
/// at most [`MAX_REASON_CHARS`] characters.
pub fn clean_reason(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() => plain.push(' '),
            c => plain.push(c),
        }
    }
    plain
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_REASON_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lose_markup_and_control_characters() {
        assert_eq!(
            clean_reason("<p>The event is <b>full</b>.</p>\u{7}\nSorry"),
            "The event is full . Sorry"
        );
        assert_eq!(clean_reason(&"x".repeat(900)).chars().count(), 500);
    }

    #[test]
    fn remote_attendees_are_told_apart_by_prefix() {
        assert!(is_remote_attendee("ap:alice@a.example"));
        assert!(!is_remote_attendee("alice@a.example"));
    }
}
