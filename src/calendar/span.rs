//! The range of starts an event can produce, stored so window queries skip other events.
//!
//! Computing it also expands the schedule once, which is how a rule that cannot be expanded
//! (a malformed RRULE, too many dates) is rejected before anything is stored.

use chrono::{DateTime, Utc};

use super::event::{NewEvent, Schedule};
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
    if expanded.truncated && expanded.occurrences.len() < SPAN_PROBE_OCCURRENCES {
        // The search for the next instance gave up: the rule matches so rarely (or never) that
        // every later window would repeat the same fruitless search.
        return Err(InvalidField::new(
            "rrule",
            schedule.rrule.clone().unwrap_or_default(),
            format!(
                "finds no instance after {} within the search limit; check that its BY parts \
                 can match a real date",
                expanded
                    .occurrences
                    .iter()
                    .map(|o| o.start)
                    .max()
                    .unwrap_or(first_wall)
                    .format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ));
    }
    check_rule_matches(event, everything)?;
    let starts = expanded.occurrences.iter().map(|o| o.start);
    let first = starts.clone().min().unwrap_or(first_wall).min(first_wall);
    if expanded.truncated {
        return Ok((first, None));
    }
    Ok((first, starts.max().or(Some(first_wall))))
}

/// Rejects a rule that matches no date after DTSTART although it requests more than one.
///
/// Such a rule (30 February, say) is searched until year 9999 whenever a window reaches the
/// event, which costs a large fraction of a second per read.
fn check_rule_matches(event: &NewEvent, everything: Window) -> Result<(), InvalidField> {
    let Some(rule) = &event.schedule.rrule else {
        return Ok(());
    };
    let bounded_to_one = super::validate::rule_parts(rule)
        .any(|(name, value)| name == "UNTIL" || (name == "COUNT" && value == "1"));
    if bounded_to_one {
        return Ok(());
    }
    let series = NewEvent {
        overrides: Vec::new(),
        schedule: Schedule {
            rdates: Vec::new(),
            exdates: Vec::new(),
            ..event.schedule.clone()
        },
        ..event.clone()
    };
    let found =
        occurrences(&series, everything, 2).map_or(0, |expanded| expanded.occurrences.len());
    if found < 2 {
        return Err(InvalidField::new(
            "rrule",
            rule,
            "matches no date after the start; check that its BY parts can match a real date",
        ));
    }
    Ok(())
}
