//! From the component tree to events: zones first, then each VEVENT, then overrides to masters.

use std::collections::HashMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::component::Component;
use super::values::unescape_text;
use super::vevent::{DateReader, Timed, read_details, read_rrule, value_year};
use super::vtimezone::{ZoneUse, resolve_zones};
use super::{IcsError, MAX_EVENTS, ParsedCalendar};
use crate::calendar::event::{NewEvent, NewOverride, Schedule};

/// A VEVENT read on its own, before overrides meet their masters.
struct ReadEvent {
    line: usize,
    event: NewEvent,
    recurrence_id: Option<Timed>,
}

/// Reads the VCALENDAR component into events.
pub(crate) fn import_calendar(calendar: &Component) -> Result<ParsedCalendar, IcsError> {
    let name = calendar
        .property("X-WR-CALNAME")
        .map(|name| unescape_text(name.value.trim()))
        .filter(|name| !name.is_empty());

    let vevents: Vec<&Component> = calendar.children_named("VEVENT").collect();
    if let Some(extra) = vevents.get(MAX_EVENTS) {
        return Err(IcsError::TooMany {
            line: extra.line,
            what: "VEVENTs",
            limit: MAX_EVENTS,
        });
    }

    let zones = resolve_zones(calendar, &zone_uses(&vevents))?;
    let reader = DateReader { zones: &zones };
    let read = vevents
        .iter()
        .map(|vevent| read_event(&reader, vevent))
        .collect::<Result<_, _>>()?;
    let events = attach_overrides(read)?;
    Ok(ParsedCalendar { name, events })
}

/// Collects every TZID used on a DATE-TIME in a VEVENT with the years of its values. A TZID on
/// a DATE value is ignored, so it needs no zone.
fn zone_uses(vevents: &[&Component]) -> HashMap<String, ZoneUse> {
    let mut uses: HashMap<String, ZoneUse> = HashMap::new();
    let properties = vevents.iter().flat_map(|vevent| vevent.properties.iter());
    for property in properties {
        let Some(tzid) = property.param("TZID") else {
            continue;
        };
        if property
            .param("VALUE")
            .is_some_and(|value| value.eq_ignore_ascii_case("DATE"))
        {
            continue;
        }
        let years = property.value.split(['/', ',']).filter_map(value_year);
        for year in years {
            let usage = uses.entry(tzid.trim().to_string()).or_insert(ZoneUse {
                line: property.line,
                first_year: year,
                last_year: year,
            });
            usage.first_year = usage.first_year.min(year);
            usage.last_year = usage.last_year.max(year);
        }
    }
    uses
}

fn read_event(reader: &DateReader<'_>, vevent: &Component) -> Result<ReadEvent, IcsError> {
    let missing = |property: &str| IcsError::Missing {
        line: vevent.line,
        component: "VEVENT".into(),
        property: property.into(),
    };
    let start = reader.read_one(
        vevent
            .property("DTSTART")
            .ok_or_else(|| missing("DTSTART"))?,
    )?;
    if let Some(id) = vevent.property("RECURRENCE-ID")
        && id
            .param("RANGE")
            .is_some_and(|range| range.eq_ignore_ascii_case("THISANDFUTURE"))
    {
        // Applying it to one occurrence would silently change the meaning of the file.
        return Err(super::vevent::invalid(
            id,
            "RANGE=THISANDFUTURE",
            "overrides of this and all later occurrences are not supported; \
                 split the series into two events instead",
        ));
    }
    let recurrence_id = vevent
        .property("RECURRENCE-ID")
        .map(|id| reader.read_one(id))
        .transpose()?;

    let schedule = Schedule {
        start: start.wall,
        basis: start.basis,
        length: reader.length(vevent, start)?,
        rrule: read_rrule(vevent)?,
        rdates: reader.extra_dates(vevent, start.basis)?,
        exdates: reader.exclusions(vevent, start)?,
    };
    let event = NewEvent {
        uid: read_uid(vevent),
        details: read_details(vevent)?,
        schedule,
        capacity: None,
        overrides: Vec::new(),
    };
    Ok(ReadEvent {
        line: vevent.line,
        event,
        recurrence_id,
    })
}

/// Returns the UID, or a stable one derived from the VEVENT's content when it has none.
fn read_uid(vevent: &Component) -> String {
    if let Some(uid) = vevent
        .property("UID")
        .map(|uid| uid.value.trim())
        .filter(|uid| !uid.is_empty())
    {
        return uid.to_string();
    }
    let mut hasher = Sha256::new();
    for property in &vevent.properties {
        hasher.update(property.name.as_bytes());
        for (key, value) in &property.params {
            hasher.update(format!(";{key}={value}").as_bytes());
        }
        hasher.update(b":");
        hasher.update(property.value.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let mut hex = String::new();
    for byte in digest.iter().take(16) {
        let _ = write!(hex, "{byte:02x}");
    }
    format!("{hex}@import.rose-events.invalid")
}

/// Attaches each override to the master with its UID; masterless overrides become one-offs.
fn attach_overrides(read: Vec<ReadEvent>) -> Result<Vec<NewEvent>, IcsError> {
    let mut events: Vec<NewEvent> = Vec::new();
    let mut master_index: HashMap<String, (usize, usize)> = HashMap::new();
    let mut overrides = Vec::new();

    for item in read {
        if item.recurrence_id.is_some() {
            overrides.push(item);
            continue;
        }
        if let Some((_, first_line)) = master_index.get(&item.event.uid) {
            return Err(IcsError::Syntax {
                line: item.line,
                message: format!(
                    "VEVENT UID {:?} is also used by the VEVENT at line {first_line}; only overrides \
                     (with RECURRENCE-ID) may share a UID",
                    item.event.uid
                ),
            });
        }
        master_index.insert(item.event.uid.clone(), (events.len(), item.line));
        events.push(item.event);
    }

    for item in overrides {
        let Some(recurrence_id) = item.recurrence_id else {
            continue;
        };
        match master_index.get(&item.event.uid) {
            Some((index, _)) => {
                let master = &mut events[*index];
                let new_override = to_override(master, item.event, recurrence_id);
                master.overrides.push(new_override);
            }
            // NOTE: two overrides of the same absent master become two one-off events with
            // the same UID; callers that store by UID keep only the last.
            None => events.push(item.event),
        }
    }
    Ok(events)
}

fn to_override(master: &NewEvent, event: NewEvent, recurrence_id: Timed) -> NewOverride {
    NewOverride {
        recurrence_id: recurrence_id.moment_for(master.schedule.basis),
        start: Some(event.schedule.start),
        basis: Some(event.schedule.basis),
        length: Some(event.schedule.length),
        details: Some(event.details),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_calendar;

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    use crate::calendar::time::{Moment, TimeBasis};

    const OVERRIDE_FIRST: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a@x.example\r\n\
        RECURRENCE-ID:20240108T090000Z\r\nDTSTART:20240109T090000Z\r\nSUMMARY:moved\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:a@x.example\r\nDTSTART:20240101T090000Z\r\nRRULE:FREQ=WEEKLY\r\n\
        SUMMARY:weekly\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:b@x.example\r\n\
        RECURRENCE-ID:20240108T090000Z\r\nDTSTART:20240109T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn override_before_master_is_attached() -> TestResult {
        let parsed = parse_calendar(OVERRIDE_FIRST.as_bytes())?;
        let master = &parsed.events[0];
        assert_eq!(master.overrides.len(), 1);
        let expected = "2024-01-08T09:00:00Z".parse()?;
        assert_eq!(
            master.overrides[0].recurrence_id,
            Moment::Wall(chrono::DateTime::<chrono::Utc>::naive_utc(&expected))
        );
        assert_eq!(master.schedule.basis, TimeBasis::Utc);
        Ok(())
    }

    #[test]
    fn override_without_master_becomes_one_off() -> TestResult {
        let parsed = parse_calendar(OVERRIDE_FIRST.as_bytes())?;
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.events[1].uid, "b@x.example");
        assert_eq!(parsed.events[1].schedule.rrule, None);
        Ok(())
    }

    #[test]
    fn missing_uid_is_derived_and_stable() -> TestResult {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20240101T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let first = parse_calendar(text.as_bytes())?;
        let second = parse_calendar(text.as_bytes())?;
        assert!(first.events[0].uid.ends_with("@import.rose-events.invalid"));
        assert_eq!(first.events[0].uid, second.events[0].uid);
        Ok(())
    }
}
