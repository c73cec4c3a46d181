//! The range of starts an event can produce, stored so window queries skip other events.
//!
//! Computing it also expands the schedule once, which is how a rule that cannot be expanded
//! (a malformed RRULE, too many dates) is rejected before anything is stored.

use chrono::{DateTime, Utc};

use super::event::NewEvent;
use super::occurrence::occurrences;
use super::time::Window;
use super::validate::InvalidField;

/// A series with more occurrences than this is stored as open-ended: its exact last start is
/// not worth the expansion, and an open end only means the event is loaded for later windows.
const SPAN_PROBE_OCCURRENCES: usize = 2_000;

/// The earliest and latest start (pinned UTC) of any occurrence of `event`, with `None` as the
/// end for a series that has more than [`SPAN_PROBE_OCCURRENCES`] or no last instance.
pub(super) fn schedule_span(
    event: &NewEvent,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), InvalidField> {
    let schedule = &event.schedule;
    let first_wall = schedule.basis.to_utc(schedule.start);
    let everything = Window {
        from: DateTime::<Utc>::MIN_UTC,
        to: DateTime::<Utc>::MAX_UTC,
    };
    let expanded = occurrences(event, everything, SPAN_PROBE_OCCURRENCES).map_err(|error| {
        let rule = schedule.rrule.clone().unwrap_or_default();
        InvalidField::new("rrule", rule, error.to_string())
    })?;
    let starts = expanded.occurrences.iter().map(|o| o.start);
    let first = starts.clone().min().unwrap_or(first_wall).min(first_wall);
    if expanded.truncated {
        return Ok((first, None));
    }
    Ok((first, starts.max().or(Some(first_wall))))
}
