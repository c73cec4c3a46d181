//! The agenda: every occurrence of some calendars whose start falls in a window.
//!
//! The window is half-open, `[from, to)`, and tests each occurrence's start. Floating and
//! all-day occurrences have no instant of their own, so they are placed on the viewer's clock and
//! "2025-03-12" is on 12 March for every viewer.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::Error;
use super::event::EventStatus;
use super::occurrence::{Occurrence, occurrences};
use super::store::{self, StoredEvent};
use super::time::{TimeBasis, Window, resolve_local};
use crate::db::AnyConnection;

/// Pinned floating and all-day values may sit up to 14 hours from UTC on a viewer's clock
/// (UTC-12 to UTC+14), so the stored spans are searched this much wider.
const PINNED_MARGIN_HOURS: i64 = 15;

/// What to list.
#[derive(Clone, Copy, Debug)]
pub struct AgendaQuery<'a> {
    /// Calendars to include.
    pub calendar_ids: &'a [i64],
    /// The half-open window over starts.
    pub window: Window,
    /// The viewer's zone, for floating and all-day occurrences.
    pub viewer: Tz,
    /// Whether cancelled occurrences are listed (marked as such).
    pub include_cancelled: bool,
    /// Most occurrences returned; more set `truncated`.
    pub max_occurrences: usize,
}

/// One listed occurrence.
#[derive(Clone, Debug)]
pub struct AgendaItem {
    /// The event it comes from.
    pub event_id: i64,
    /// The event's calendar.
    pub calendar_id: i64,
    /// Start on the viewer's clock for floating and all-day occurrences, else the instant.
    pub start: DateTime<Utc>,
    /// End, read the same way as `start`.
    pub end: DateTime<Utc>,
    /// The occurrence.
    pub occurrence: Occurrence,
}

/// The listed occurrences, sorted by start, event id and recurrence id.
#[derive(Clone, Debug, Default)]
pub struct Agenda {
    /// Occurrences in order.
    pub items: Vec<AgendaItem>,
    /// Whether more occurrences were left out than `max_occurrences` allowed.
    pub truncated: bool,
}

/// Lists the occurrences that `query` selects.
pub fn agenda(conn: &mut AnyConnection, query: &AgendaQuery<'_>) -> Result<Agenda, Error> {
    let margin = Duration::hours(PINNED_MARGIN_HOURS);
    let wide = Window {
        from: query
            .window
            .from
            .checked_sub_signed(margin)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
            .max(earliest_stored()),
        to: query
            .window
            .to
            .checked_add_signed(margin)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .min(latest_stored()),
    };
    let events = store::events_meeting(
        conn,
        query.calendar_ids,
        wide.from.naive_utc(),
        wide.to.naive_utc(),
    )?;
    Ok(collect(&events, query, wide))
}

/// The first instant the span columns can hold (year 1): SQLite compares them as text, so a
/// bound outside years 1 to 9999 would sort wrongly.
fn earliest_stored() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |wall| wall.and_utc())
}

/// The last instant the span columns can hold (the end of year 9999, to the nanosecond, so
/// that a start in its last second still compares as earlier).
fn latest_stored() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|date| date.and_hms_nano_opt(23, 59, 59, 999_999_999))
        .map_or(DateTime::<Utc>::MAX_UTC, |wall| wall.and_utc())
}

fn collect(events: &[StoredEvent], query: &AgendaQuery<'_>, wide: Window) -> Agenda {
    let mut agenda = Agenda::default();
    for stored in events {
        // Instants are compared with the window itself. Floating and all-day values move with
        // the viewer's zone, so they are expanded over the wider window and placed afterwards.
        let window = match stored.event.schedule.basis {
            TimeBasis::Zoned(_) | TimeBasis::Utc => query.window,
            TimeBasis::Floating | TimeBasis::AllDay => wide,
        };
        let expanded = match occurrences(&stored.event, window, query.max_occurrences + 1) {
            Ok(expanded) => expanded,
            Err(error) => {
                // Stored rules were expanded once when they were written, so this means data
                // written by an older version. One bad event must not hide the others.
                tracing::warn!(event_id = stored.id, %error, "event left out of the agenda");
                agenda.truncated = true;
                continue;
            }
        };
        agenda.truncated |= expanded.truncated;
        for occurrence in expanded.occurrences {
            if occurrence.details.status == EventStatus::Cancelled && !query.include_cancelled {
                continue;
            }
            let start = on_viewer_clock(&occurrence, occurrence.start, query.viewer);
            if query.window.contains(start) {
                agenda.items.push(AgendaItem {
                    event_id: stored.id,
                    calendar_id: stored.calendar_id,
                    start,
                    end: on_viewer_clock(&occurrence, occurrence.end, query.viewer),
                    occurrence,
                });
            }
        }
    }
    agenda.items.sort_by(|a, b| {
        let key = |item: &AgendaItem| (item.start, item.event_id, item.occurrence.recurrence_id);
        key(a).cmp(&key(b))
    });
    if agenda.items.len() > query.max_occurrences {
        agenda.items.truncate(query.max_occurrences);
        agenda.truncated = true;
    }
    agenda
}

/// Reads a floating or all-day value (pinned UTC) on the viewer's clock; instants stay.
fn on_viewer_clock(occurrence: &Occurrence, pinned: DateTime<Utc>, viewer: Tz) -> DateTime<Utc> {
    match occurrence.basis {
        TimeBasis::Floating | TimeBasis::AllDay => resolve_local(viewer, pinned.naive_utc()),
        TimeBasis::Zoned(_) | TimeBasis::Utc => pinned,
    }
}
