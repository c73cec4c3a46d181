//! Parsing and checking of an RRULE value before any expansion.
//!
//! The rrule crate parses and validates the rule too, but it accepts `INTERVAL=0`, COUNT together
//! with UNTIL and lists of any size, and it reads UNTIL in its own way. So the value is first
//! split here into its parts, checked against RFC 5545 section 3.3.10 and our limits, and UNTIL
//! and COUNT are taken out: the expansion applies both itself.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use rrule::Frequency;

use super::{MAX_LIST_VALUES, MAX_RULE_BYTES, RecurrenceError};

/// Rule parts that RFC 5545 defines for RRULE.
const KNOWN_PARTS: [&str; 14] = [
    "FREQ",
    "UNTIL",
    "COUNT",
    "INTERVAL",
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
    "BYSETPOS",
    "WKST",
];

/// A checked RRULE, with UNTIL and COUNT held apart from the parts given to the crate.
#[derive(Clone, Debug)]
pub(super) struct Rule {
    pub freq: Frequency,
    pub interval: u32,
    pub count: Option<u32>,
    /// UNTIL as written; its reading depends on the start's basis.
    pub until: Option<String>,
    pub week_start: Weekday,
    /// Upper-cased `NAME=VALUE` parts other than UNTIL and COUNT, in their original order.
    pub parts: Vec<(String, String)>,
    pub by: ByLists,
}

/// The `BYxxx` lists as numbers.
#[derive(Clone, Debug, Default)]
pub(super) struct ByLists {
    pub month: Vec<u32>,
    pub month_day: Vec<i32>,
    pub year_day: Vec<i32>,
    pub week_no: Vec<i32>,
    /// Weekdays with their optional ordinal (`-1FR` is `(Some(-1), Fri)`).
    pub day: Vec<(Option<i32>, Weekday)>,
    pub hour: Vec<u32>,
    pub minute: Vec<u32>,
    pub second: Vec<u32>,
    pub set_pos: Vec<i32>,
}

impl ByLists {
    /// Returns whether any part that selects days (rather than times) is present.
    pub fn selects_days(&self) -> bool {
        !(self.month_day.is_empty()
            && self.year_day.is_empty()
            && self.week_no.is_empty()
            && self.day.is_empty())
    }
}

impl Rule {
    /// Parses and checks an RRULE value (without the `RRULE:` prefix).
    pub fn parse(text: &str) -> Result<Rule, RecurrenceError> {
        if text.len() > MAX_RULE_BYTES {
            return Err(RecurrenceError::RuleTooLong {
                length: text.len(),
                limit: MAX_RULE_BYTES,
            });
        }

        let parts = split_parts(text)?;
        let mut rule = Rule {
            freq: Frequency::Daily,
            interval: 1,
            count: None,
            until: None,
            week_start: Weekday::Mon,
            parts: Vec::new(),
            by: ByLists::default(),
        };
        let mut has_freq = false;
        for (name, value) in parts {
            has_freq |= name == "FREQ";
            rule.read_part(&name, &value)?;
            if name != "UNTIL" && name != "COUNT" {
                rule.parts.push((name, value));
            }
        }

        if !has_freq {
            return Err(RecurrenceError::MissingFreq);
        }
        if rule.count.is_some() && rule.until.is_some() {
            return Err(RecurrenceError::CountWithUntil);
        }
        rule.check_combinations()?;
        Ok(rule)
    }

    /// Writes the parts as an RRULE value for the crate, with extra parts appended.
    pub fn crate_text(&self, extra: &[(String, String)]) -> String {
        self.parts
            .iter()
            .chain(extra)
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Checks whether `date` lies in a week that BYWEEKNO lists (true when there is no BYWEEKNO).
    ///
    /// rrule 0.14, like python-dateutil, counts a week 53 in years that have only 52 weeks
    /// (YEARLY;BYWEEKNO=53;WKST=SU gives 2027-01-02 for 2026), so its instances are checked
    /// against RFC 5545: week 1 is the first week, starting on WKST, with at least four days in
    /// the year.
    pub fn week_matches(&self, date: NaiveDate) -> bool {
        if self.by.week_no.is_empty() {
            return true;
        }

        let week_start =
            date - Duration::days(i64::from(date.weekday().days_since(self.week_start)));
        let mut year = date.year();
        if week_start < first_week_start(year, self.week_start) {
            year -= 1;
        } else if week_start >= first_week_start(year + 1, self.week_start) {
            year += 1;
        }
        let first = first_week_start(year, self.week_start);
        let week = (week_start - first).num_weeks() + 1;
        let weeks_in_year = (first_week_start(year + 1, self.week_start) - first).num_weeks();
        self.by.week_no.iter().any(|listed| {
            let listed = i64::from(*listed);
            listed == week || weeks_in_year + listed + 1 == week
        })
    }

    /// Returns whether the rule repeats more often than daily.
    pub fn is_sub_daily(&self) -> bool {
        matches!(
            self.freq,
            Frequency::Hourly | Frequency::Minutely | Frequency::Secondly
        )
    }

    fn read_part(&mut self, name: &str, value: &str) -> Result<(), RecurrenceError> {
        let by = &mut self.by;
        match name {
            "FREQ" => self.freq = parse_freq(value)?,
            "UNTIL" => self.until = Some(value.to_owned()),
            "COUNT" => self.count = Some(parse_number(name, value, 1, i64::from(u32::MAX))? as u32),
            "INTERVAL" => {
                self.interval = parse_number(name, value, 1, i64::from(u16::MAX))? as u32;
            }
            "WKST" => self.week_start = parse_weekday(name, value)?,
            "BYSECOND" => by.second = parse_list(name, value, 0, 60, false)?,
            "BYMINUTE" => by.minute = parse_list(name, value, 0, 59, false)?,
            "BYHOUR" => by.hour = parse_list(name, value, 0, 23, false)?,
            "BYMONTH" => by.month = parse_list(name, value, 1, 12, false)?,
            "BYMONTHDAY" => by.month_day = parse_list(name, value, 1, 31, true)?,
            "BYYEARDAY" => by.year_day = parse_list(name, value, 1, 366, true)?,
            "BYWEEKNO" => by.week_no = parse_list(name, value, 1, 53, true)?,
            "BYSETPOS" => by.set_pos = parse_list(name, value, 1, 366, true)?,
            "BYDAY" => by.day = parse_days(value)?,
            _ => {
                return Err(RecurrenceError::UnknownPart {
                    name: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Rejects parts that RFC 5545 forbids for the rule's FREQ.
    fn check_combinations(&self) -> Result<(), RecurrenceError> {
        let freq = self.freq;
        if !self.by.week_no.is_empty() && freq != Frequency::Yearly {
            return Err(invalid("BYWEEKNO", "", "only allowed with FREQ=YEARLY"));
        }
        let numbered_day = self.by.day.iter().any(|(ordinal, _)| ordinal.is_some());
        if numbered_day && !matches!(freq, Frequency::Monthly | Frequency::Yearly) {
            return Err(invalid(
                "BYDAY",
                "",
                "a numbered weekday needs FREQ=MONTHLY or YEARLY",
            ));
        }
        if !self.by.month_day.is_empty() && freq == Frequency::Weekly {
            return Err(invalid("BYMONTHDAY", "", "not allowed with FREQ=WEEKLY"));
        }
        let year_day_allowed = !matches!(
            freq,
            Frequency::Daily | Frequency::Weekly | Frequency::Monthly
        );
        if !self.by.year_day.is_empty() && !year_day_allowed {
            return Err(invalid(
                "BYYEARDAY",
                "",
                "not allowed with FREQ=DAILY, WEEKLY or MONTHLY",
            ));
        }
        Ok(())
    }
}

/// Start of week 1 of `year`: the first week starting on `week_start` with four days in `year`.
fn first_week_start(year: i32, week_start: Weekday) -> NaiveDate {
    let january_first = NaiveDate::from_yo_opt(year, 1).unwrap_or(NaiveDate::MIN);
    let back = i64::from(january_first.weekday().days_since(week_start));
    let start = january_first - Duration::days(back);
    if back > 3 {
        start + Duration::weeks(1)
    } else {
        start
    }
}

/// Splits `NAME=VALUE;...` into upper-cased pairs, rejecting unknown and repeated names.
fn split_parts(text: &str) -> Result<Vec<(String, String)>, RecurrenceError> {
    let mut parts: Vec<(String, String)> = Vec::new();
    // An empty part (a trailing `;`) is common in exported files and carries nothing.
    for part in text.trim().split(';').filter(|part| !part.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(RecurrenceError::MalformedPart {
                part: part.to_owned(),
            });
        };
        let name = name.trim().to_ascii_uppercase();
        if !KNOWN_PARTS.contains(&name.as_str()) {
            return Err(RecurrenceError::UnknownPart { name });
        }
        if parts.iter().any(|(seen, _)| *seen == name) {
            return Err(RecurrenceError::RepeatedPart { name });
        }
        parts.push((name, value.trim().to_ascii_uppercase()));
    }
    Ok(parts)
}

fn invalid(name: &str, value: &str, reason: &str) -> RecurrenceError {
    RecurrenceError::InvalidValue {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_freq(value: &str) -> Result<Frequency, RecurrenceError> {
    match value {
        "YEARLY" => Ok(Frequency::Yearly),
        "MONTHLY" => Ok(Frequency::Monthly),
        "WEEKLY" => Ok(Frequency::Weekly),
        "DAILY" => Ok(Frequency::Daily),
        "HOURLY" => Ok(Frequency::Hourly),
        "MINUTELY" => Ok(Frequency::Minutely),
        "SECONDLY" => Ok(Frequency::Secondly),
        _ => Err(invalid(
            "FREQ",
            value,
            "expected YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY or SECONDLY",
        )),
    }
}

fn parse_number(name: &str, value: &str, min: i64, max: i64) -> Result<i64, RecurrenceError> {
    let number: i64 = value
        .parse()
        .map_err(|_| invalid(name, value, "expected an integer"))?;
    if number < min || number > max {
        return Err(invalid(
            name,
            value,
            &format!("must be within {min}..={max}"),
        ));
    }
    Ok(number)
}

/// Parses a comma-separated list within `min..=max`, or also `-max..=-min` when `signed`.
fn parse_list<T: TryFrom<i64>>(
    name: &str,
    value: &str,
    min: i64,
    max: i64,
    signed: bool,
) -> Result<Vec<T>, RecurrenceError> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > MAX_LIST_VALUES {
        return Err(RecurrenceError::TooManyValues {
            name: name.to_owned(),
            count: items.len(),
            limit: MAX_LIST_VALUES,
        });
    }

    let mut numbers = Vec::with_capacity(items.len());
    for item in items {
        let number: i64 = item
            .trim_start_matches('+')
            .parse()
            .map_err(|_| invalid(name, item, "expected an integer"))?;
        let in_range = (min..=max).contains(&number) || (signed && (-max..=-min).contains(&number));
        if !in_range {
            let range = if signed {
                format!("{min}..={max} or -{max}..=-{min}")
            } else {
                format!("{min}..={max}")
            };
            return Err(invalid(name, item, &format!("must be within {range}")));
        }
        numbers.push(T::try_from(number).map_err(|_| invalid(name, item, "out of range"))?);
    }
    Ok(numbers)
}

fn parse_weekday(name: &str, value: &str) -> Result<Weekday, RecurrenceError> {
    match value {
        "MO" => Ok(Weekday::Mon),
        "TU" => Ok(Weekday::Tue),
        "WE" => Ok(Weekday::Wed),
        "TH" => Ok(Weekday::Thu),
        "FR" => Ok(Weekday::Fri),
        "SA" => Ok(Weekday::Sat),
        "SU" => Ok(Weekday::Sun),
        _ => Err(invalid(
            name,
            value,
            "expected MO, TU, WE, TH, FR, SA or SU",
        )),
    }
}

/// Parses BYDAY items such as `MO`, `1FR` and `-1SU`.
fn parse_days(value: &str) -> Result<Vec<(Option<i32>, Weekday)>, RecurrenceError> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > MAX_LIST_VALUES {
        return Err(RecurrenceError::TooManyValues {
            name: "BYDAY".to_owned(),
            count: items.len(),
            limit: MAX_LIST_VALUES,
        });
    }

    let mut days = Vec::with_capacity(items.len());
    for item in items {
        let split = item.len().saturating_sub(2);
        let (ordinal, code) = item.split_at_checked(split).unwrap_or(("", item));
        let weekday =
            parse_weekday("BYDAY", code).map_err(|_| invalid("BYDAY", item, "unknown weekday"))?;
        let ordinal = if ordinal.is_empty() {
            None
        } else {
            let number =
                parse_number("BYDAY", ordinal.trim_start_matches('+'), -53, 53).map_err(|_| {
                    invalid(
                        "BYDAY",
                        item,
                        "the ordinal must be within 1..=53 or -53..=-1",
                    )
                })?;
            if number == 0 {
                return Err(invalid("BYDAY", item, "the ordinal must not be 0"));
            }
            Some(number as i32)
        };
        days.push((ordinal, weekday));
    }
    Ok(days)
}
