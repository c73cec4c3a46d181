//! Property value types: DATE, DATE-TIME, DURATION, UTC-OFFSET and TEXT (RFC 5545 section 3.3).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::calendar::time::EventLength;

/// A DATE or DATE-TIME value as written, before a zone is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DateValue {
    /// `20240312`.
    Date(NaiveDate),
    /// `20240312T190000`: floating, or local in the TZID parameter's zone.
    Local(NaiveDateTime),
    /// `20240312T190000Z`.
    Utc(NaiveDateTime),
}

impl DateValue {
    /// Returns the wall time (midnight for a date).
    pub fn wall(self) -> NaiveDateTime {
        match self {
            DateValue::Date(date) => date.and_time(NaiveTime::MIN),
            DateValue::Local(wall) | DateValue::Utc(wall) => wall,
        }
    }
}

/// Parses a DATE (`YYYYMMDD`) or DATE-TIME (`YYYYMMDDTHHMMSS[Z]`).
pub(crate) fn parse_date_value(text: &str) -> Option<DateValue> {
    let text = text.trim();
    if text.len() == 8 {
        return parse_date(text).map(DateValue::Date);
    }
    let (date, time) = text.split_once(['T', 't'])?;
    let date = parse_date(date)?;
    let (time, utc) = match time.strip_suffix(['Z', 'z']) {
        Some(time) => (time, true),
        None => (time, false),
    };
    if time.len() != 6 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hour = time[0..2].parse().ok()?;
    let minute = time[2..4].parse().ok()?;
    // A leap second (60) is read as 59, because chrono has no 23:59:60 in a NaiveTime we can add to.
    let second = time[4..6].parse::<u32>().ok()?.min(59);
    let wall = date.and_time(NaiveTime::from_hms_opt(hour, minute, second)?);
    Some(if utc {
        DateValue::Utc(wall)
    } else {
        DateValue::Local(wall)
    })
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = text[0..4].parse().ok()?;
    let month = text[4..6].parse().ok()?;
    let day = text[6..8].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// Parses a non-negative DURATION (`P1W`, `P1DT2H`, `PT90M`) into nominal days and exact
/// seconds. Returns `None` for a negative or malformed value.
pub(crate) fn parse_duration(text: &str) -> Option<EventLength> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let body = text.strip_prefix(['P', 'p'])?;
    let (date_part, time_part) = match body.split_once(['T', 't']) {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };

    let mut length = EventLength::default();
    let mut any = false;
    for (amount, unit) in duration_fields(date_part)? {
        length.days += match unit {
            'W' => amount.checked_mul(7)?,
            'D' => amount,
            _ => return None,
        };
        any = true;
    }
    if let Some(time_part) = time_part {
        let fields = duration_fields(time_part)?;
        if fields.is_empty() {
            return None;
        }
        for (amount, unit) in fields {
            let factor = match unit {
                'H' => 3600,
                'M' => 60,
                'S' => 1,
                _ => return None,
            };
            length.seconds = length.seconds.checked_add(amount.checked_mul(factor)?)?;
            any = true;
        }
    }
    any.then_some(length)
}

/// Splits `1W2D` into `[(1, 'W'), (2, 'D')]`.
fn duration_fields(text: &str) -> Option<Vec<(i64, char)>> {
    let mut fields = Vec::new();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        fields.push((digits.parse().ok()?, c.to_ascii_uppercase()));
        digits.clear();
    }
    digits.is_empty().then_some(fields)
}

/// Parses a UTC-OFFSET (`+0100`, `-0430`, `+053000`) into seconds east of UTC.
pub(crate) fn parse_utc_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    let (sign, digits) = match text.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[0..2].parse().ok()?;
    let minutes: i32 = digits[2..4].parse().ok()?;
    let seconds: i32 = digits.get(4..6).map_or(Some(0), |s| s.parse().ok())?;
    Some(sign * (hours * 3600 + minutes * 60 + seconds))
}

/// Unescapes a TEXT value: `\\`, `\;`, `\,`, `\n` and `\N`; any other backslash stays as it is.
pub(crate) fn unescape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(escaped @ ('\\' | ';' | ',')) => out.push(escaped),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_keeps_days_nominal_and_hours_exact() {
        assert_eq!(
            parse_duration("P1D"),
            Some(EventLength {
                days: 1,
                seconds: 0
            })
        );
        assert_eq!(
            parse_duration("PT24H"),
            Some(EventLength {
                days: 0,
                seconds: 86_400
            })
        );
        assert_eq!(
            parse_duration("P1W"),
            Some(EventLength {
                days: 7,
                seconds: 0
            })
        );
        assert_eq!(
            parse_duration("P1DT1H30M"),
            Some(EventLength {
                days: 1,
                seconds: 5400
            })
        );
        assert_eq!(parse_duration("-PT1H"), None);
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_duration("P"), None);
    }

    #[test]
    fn text_unescape_keeps_unknown_escapes() {
        assert_eq!(unescape_text(r"a\;b\,c\\d\ne\Nf"), "a;b,c\\d\ne\nf");
        assert_eq!(unescape_text(r"C:\\new\\temp \x"), r"C:\new\temp \x");
    }

    #[test]
    fn date_values_reject_impossible_dates() {
        assert_eq!(parse_date_value("20241301"), None);
        assert_eq!(parse_date_value("20230229"), None);
        assert!(matches!(
            parse_date_value("20240229T120000Z"),
            Some(DateValue::Utc(_))
        ));
    }

    #[test]
    fn utc_offset_reads_sign_and_seconds() {
        assert_eq!(parse_utc_offset("-0430"), Some(-16_200));
        assert_eq!(parse_utc_offset("+053000"), Some(19_800));
        assert_eq!(parse_utc_offset("0100"), None);
    }
}
