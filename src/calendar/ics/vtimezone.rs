//! Resolving TZIDs to IANA zones, including zones that only a VTIMEZONE defines.
//!
//! An *observance* is a STANDARD or DAYLIGHT block: from its *onsets* (local wall times given by
//! DTSTART, RDATE and a yearly RRULE) on, the offset is TZOFFSETTO. A *transition* is an onset
//! as a UTC instant, read with the TZOFFSETFROM in force before it.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc, Weekday};
use chrono_tz::{OffsetName, TZ_VARIANTS, Tz};

use super::IcsError;
use super::component::Component;
use super::lines::preview;
use super::values::{DateValue, parse_date_value, parse_utc_offset};
use super::windows_zones::windows_zone_to_iana;

/// Most years compared when matching a VTIMEZONE against the IANA zones.
const MAX_MATCH_YEARS: i32 = 10;

/// Use of a TZID in a file: the first line and the range of years of its values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ZoneUse {
    /// First physical line that names the TZID.
    pub line: usize,
    /// Earliest year of a value with this TZID.
    pub first_year: i32,
    /// Latest year of a value with this TZID.
    pub last_year: i32,
}

/// Resolves every used TZID to an IANA zone.
pub(crate) fn resolve_zones(
    calendar: &Component,
    uses: &HashMap<String, ZoneUse>,
) -> Result<HashMap<String, Tz>, IcsError> {
    let mut zones = HashMap::new();
    for (tzid, usage) in uses {
        zones.insert(tzid.clone(), resolve_zone(calendar, tzid, *usage)?);
    }
    Ok(zones)
}

fn resolve_zone(calendar: &Component, tzid: &str, usage: ZoneUse) -> Result<Tz, IcsError> {
    if let Some(zone) = zone_by_name(tzid) {
        return Ok(zone);
    }

    let definition = calendar.children_named("VTIMEZONE").find(|vtimezone| {
        vtimezone
            .property("TZID")
            .is_some_and(|id| id.value.trim() == tzid)
    });
    let Some(definition) = definition else {
        return Err(IcsError::UnknownZone {
            line: usage.line,
            tzid: tzid.to_string(),
        });
    };

    let unmatched = |reason: String| IcsError::UnmatchedZone {
        line: definition.line,
        tzid: tzid.to_string(),
        reason,
    };
    let observances = read_observances(definition).map_err(unmatched)?;
    let last_year = usage.last_year.min(usage.first_year + MAX_MATCH_YEARS - 1);
    match_zone(&observances, usage.first_year, last_year + 1).map_err(unmatched)
}

/// Looks up an IANA name, a Windows name or a vendor path ending in an IANA name.
fn zone_by_name(tzid: &str) -> Option<Tz> {
    if let Ok(zone) = tzid.parse::<Tz>() {
        return Some(zone);
    }
    if let Some(zone) = windows_zone_to_iana(tzid) {
        return Some(zone);
    }

    // Lightning writes `/mozilla.org/20070129_1/Asia/Tokyo`, libical
    // `/freeassociation.sourceforge.net/Tzfile/Europe/Berlin`: try the last three, two and one
    // path segments.
    let segments: Vec<&str> = tzid.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() < 2 {
        return None;
    }
    (1..=3.min(segments.len() - 1))
        .rev()
        .find_map(|take| segments[segments.len() - take..].join("/").parse().ok())
}

/// One STANDARD or DAYLIGHT block.
#[derive(Clone, Debug)]
struct Observance {
    start: NaiveDateTime,
    offset_from: i32,
    offset_to: i32,
    name: Option<String>,
    rule: Option<YearlyRule>,
    rdates: Vec<NaiveDateTime>,
}

/// The yearly RRULE shapes VTIMEZONEs use: a month and a day chosen by weekday and/or day of
/// month.
#[derive(Clone, Debug, Default)]
struct YearlyRule {
    month: Option<u32>,
    weekday: Option<(i32, Weekday)>,
    month_days: Vec<i32>,
    until: Option<NaiveDateTime>,
    count: Option<i32>,
}

fn read_observances(vtimezone: &Component) -> Result<Vec<Observance>, String> {
    let mut observances = Vec::new();
    for block in &vtimezone.children {
        if block.name != "STANDARD" && block.name != "DAYLIGHT" {
            continue;
        }
        observances.push(read_observance(block)?);
    }
    if observances.is_empty() {
        return Err("it has no STANDARD or DAYLIGHT block".into());
    }
    Ok(observances)
}

fn read_observance(block: &Component) -> Result<Observance, String> {
    let value = |name: &str| {
        block
            .property(name)
            .map(|property| property.value.trim().to_string())
            .ok_or_else(|| format!("its {} at line {} has no {name}", block.name, block.line))
    };
    let offset = |name: &str| -> Result<i32, String> {
        let text = value(name)?;
        parse_utc_offset(&text).ok_or_else(|| format!("{name} {text:?} is not a UTC offset"))
    };

    let start_text = value("DTSTART")?;
    let start = parse_date_value(&start_text)
        .map(DateValue::wall)
        .ok_or_else(|| format!("DTSTART {start_text:?} is not a DATE-TIME"))?;
    let rule = match block.property("RRULE") {
        Some(rrule) => Some(parse_yearly_rule(&rrule.value)?),
        None => None,
    };
    let rdates = block
        .properties_named("RDATE")
        .flat_map(|rdate| rdate.value.split(','))
        .filter_map(|text| parse_date_value(text).map(DateValue::wall))
        .collect();

    Ok(Observance {
        start,
        offset_from: offset("TZOFFSETFROM")?,
        offset_to: offset("TZOFFSETTO")?,
        name: block
            .property("TZNAME")
            .map(|name| name.value.trim().to_string()),
        rule,
        rdates,
    })
}

fn parse_yearly_rule(text: &str) -> Result<YearlyRule, String> {
    let unsupported = || {
        format!(
            "RRULE {:?} is not a yearly month and day rule",
            preview(text)
        )
    };
    let mut rule = YearlyRule::default();
    for part in text.split(';') {
        let (key, value) = part.split_once('=').ok_or_else(unsupported)?;
        match key.trim().to_ascii_uppercase().as_str() {
            "FREQ" if value.eq_ignore_ascii_case("YEARLY") => {}
            "BYMONTH" => rule.month = Some(value.parse().map_err(|_| unsupported())?),
            "BYDAY" => rule.weekday = Some(parse_by_day(value).ok_or_else(unsupported)?),
            "BYMONTHDAY" => {
                rule.month_days = value
                    .split(',')
                    .map(|day| day.trim().parse().map_err(|_| unsupported()))
                    .collect::<Result<_, _>>()?;
            }
            "UNTIL" => rule.until = parse_date_value(value).map(DateValue::wall),
            "COUNT" => rule.count = Some(value.parse().map_err(|_| unsupported())?),
            "WKST" => {}
            "INTERVAL" if value.trim() == "1" => {}
            _ => return Err(unsupported()),
        }
    }
    Ok(rule)
}

/// Parses `-1SU`, `2SU` or `SU` (ordinal 0) into an ordinal and a weekday.
fn parse_by_day(text: &str) -> Option<(i32, Weekday)> {
    let text = text.trim();
    let split = text.len().checked_sub(2)?;
    let (ordinal, day) = text.split_at_checked(split)?;
    let weekday = match day.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    };
    let ordinal = if ordinal.is_empty() {
        0
    } else {
        ordinal.trim_start_matches('+').parse().ok()?
    };
    Some((ordinal, weekday))
}

impl YearlyRule {
    /// Returns the date this rule picks in `year`. VTIMEZONE rules pick at most one a year.
    fn date_in(&self, year: i32, start: NaiveDate) -> Option<NaiveDate> {
        let month = self.month.unwrap_or(start.month());
        let days_in_month = days_in_month(year, month)?;
        let candidates: Vec<NaiveDate> = (1..=days_in_month)
            .filter_map(|day| NaiveDate::from_ymd_opt(year, month, day))
            .filter(|date| self.month_day_matches(*date, days_in_month))
            .collect();

        match self.weekday {
            None if self.month_days.is_empty() => NaiveDate::from_ymd_opt(year, month, start.day()),
            None => candidates.first().copied(),
            Some((ordinal, weekday)) => {
                let matching: Vec<_> = candidates
                    .into_iter()
                    .filter(|date| date.weekday() == weekday)
                    .collect();
                pick_ordinal(&matching, ordinal)
            }
        }
    }

    fn month_day_matches(&self, date: NaiveDate, days_in_month: u32) -> bool {
        let day = date.day() as i32;
        let from_end = day - days_in_month as i32 - 1;
        self.month_days.is_empty() || self.month_days.iter().any(|d| *d == day || *d == from_end)
    }
}

fn pick_ordinal(dates: &[NaiveDate], ordinal: i32) -> Option<NaiveDate> {
    match ordinal {
        0 => dates.first().copied(),
        n if n > 0 => dates.get(usize::try_from(n - 1).ok()?).copied(),
        n => dates
            .len()
            .checked_sub(usize::try_from(-n).ok()?)
            .and_then(|i| dates.get(i))
            .copied(),
    }
}

pub(crate) fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some((next - first).num_days() as u32)
}

/// A change of offset at a UTC instant.
#[derive(Clone, Copy, Debug)]
struct Transition {
    at: NaiveDateTime,
    offset_from: i32,
    offset_to: i32,
}

/// Lists the transitions of `observances` with onsets in `first_year..=last_year`, sorted.
fn transitions(observances: &[Observance], first_year: i32, last_year: i32) -> Vec<Transition> {
    let mut all = Vec::new();
    for observance in observances {
        for onset in onsets(observance, first_year, last_year) {
            let at = onset - Duration::seconds(i64::from(observance.offset_from));
            let (offset_from, offset_to) = (observance.offset_from, observance.offset_to);
            all.push(Transition {
                at,
                offset_from,
                offset_to,
            });
        }
    }
    all.sort_by_key(|transition| transition.at);
    all
}

fn onsets(observance: &Observance, first_year: i32, last_year: i32) -> Vec<NaiveDateTime> {
    let in_range = |wall: &NaiveDateTime| (first_year..=last_year).contains(&wall.year());
    let mut onsets: Vec<NaiveDateTime> = std::iter::once(observance.start)
        .chain(observance.rdates.iter().copied())
        .filter(in_range)
        .collect();

    let Some(rule) = &observance.rule else {
        return onsets;
    };
    let start = observance.start;
    for year in first_year.max(start.year())..=last_year {
        let Some(date) = rule.date_in(year, start.date()) else {
            continue;
        };
        let onset = date.and_time(start.time());
        let index = year - start.year();
        let until_passed = rule.until.is_some_and(|until| {
            onset - Duration::seconds(i64::from(observance.offset_from)) > until
        });
        if onset < start || until_passed || rule.count.is_some_and(|count| index >= count) {
            continue;
        }
        onsets.push(onset);
    }
    onsets.sort();
    onsets.dedup();
    onsets
}

/// Finds the IANA zone whose offsets equal the observances' in `first_year..=last_year`.
fn match_zone(observances: &[Observance], first_year: i32, last_year: i32) -> Result<Tz, String> {
    let changes = transitions(observances, first_year - 1, last_year + 1);
    let offsets: Vec<i32> = changes
        .iter()
        .flat_map(|change| [change.offset_from, change.offset_to])
        .chain(observances.iter().map(|observance| observance.offset_to))
        .collect();
    let fixed = offsets.iter().all(|offset| *offset == offsets[0]);
    if fixed && let Some(zone) = fixed_offset_zone(offsets[0]) {
        return Ok(zone);
    }

    let expected = ExpectedOffsets {
        changes,
        fallback: observances[0].offset_from,
    };
    let names: Vec<&str> = observances
        .iter()
        .filter_map(|o| o.name.as_deref())
        .collect();
    let from = NaiveDate::from_ymd_opt(first_year, 1, 1).ok_or("the years are out of range")?;
    let to = NaiveDate::from_ymd_opt(last_year, 12, 31).ok_or("the years are out of range")?;

    TZ_VARIANTS
        .iter()
        .filter(|zone| expected.matches(**zone, from, to))
        .max_by_key(|zone| zone_preference(**zone, &names, from))
        .copied()
        .ok_or_else(|| {
            format!("no IANA zone has the same offsets and transitions in {first_year}-{last_year}")
        })
}

/// `Etc/GMT-N` for a whole-hour offset east of UTC (the Etc names invert the sign).
fn fixed_offset_zone(offset: i32) -> Option<Tz> {
    if offset % 3600 != 0 {
        return None;
    }
    let hours = -offset / 3600;
    let name = match hours {
        0 => "Etc/GMT".to_string(),
        h => format!("Etc/GMT{h:+}"),
    };
    name.parse().ok()
}

/// Ranks equally good zones: TZNAME abbreviations that agree, then region names over legacy
/// and `Etc/` names, then the alphabetically first name (`max_by_key` keeps the last maximum).
fn zone_preference(
    zone: Tz,
    names: &[&str],
    from: NaiveDate,
) -> (usize, bool, std::cmp::Reverse<&'static str>) {
    let agreeing = names
        .iter()
        .filter(|name| {
            (0..12).any(|month| {
                let at = from
                    .and_hms_opt(12, 0, 0)
                    .map(|t| t + Duration::days(30 * month));
                at.is_some_and(|at| {
                    zone.offset_from_utc_datetime(&at).abbreviation() == Some(**name)
                })
            })
        })
        .count();
    let name = zone.name();
    let regional = name.contains('/') && !name.starts_with("Etc/") && !name.starts_with("US/");
    (agreeing, regional, std::cmp::Reverse(name))
}

/// The offsets a VTIMEZONE gives, as sorted transitions.
struct ExpectedOffsets {
    changes: Vec<Transition>,
    fallback: i32,
}

impl ExpectedOffsets {
    fn offset_at(&self, at: NaiveDateTime) -> i32 {
        let after = self.changes.partition_point(|change| change.at <= at);
        match after.checked_sub(1) {
            Some(index) => self.changes[index].offset_to,
            None => self
                .changes
                .first()
                .map_or(self.fallback, |first| first.offset_from),
        }
    }

    /// Checks that `zone` has the same offset at every noon UTC and around every transition.
    fn matches(&self, zone: Tz, from: NaiveDate, to: NaiveDate) -> bool {
        let offset = |at: NaiveDateTime| {
            Utc.from_utc_datetime(&at)
                .with_timezone(&zone)
                .offset()
                .fix()
                .local_minus_utc()
        };
        let mut day = from;
        while day <= to {
            let noon = day.and_hms_opt(12, 0, 0).unwrap_or_default();
            if offset(noon) != self.offset_at(noon) {
                return false;
            }
            day += Duration::days(1);
        }
        self.changes
            .iter()
            .filter(|change| change.at.date() >= from && change.at.date() <= to)
            .all(|change| {
                offset(change.at - Duration::seconds(1)) == change.offset_from
                    && offset(change.at) == change.offset_to
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    use crate::calendar::ics::component::build_calendar;
    use crate::calendar::ics::lines::content_lines;

    fn calendar(vtimezone: &str) -> Result<Component, IcsError> {
        let text = format!("BEGIN:VCALENDAR\r\n{vtimezone}END:VCALENDAR\r\n");
        build_calendar(content_lines(text.as_bytes())?)
    }

    fn usage(year: i32) -> ZoneUse {
        ZoneUse {
            line: 1,
            first_year: year,
            last_year: year,
        }
    }

    #[test]
    fn customized_zone_matches_london() -> TestResult {
        let cal = calendar(
            "BEGIN:VTIMEZONE\r\nTZID:Customized Time Zone\r\nBEGIN:STANDARD\r\nDTSTART:16010101T020000\r\n\
             RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0000\r\nEND:STANDARD\r\n\
             BEGIN:DAYLIGHT\r\nDTSTART:16010101T010000\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\n\
             TZOFFSETFROM:+0000\r\nTZOFFSETTO:+0100\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n",
        )?;
        let zone = resolve_zone(&cal, "Customized Time Zone", usage(2024))?;
        let summer = NaiveDate::from_ymd_opt(2024, 7, 1)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .ok_or("date")?;
        assert_eq!(
            zone.offset_from_utc_datetime(&summer)
                .fix()
                .local_minus_utc(),
            3600
        );
        Ok(())
    }

    #[test]
    fn zone_without_daylight_becomes_etc_gmt() -> TestResult {
        let cal = calendar(
            "BEGIN:VTIMEZONE\r\nTZID:(GMT+03.00) Somewhere\r\nBEGIN:STANDARD\r\nDTSTART:16010101T000000\r\n\
             TZOFFSETFROM:+0300\r\nTZOFFSETTO:+0300\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n",
        )?;
        let zone = resolve_zone(&cal, "(GMT+03.00) Somewhere", usage(2024))?;
        assert_eq!(zone.name(), "Etc/GMT-3");
        Ok(())
    }

    #[test]
    fn vendor_prefix_resolves_to_iana_suffix() {
        assert_eq!(
            zone_by_name("/mozilla.org/20070129_1/Asia/Tokyo"),
            Some(Tz::Asia__Tokyo)
        );
        assert_eq!(
            zone_by_name("/freeassociation.sourceforge.net/Tzfile/America/Argentina/Buenos_Aires"),
            Some(Tz::America__Argentina__Buenos_Aires)
        );
    }

    #[test]
    fn unknown_tzid_without_vtimezone_is_rejected() -> TestResult {
        let cal = calendar("")?;
        let error = resolve_zone(&cal, "Mars/Olympus", usage(2024))
            .err()
            .ok_or("expected an error")?;
        assert!(error.to_string().contains("Mars/Olympus"), "{error}");
        Ok(())
    }
}
