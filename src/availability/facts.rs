//! Loading facts from storage: one person's live bookings, busy blocks and RSVPs to remote
//! events near one window, and the booking settings of the events involved.
//!
//! Queries filter by person and time with the `(attendee, starts_at)` indexes, so a decision
//! reads only the rows near the requested occurrence.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{BusyBlockFact, Facts, MAX_FACTS, OccurrenceFact, Origin, RequestFact};
use crate::calendar::time::Window;
use crate::db::AnyConnection;
use crate::db::schema::{
    booking_settings, bookings, busy_blocks, outgoing_rsvps, peers, remote_events,
    remote_occurrences,
};

/// Maximum buffer an event may ask for, in seconds. Bookings are loaded this far outside a
/// window because a buffer can make them reach into it.
pub const MAX_BUFFER_SECONDS: i64 = 86_400;

/// Errors while loading facts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More facts than one evaluation accepts.
    #[error("{count} facts are more than the {limit} one query may use; narrow the window")]
    TooManyFacts {
        /// Facts found.
        count: usize,
        /// [`MAX_FACTS`].
        limit: usize,
    },
    /// The database failed.
    #[error("loading availability facts failed: {0}")]
    Database(#[from] diesel::result::Error),
}

/// Booking rules of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct EventSettings {
    /// Free time needed before each occurrence, seconds.
    pub buffer_before_seconds: i64,
    /// Free time needed after each occurrence, seconds.
    pub buffer_after_seconds: i64,
    /// Booking opens this many seconds before the start; `None` means it is always open.
    pub opens_before_seconds: Option<i64>,
    /// Booking closes this many seconds before the start (negative: after the start).
    pub closes_before_seconds: i64,
    /// Whether full occurrences take a waitlist.
    pub waitlist: bool,
}

/// A live booking or hold of one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonBooking {
    /// The booking's id.
    pub booking_id: i64,
    /// Its occurrence's capacity row.
    pub capacity_id: i64,
    /// Its event.
    pub event_id: i64,
    /// Occurrence start.
    pub start: DateTime<Utc>,
    /// Occurrence end.
    pub end: DateTime<Utc>,
}

/// A busy block of one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonBlock {
    /// Stored id.
    pub id: i64,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
}

/// An occurrence of a remote event that one person has joined (or asked to join).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonRemote {
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// The peer it comes from.
    pub origin: String,
    /// Whether that peer is trusted now.
    pub trusted: bool,
}

/// One person's calendar as far as a decision needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonFacts {
    /// Live bookings and holds near the window.
    pub bookings: Vec<PersonBooking>,
    /// Busy blocks near the window.
    pub blocks: Vec<PersonBlock>,
    /// Remote occurrences near the window with an RSVP that is requested or accepted.
    pub remote: Vec<PersonRemote>,
}

/// The occurrence a request is about, with its capacity row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The occurrence as the rules see it.
    pub fact: OccurrenceFact,
    /// Its capacity row, so that a booking on it counts as "already booked".
    pub capacity_id: Option<i64>,
}

/// Loads booking settings for `event_ids`; events without a row get the defaults.
pub fn load_settings(
    conn: &mut AnyConnection,
    event_ids: &[i64],
) -> Result<HashMap<i64, EventSettings>, Error> {
    let mut settings = HashMap::new();
    for chunk in event_ids.chunks(500) {
        let rows = booking_settings::table
            .filter(booking_settings::event_id.eq_any(chunk))
            .select((
                booking_settings::event_id,
                booking_settings::buffer_before_seconds,
                booking_settings::buffer_after_seconds,
                booking_settings::opens_before_seconds,
                booking_settings::closes_before_seconds,
                booking_settings::waitlist,
            ))
            .load::<(i64, i64, i64, Option<i64>, i64, bool)>(conn)?;
        for (event_id, before, after, opens, closes, waitlist) in rows {
            settings.insert(
                event_id,
                EventSettings {
                    buffer_before_seconds: before,
                    buffer_after_seconds: after,
                    opens_before_seconds: opens,
                    closes_before_seconds: closes,
                    waitlist,
                },
            );
        }
    }
    Ok(settings)
}

/// Loads the live bookings and busy blocks of `attendees` that can touch `window`.
pub fn load_people(
    conn: &mut AnyConnection,
    attendees: &[&str],
    window: Window,
    now: DateTime<Utc>,
) -> Result<HashMap<String, PersonFacts>, Error> {
    let margin = Duration::seconds(MAX_BUFFER_SECONDS);
    let from = (window.from - margin).naive_utc();
    let to = (window.to + margin).naive_utc();
    let mut people: HashMap<String, PersonFacts> = attendees
        .iter()
        .map(|a| ((*a).to_owned(), PersonFacts::default()))
        .collect();
    let mut count = 0;
    for chunk in attendees.chunks(500) {
        let live = bookings::state.eq("booked").or(bookings::state
            .eq("held")
            .and(bookings::hold_expires_at.gt(now.naive_utc())));
        let rows = bookings::table
            .filter(bookings::attendee.eq_any(chunk))
            .filter(bookings::starts_at.lt(to))
            .filter(bookings::ends_at.gt(from))
            .filter(live)
            .order(bookings::id.asc())
            .select((
                bookings::attendee,
                bookings::id,
                bookings::capacity_id,
                bookings::event_id,
                bookings::starts_at,
                bookings::ends_at,
            ))
            .limit(MAX_FACTS as i64 + 1)
            .load::<(String, i64, i64, i64, NaiveDateTime, NaiveDateTime)>(conn)?;
        count += rows.len();
        for (attendee, booking_id, capacity_id, event_id, start, end) in rows {
            if let Some(person) = people.get_mut(&attendee) {
                person.bookings.push(PersonBooking {
                    booking_id,
                    capacity_id,
                    event_id,
                    start: start.and_utc(),
                    end: end.and_utc(),
                });
            }
        }
        let blocks = busy_blocks::table
            .filter(busy_blocks::attendee.eq_any(chunk))
            .filter(busy_blocks::starts_at.lt(to))
            .filter(busy_blocks::ends_at.gt(from))
            .order(busy_blocks::id.asc())
            .select((
                busy_blocks::attendee,
                busy_blocks::id,
                busy_blocks::starts_at,
                busy_blocks::ends_at,
            ))
            .limit(MAX_FACTS as i64 + 1)
            .load::<(String, i64, NaiveDateTime, NaiveDateTime)>(conn)?;
        count += blocks.len();
        for (attendee, id, start, end) in blocks {
            if let Some(person) = people.get_mut(&attendee) {
                person.blocks.push(PersonBlock {
                    id,
                    start: start.and_utc(),
                    end: end.and_utc(),
                });
            }
        }
    }
    count += load_remote(conn, attendees, from, to, &mut people)?;
    if count > MAX_FACTS {
        return Err(Error::TooManyFacts {
            count,
            limit: MAX_FACTS,
        });
    }
    Ok(people)
}

/// Adds the remote occurrences that `attendees` joined or asked to join, within `[from, to)`,
/// and returns how many it added. A series' occurrence is the one starting at the RSVP's
/// occurrence start; a one-off event's is its only one, wherever its origin moved it.
fn load_remote(
    conn: &mut AnyConnection,
    attendees: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
    people: &mut HashMap<String, PersonFacts>,
) -> Result<usize, Error> {
    let mut count = 0;
    for chunk in attendees.chunks(500) {
        let rsvps = outgoing_rsvps::table
            .inner_join(remote_events::table)
            .filter(outgoing_rsvps::person.eq_any(chunk))
            .filter(outgoing_rsvps::state.eq_any(["requested", "accepted"]))
            .filter(remote_events::deleted.eq(false))
            .filter(remote_events::status.ne("cancelled"))
            .select((
                outgoing_rsvps::person,
                remote_events::id,
                remote_events::rrule.is_not_null(),
                outgoing_rsvps::occurrence_start,
                remote_events::origin,
            ))
            .limit(MAX_FACTS as i64 + 1)
            .load::<(String, i64, bool, NaiveDateTime, String)>(conn)?;
        for (person, remote_event_id, series, occurrence_start, origin) in rsvps {
            let mut spans = remote_occurrences::table
                .filter(remote_occurrences::remote_event_id.eq(remote_event_id))
                .filter(remote_occurrences::deleted.eq(false))
                .filter(
                    remote_occurrences::status
                        .is_null()
                        .or(remote_occurrences::status.ne("cancelled")),
                )
                .select((remote_occurrences::start_at, remote_occurrences::end_at))
                .order(remote_occurrences::start_at.asc())
                .into_boxed();
            if series {
                // A series' occurrence is named by its original start, wherever it moved.
                spans = spans.filter(
                    remote_occurrences::recurrence_id.eq(occurrence_start).or(
                        remote_occurrences::recurrence_id
                            .is_null()
                            .and(remote_occurrences::start_at.eq(occurrence_start)),
                    ),
                );
            }
            let Some((start, end)) = spans
                .first::<(NaiveDateTime, NaiveDateTime)>(conn)
                .optional()?
            else {
                continue;
            };
            if start >= to || end <= from {
                continue;
            }
            let trusted = peers::table
                .filter(peers::domain.eq(&origin))
                .select(peers::state)
                .first::<String>(conn)
                .optional()?
                .is_some_and(|state| state == "trusted");
            if let Some(facts) = people.get_mut(&person) {
                facts.remote.push(PersonRemote {
                    start: start.and_utc(),
                    end: end.and_utc(),
                    origin,
                    trusted,
                });
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Builds the rules' view of a local occurrence. The caller fills in the seats.
pub fn local_occurrence(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    cancelled: bool,
    capacity: Option<i64>,
    settings: &EventSettings,
) -> OccurrenceFact {
    let start_s = start.timestamp();
    OccurrenceFact {
        start: start_s,
        end: end.timestamp(),
        origin: Origin::Local,
        trusted: true,
        cancelled,
        capacity,
        seats_taken: 0,
        seats_held: 0,
        buffer_before: settings.buffer_before_seconds,
        buffer_after: settings.buffer_after_seconds,
        opens_at: settings.opens_before_seconds.map(|s| start_s - s),
        closes_at: Some(start_s - settings.closes_before_seconds),
    }
}

/// Builds the facts for one request (or, with `request` `None`, for free/busy).
///
/// The target occurrence gets index 0; the person's other bookings follow. `exclude_booking`
/// leaves out the booking a confirmation or promotion is about, so it does not conflict with
/// itself.
pub fn facts_for<S: std::hash::BuildHasher>(
    target: Option<&Target>,
    person: &PersonFacts,
    settings: &HashMap<i64, EventSettings, S>,
    now: DateTime<Utc>,
    request: Option<RequestFact>,
    exclude_booking: Option<i64>,
) -> Facts {
    let mut facts = Facts {
        now: now.timestamp(),
        request,
        ..Facts::default()
    };
    if let Some(target) = target {
        facts.occurrences.push(target.fact.clone());
    }
    for booking in &person.bookings {
        if Some(booking.booking_id) == exclude_booking {
            continue;
        }
        let on_target = target.is_some_and(|t| t.capacity_id == Some(booking.capacity_id));
        if on_target {
            facts.booked.push(0);
            continue;
        }
        let event_settings = settings.get(&booking.event_id).copied().unwrap_or_default();
        facts.booked.push(facts.occurrences.len() as u32);
        facts.occurrences.push(local_occurrence(
            booking.start,
            booking.end,
            false,
            None,
            &event_settings,
        ));
    }
    // Each peer gets its own origin index, in order of first appearance.
    let mut origins: Vec<&str> = Vec::new();
    for remote in &person.remote {
        let index = origins
            .iter()
            .position(|o| *o == remote.origin)
            .unwrap_or_else(|| {
                origins.push(&remote.origin);
                origins.len() - 1
            });
        facts.booked.push(facts.occurrences.len() as u32);
        facts.occurrences.push(OccurrenceFact {
            start: remote.start.timestamp(),
            end: remote.end.timestamp(),
            origin: Origin::Remote(index as u32),
            trusted: remote.trusted,
            cancelled: false,
            capacity: None,
            seats_taken: 0,
            seats_held: 0,
            buffer_before: 0,
            buffer_after: 0,
            opens_at: None,
            closes_at: None,
        });
    }
    facts.busy_blocks = person
        .blocks
        .iter()
        .map(|block| BusyBlockFact {
            id: block.id as u32,
            start: block.start.timestamp(),
            end: block.end.timestamp(),
        })
        .collect();
    facts
}

/// Event ids of a person's bookings, for [`load_settings`].
pub fn event_ids<'a>(people: impl IntoIterator<Item = &'a PersonFacts>) -> Vec<i64> {
    let mut ids: Vec<i64> = people
        .into_iter()
        .flat_map(|p| p.bookings.iter().map(|b| b.event_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::{BusySource, evaluate};

    fn at(hour: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(hour * 3600, 0).expect("valid instant")
    }

    #[test]
    fn own_booking_on_target_counts_as_booked() {
        let settings = EventSettings::default();
        let target = Target {
            fact: local_occurrence(at(10), at(11), false, Some(5), &settings),
            capacity_id: Some(7),
        };
        let person = PersonFacts {
            bookings: vec![
                PersonBooking {
                    booking_id: 1,
                    capacity_id: 7,
                    event_id: 1,
                    start: at(10),
                    end: at(11),
                },
                PersonBooking {
                    booking_id: 2,
                    capacity_id: 8,
                    event_id: 2,
                    start: at(20),
                    end: at(21),
                },
            ],
            blocks: vec![],
            remote: vec![],
        };
        let facts = facts_for(Some(&target), &person, &HashMap::new(), at(0), None, None);
        assert_eq!(facts.booked, [0, 1]);
        assert_eq!(facts.occurrences.len(), 2);

        let without = facts_for(
            Some(&target),
            &person,
            &HashMap::new(),
            at(0),
            None,
            Some(1),
        );
        assert_eq!(without.booked, [1]);
    }

    #[test]
    fn settings_become_window_and_buffers() {
        let settings = EventSettings {
            buffer_before_seconds: 60,
            buffer_after_seconds: 120,
            opens_before_seconds: Some(3600),
            closes_before_seconds: -600,
            waitlist: true,
        };
        let fact = local_occurrence(at(10), at(11), false, None, &settings);
        assert_eq!(fact.opens_at, Some(9 * 3600));
        assert_eq!(fact.closes_at, Some(10 * 3600 + 600));
        assert_eq!((fact.buffer_before, fact.buffer_after), (60, 120));
    }

    #[test]
    fn person_facts_feed_busy_intervals() {
        let person = PersonFacts {
            bookings: vec![],
            blocks: vec![PersonBlock {
                id: 4,
                start: at(1),
                end: at(2),
            }],
            remote: vec![],
        };
        let facts = facts_for(None, &person, &HashMap::new(), at(0), None, None);
        let busy = evaluate(&facts).busy;
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].source, BusySource::Block(4));
    }

    #[test]
    fn joined_remote_occurrences_conflict_only_while_their_server_is_trusted() {
        let settings = EventSettings::default();
        let target = Target {
            fact: local_occurrence(at(10), at(12), false, None, &settings),
            capacity_id: None,
        };
        let joined = |trusted| PersonFacts {
            remote: vec![PersonRemote {
                start: at(11),
                end: at(13),
                origin: "peer.example".to_owned(),
                trusted,
            }],
            ..PersonFacts::default()
        };
        let request = Some(RequestFact {
            occurrence: 0,
            seats: 1,
            kind: crate::availability::RequestKind::Book,
            waitlist: false,
            hold_lapsed: false,
        });
        let verdict = |person: &PersonFacts| {
            let facts = facts_for(Some(&target), person, &HashMap::new(), at(0), request, None);
            evaluate(&facts).decision.map(|d| d.verdict)
        };
        assert_eq!(
            verdict(&joined(true)),
            Some(crate::availability::Verdict::Conflict)
        );
        assert_eq!(
            verdict(&joined(false)),
            Some(crate::availability::Verdict::Booked)
        );
    }
}
