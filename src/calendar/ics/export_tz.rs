//! VTIMEZONE blocks generated from the tz database.
//!
//! The transitions of a zone are found by scanning its offset day by day and bisecting each
//! change to the second. Transitions that fall on the same "nth (or last) weekday of a month at a
//! local time" in consecutive years become one observance with a yearly RRULE; the rest are
//! written as single observances.

use std::fmt::Write as _;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Weekday};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use super::vtimezone::days_in_month;

/// Earliest year a rule run is extended back to.
const EARLIEST_YEAR: i32 = 1970;

/// One change of offset, with the local wall time it happens at.
#[derive(Clone, Debug)]
struct Change {
    onset: NaiveDateTime,
    at_utc: NaiveDateTime,
    offset_from: i32,
    offset_to: i32,
    daylight: bool,
    name: Option<String>,
}

impl Change {
    fn same_kind(&self, other: &Change) -> bool {
        self.daylight == other.daylight
            && self.offset_from == other.offset_from
            && self.offset_to == other.offset_to
            && self.name == other.name
            && self.onset.month() == other.onset.month()
            && self.onset.weekday() == other.onset.weekday()
            && self.onset.time() == other.onset.time()
    }

    fn nth(&self) -> u32 {
        (self.onset.day() - 1) / 7 + 1
    }

    fn is_last(&self) -> bool {
        days_in_month(self.onset.year(), self.onset.month())
            .is_some_and(|days| self.onset.day() + 7 > days)
    }
}

/// Consecutive yearly changes that follow one weekday rule.
#[derive(Clone, Debug)]
struct Run {
    changes: Vec<Change>,
    nth: Option<u32>,
    last: bool,
}

impl Run {
    fn new(change: Change) -> Self {
        Run {
            nth: Some(change.nth()),
            last: change.is_last(),
            changes: vec![change],
        }
    }

    /// Checks whether `change` continues the rule `year_step` years away from the run's edge.
    fn accepts(&self, change: &Change, edge: &Change, year_step: i32) -> bool {
        edge.same_kind(change)
            && change.onset.year() == edge.onset.year() + year_step
            && (self.nth == Some(change.nth()) || (self.last && change.is_last()))
    }

    fn absorb(&mut self, change: &Change) {
        self.nth = self.nth.filter(|nth| *nth == change.nth());
        self.last &= change.is_last();
    }
}

/// Writes the VTIMEZONE lines for `zone`. They are exact from `first_year` to two years after
/// `last_year`, and follow the zone's current rule after that.
pub(crate) fn write_vtimezone(zone: Tz, first_year: i32, last_year: i32) -> Vec<String> {
    let scan_from = first_year - 1;
    let scan_to = last_year + 2;
    let mut runs = group_runs(changes_in_years(zone, scan_from, scan_to));
    for run in &mut runs {
        if run.changes[0].onset.year() == scan_from {
            extend_back(zone, run);
        }
    }
    runs.sort_by_key(|run| run.changes[0].onset);

    let mut lines = vec![
        "BEGIN:VTIMEZONE".to_string(),
        format!("TZID:{}", zone.name()),
        format!("X-LIC-LOCATION:{}", zone.name()),
    ];
    if runs.is_empty() {
        lines.extend(fixed_observance(zone, first_year));
    }
    for run in &runs {
        lines.extend(observance_lines(run, scan_to));
    }
    lines.push("END:VTIMEZONE".to_string());
    lines
}

fn group_runs(changes: Vec<Change>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for change in changes {
        let open = runs.iter_mut().find(|run| {
            let edge = run.changes.last();
            edge.is_some_and(|edge| run.accepts(&change, edge, 1))
        });
        match open {
            Some(run) => {
                run.absorb(&change);
                run.changes.push(change);
            }
            None => runs.push(Run::new(change)),
        }
    }
    runs
}

/// Prepends earlier years' changes while they follow the run's rule.
fn extend_back(zone: Tz, run: &mut Run) {
    loop {
        let first = run.changes[0].clone();
        let year = first.onset.year() - 1;
        if year < EARLIEST_YEAR {
            return;
        }
        let earlier = changes_in_years(zone, year, year)
            .into_iter()
            .find(|change| run.accepts(change, &first, -1));
        let Some(earlier) = earlier else { return };
        run.absorb(&earlier);
        run.changes.insert(0, earlier);
    }
}

fn observance_lines(run: &Run, scan_to: i32) -> Vec<String> {
    let first = &run.changes[0];
    let kind = if first.daylight {
        "DAYLIGHT"
    } else {
        "STANDARD"
    };
    let mut lines = vec![
        format!("BEGIN:{kind}"),
        format!("TZOFFSETFROM:{}", format_offset(first.offset_from)),
        format!("TZOFFSETTO:{}", format_offset(first.offset_to)),
    ];
    if let Some(name) = &first.name {
        lines.push(format!("TZNAME:{name}"));
    }
    lines.push(format!("DTSTART:{}", first.onset.format("%Y%m%dT%H%M%S")));

    if run.changes.len() > 1 {
        let ordinal = if run.last {
            -1
        } else {
            run.nth.map_or(1, |nth| nth as i32)
        };
        let mut rule = format!(
            "RRULE:FREQ=YEARLY;BYMONTH={};BYDAY={ordinal}{}",
            first.onset.month(),
            weekday_code(first.onset.weekday())
        );
        let last = &run.changes[run.changes.len() - 1];
        if last.onset.year() < scan_to {
            let _ = write!(rule, ";UNTIL={}", last.at_utc.format("%Y%m%dT%H%M%SZ"));
        }
        lines.push(rule);
    }
    lines.push(format!("END:{kind}"));
    lines
}

/// Writes one STANDARD observance for a zone without changes in the years used.
fn fixed_observance(zone: Tz, year: i32) -> Vec<String> {
    let at = NaiveDate::from_ymd_opt(year, 1, 1)
        .unwrap_or_default()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    let offset = zone.offset_from_utc_datetime(&at);
    let seconds = offset.fix().local_minus_utc();
    let mut lines = vec![
        "BEGIN:STANDARD".to_string(),
        format!("TZOFFSETFROM:{}", format_offset(seconds)),
        format!("TZOFFSETTO:{}", format_offset(seconds)),
    ];
    if let Some(name) = offset.abbreviation() {
        lines.push(format!("TZNAME:{name}"));
    }
    lines.push("DTSTART:19700101T000000".to_string());
    lines.push("END:STANDARD".to_string());
    lines
}

/// Finds every change of offset or abbreviation in `first_year..=last_year`.
fn changes_in_years(zone: Tz, first_year: i32, last_year: i32) -> Vec<Change> {
    let (Some(from), Some(to)) = (
        NaiveDate::from_ymd_opt(first_year, 1, 1),
        NaiveDate::from_ymd_opt(last_year + 1, 1, 1),
    ) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    let mut day = from.and_hms_opt(0, 0, 0).unwrap_or_default();
    let end = to.and_hms_opt(0, 0, 0).unwrap_or_default();
    while day < end {
        let next = day + Duration::days(1);
        if state(zone, day) != state(zone, next) {
            changes.push(change_at(zone, bisect(zone, day, next)));
        }
        day = next;
    }
    changes
}

/// Offset, DST flag and abbreviation at a UTC instant.
fn state(zone: Tz, at: NaiveDateTime) -> (i32, bool, Option<String>) {
    let offset = zone.offset_from_utc_datetime(&at);
    let daylight = !offset.dst_offset().is_zero();
    (
        offset.fix().local_minus_utc(),
        daylight,
        offset.abbreviation().map(str::to_string),
    )
}

/// Finds the first second in `(before, after]` with the state of `after`.
fn bisect(zone: Tz, mut before: NaiveDateTime, mut after: NaiveDateTime) -> NaiveDateTime {
    let target = state(zone, after);
    while (after - before).num_seconds() > 1 {
        let middle = before + (after - before) / 2;
        if state(zone, middle) == target {
            after = middle;
        } else {
            before = middle;
        }
    }
    after
}

fn change_at(zone: Tz, at_utc: NaiveDateTime) -> Change {
    let (offset_from, _, _) = state(zone, at_utc - Duration::seconds(1));
    let (offset_to, daylight, name) = state(zone, at_utc);
    let onset = at_utc + Duration::seconds(i64::from(offset_from));
    Change {
        onset,
        at_utc,
        offset_from,
        offset_to,
        daylight,
        name,
    }
}

fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let magnitude = seconds.abs();
    let (hours, minutes, rest) = (magnitude / 3600, magnitude % 3600 / 60, magnitude % 60);
    if rest == 0 {
        format!("{sign}{hours:02}{minutes:02}")
    } else {
        format!("{sign}{hours:02}{minutes:02}{rest:02}")
    }
}

fn weekday_code(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vienna_has_last_sunday_rules() {
        let lines = write_vtimezone(Tz::Europe__Vienna, 2025, 2025);
        assert!(
            lines.contains(&"RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU".to_string()),
            "{lines:#?}"
        );
        assert!(lines.contains(&"TZOFFSETTO:+0200".to_string()));
    }

    #[test]
    fn new_york_rules_start_in_2007() {
        let lines = write_vtimezone(Tz::America__New_York, 2025, 2025);
        assert!(
            lines.contains(&"DTSTART:20070311T020000".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"DTSTART:20071104T020000".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU".to_string()),
            "{lines:#?}"
        );
    }

    #[test]
    fn zone_without_changes_gets_one_standard_block() {
        let lines = write_vtimezone(Tz::Asia__Tokyo, 2025, 2025);
        assert!(
            lines.contains(&"TZOFFSETTO:+0900".to_string()),
            "{lines:#?}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.starts_with("BEGIN:STANDARD"))
                .count(),
            1
        );
    }
}
