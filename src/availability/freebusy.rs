//! Free/busy: when one person is busy in a window, and optionally the verdict on one candidate
//! occurrence, without writing anything.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::facts::{self, Target};
use super::{Assessment, BusySource, RequestFact, RequestKind, evaluate};
use crate::calendar::time::Window;
use crate::db::AnyConnection;

/// One busy interval as callers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BusyPeriod {
    /// Start, buffers included.
    pub start: DateTime<Utc>,
    /// End, buffers included.
    pub end: DateTime<Utc>,
    /// `booking` or `busy_block`.
    pub kind: &'static str,
    /// The booking's or busy block's id.
    pub id: i64,
}

/// Lists the busy periods of `attendee` that meet `window` and assesses `candidate`, an
/// occurrence with the seats to request, when one is given.
pub fn free_busy(
    conn: &mut AnyConnection,
    attendee: &str,
    window: Window,
    candidate: Option<(&Target, i64)>,
    now: DateTime<Utc>,
) -> Result<(Vec<BusyPeriod>, Assessment), facts::Error> {
    let mut people = facts::load_people(conn, &[attendee], window, now)?;
    let person = people.remove(attendee).unwrap_or_default();
    let settings = facts::load_settings(conn, &facts::event_ids([&person]))?;
    let request = candidate.map(|(_, seats)| RequestFact {
        occurrence: 0,
        seats,
        kind: RequestKind::Book,
        waitlist: false,
        hold_lapsed: false,
    });
    let target = candidate.map(|(target, _)| target);
    let facts = facts::facts_for(target, &person, &settings, now, request, None);
    let assessment = evaluate(&facts);

    // Map occurrence indexes back to booking ids: index 0 is the candidate when there is one,
    // the person's other bookings follow in the order facts_for added them.
    let offset = usize::from(target.is_some());
    let booked_ids: Vec<i64> = person
        .bookings
        .iter()
        .filter(|b| target.is_none_or(|t| t.capacity_id != Some(b.capacity_id)))
        .map(|b| b.booking_id)
        .collect();
    let on_target: Option<i64> = person
        .bookings
        .iter()
        .find(|b| target.is_some_and(|t| t.capacity_id == Some(b.capacity_id)))
        .map(|b| b.booking_id);
    let periods = assessment
        .busy
        .iter()
        .filter_map(|interval| {
            let (kind, id) = match interval.source {
                BusySource::Booking(0) if offset == 1 => ("booking", on_target?),
                BusySource::Booking(index) => {
                    ("booking", *booked_ids.get(index as usize - offset)?)
                }
                BusySource::Block(id) => ("busy_block", i64::from(id)),
            };
            let period = BusyPeriod {
                start: DateTime::from_timestamp(interval.start, 0)?,
                end: DateTime::from_timestamp(interval.end, 0)?,
                kind,
                id,
            };
            let meets = period.start < window.to && period.end > window.from;
            meets.then_some(period)
        })
        .collect();
    Ok((periods, assessment))
}
