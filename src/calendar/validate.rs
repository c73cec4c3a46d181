//! Checks that an event or calendar stays within the stated limits before anything is written.

use chrono::{Datelike, Duration, NaiveDateTime, Timelike};

use super::NewCalendar;
use super::event::{EventDetails, NewEvent, Place};
use super::limits::{MAX_DESCRIPTION_CHARS, MAX_LOCATION_CHARS, MAX_RRULE_BYTES, MAX_TITLE_CHARS};
use super::time::Moment;

/// Longest UID, in bytes.
pub const MAX_UID_BYTES: usize = 255;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2_000;
/// Maximum length of a calendar name, in characters.
pub const MAX_CALENDAR_NAME_CHARS: usize = 200;
/// Maximum length of a slug, in bytes.
pub const MAX_SLUG_BYTES: usize = 64;
/// Most RDATE or EXDATE values on one event.
pub const MAX_EXTRA_DATES: usize = 1_000;
/// Most overrides on one event.
pub const MAX_OVERRIDES: usize = 1_000;
/// Largest capacity of one occurrence.
pub const MAX_CAPACITY: i32 = 1_000_000;
/// Maximum length of one occurrence, in days.
pub const MAX_LENGTH_DAYS: i64 = 366;
/// Earliest year of any start, end or recurrence value.
pub const MIN_YEAR: i32 = 1;
/// Latest year of any start, end or recurrence value (iCalendar writes four-digit years).
pub const MAX_YEAR: i32 = 9999;
/// Largest COUNT of a stored RRULE.
pub const MAX_COUNT: u64 = 10_000;
/// Maximum length of one place field, in characters.
pub const MAX_PLACE_FIELD_CHARS: usize = 300;

/// A field that breaks a rule: which field, the value (shortened) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {problem}")]
pub struct InvalidField {
    /// JSON path of the field, e.g. `title` or `place.latitude`.
    pub field: String,
    /// The offending value, cut to 80 characters.
    pub value: String,
    /// The rule or limit it breaks.
    pub problem: String,
}

impl InvalidField {
    /// Builds the error, shortening long values.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "callers pass numbers and string slices alike"
    )]
    pub fn new(field: impl Into<String>, value: impl ToString, problem: impl Into<String>) -> Self {
        let value = value.to_string();
        let value = if value.chars().count() > 80 {
            let head: String = value.chars().take(80).collect();
            format!("{head}…")
        } else {
            value
        };
        InvalidField {
            field: field.into(),
            value,
            problem: problem.into(),
        }
    }
}

/// Checks an event against every limit.
pub fn check_event(event: &NewEvent) -> Result<(), InvalidField> {
    check_uid(&event.uid)?;
    check_details("", &event.details)?;
    check_schedule(event)?;
    if let Some(capacity) = event.capacity
        && !(0..=MAX_CAPACITY).contains(&capacity)
    {
        return Err(InvalidField::new(
            "capacity",
            capacity,
            format!("must be between 0 and {MAX_CAPACITY}"),
        ));
    }
    if event.overrides.len() > MAX_OVERRIDES {
        return Err(InvalidField::new(
            "overrides",
            format!("{} overrides", event.overrides.len()),
            format!("the limit is {MAX_OVERRIDES}"),
        ));
    }
    for (i, o) in event.overrides.iter().enumerate() {
        if let Some(details) = &o.details {
            check_details(&format!("overrides[{i}]."), details)?;
        }
        if let Some(length) = o.length {
            check_length(
                &format!("overrides[{i}].duration"),
                length.days,
                length.seconds,
            )?;
        }
    }
    Ok(())
}

/// Checks a calendar's slug, name and zone.
pub fn check_calendar(calendar: &NewCalendar) -> Result<(), InvalidField> {
    check_slug(&calendar.slug)?;
    let name = calendar.name.trim();
    if name.is_empty() {
        return Err(InvalidField::new(
            "name",
            &calendar.name,
            "must not be empty",
        ));
    }
    check_chars("name", &calendar.name, MAX_CALENDAR_NAME_CHARS)
}

/// Checks a slug: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
pub fn check_slug(slug: &str) -> Result<(), InvalidField> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let starts_well = slug
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if slug.len() > MAX_SLUG_BYTES || !starts_well || !slug.chars().all(allowed) {
        return Err(InvalidField::new(
            "slug",
            slug,
            format!(
                "must be 1 to {MAX_SLUG_BYTES} of a-z, 0-9, '-' and '_', \
                 starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn check_uid(uid: &str) -> Result<(), InvalidField> {
    if uid.trim().is_empty() {
        return Err(InvalidField::new("uid", uid, "must not be empty"));
    }
    if uid.len() > MAX_UID_BYTES {
        return Err(InvalidField::new(
            "uid",
            uid,
            format!("is {} bytes, the limit is {MAX_UID_BYTES}", uid.len()),
        ));
    }
    if uid.chars().any(char::is_control) {
        return Err(InvalidField::new(
            "uid",
            uid,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_details(prefix: &str, details: &EventDetails) -> Result<(), InvalidField> {
    let field = |name: &str| format!("{prefix}{name}");
    // An empty title is allowed here because iCalendar makes SUMMARY optional; the API requires
    // one when an event is created or changed.
    check_chars(&field("title"), &details.title, MAX_TITLE_CHARS)?;
    if let Some(text) = &details.description {
        check_chars(&field("description"), text, MAX_DESCRIPTION_CHARS)?;
    }
    if let Some(text) = &details.location {
        check_chars(&field("location"), text, MAX_LOCATION_CHARS)?;
    }
    if let Some(url) = &details.online_url {
        check_url(&field("online_url"), url)?;
    }
    if let Some(place) = &details.place {
        check_place(&field("place."), place)?;
    }
    Ok(())
}

fn check_place(prefix: &str, place: &Place) -> Result<(), InvalidField> {
    let texts = [
        ("name", &place.name),
        ("street", &place.street),
        ("locality", &place.locality),
        ("region", &place.region),
        ("postal_code", &place.postal_code),
        ("country", &place.country),
    ];
    for (name, value) in texts {
        if let Some(value) = value {
            check_chars(&format!("{prefix}{name}"), value, MAX_PLACE_FIELD_CHARS)?;
        }
    }
    if let Some(lat) = place.latitude
        && !(-90.0..=90.0).contains(&lat)
    {
        let field = format!("{prefix}latitude");
        return Err(InvalidField::new(field, lat, "must be between -90 and 90"));
    }
    if let Some(lon) = place.longitude
        && !(-180.0..=180.0).contains(&lon)
    {
        let field = format!("{prefix}longitude");
        return Err(InvalidField::new(
            field,
            lon,
            "must be between -180 and 180",
        ));
    }
    Ok(())
}

fn check_schedule(event: &NewEvent) -> Result<(), InvalidField> {
    let schedule = &event.schedule;
    check_length("duration", schedule.length.days, schedule.length.seconds)?;
    check_wall("start", schedule.start)?;
    check_wall(
        "end",
        schedule.start
            + Duration::days(schedule.length.days)
            + Duration::seconds(schedule.length.seconds),
    )?;
    if let Some(rule) = &schedule.rrule {
        if rule.len() > MAX_RRULE_BYTES {
            return Err(InvalidField::new(
                "rrule",
                rule,
                format!("is {} bytes, the limit is {MAX_RRULE_BYTES}", rule.len()),
            ));
        }
        check_count(rule)?;
    }
    for (field, count) in [
        ("rdate", schedule.rdates.len()),
        ("exdate", schedule.exdates.len()),
    ] {
        if count > MAX_EXTRA_DATES {
            return Err(InvalidField::new(
                field,
                format!("{count} values"),
                format!("the limit is {MAX_EXTRA_DATES}"),
            ));
        }
    }
    for (i, rdate) in schedule.rdates.iter().enumerate() {
        check_moment(&format!("rdate[{i}]"), rdate.at)?;
    }
    for (i, exdate) in schedule.exdates.iter().enumerate() {
        check_moment(&format!("exdate[{i}]"), *exdate)?;
    }
    for (i, o) in event.overrides.iter().enumerate() {
        check_moment(&format!("overrides[{i}].recurrence_id"), o.recurrence_id)?;
        if let Some(start) = o.start {
            check_wall(&format!("overrides[{i}].start"), start)?;
        }
    }
    Ok(())
}

/// Checks that a wall time lies in years 1 to 9999 (what iCalendar can write) and has no
/// fraction of a second (which RRULE instances and occurrence ids cannot carry).
pub fn check_wall(field: &str, wall: NaiveDateTime) -> Result<(), InvalidField> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&wall.year()) {
        return Err(InvalidField::new(
            field,
            wall,
            format!("must fall in the years {MIN_YEAR} to {MAX_YEAR}"),
        ));
    }
    if wall.nanosecond() != 0 {
        return Err(InvalidField::new(
            field,
            wall,
            "must be a whole second: fractions and leap seconds are not supported",
        ));
    }
    Ok(())
}

fn check_moment(field: &str, moment: Moment) -> Result<(), InvalidField> {
    match moment {
        Moment::Wall(wall) => check_wall(field, wall),
        Moment::Utc(instant) => check_wall(field, instant.naive_utc()),
    }
}

/// Bounds COUNT, because a window after a counted series' start is only found by walking every
/// instance from the first one.
fn check_count(rule: &str) -> Result<(), InvalidField> {
    for (name, value) in rule_parts(rule) {
        if name == "COUNT" && value.parse::<u64>().is_ok_and(|count| count > MAX_COUNT) {
            return Err(InvalidField::new(
                "rrule",
                rule,
                format!("COUNT is {value}, the limit is {MAX_COUNT}"),
            ));
        }
    }
    Ok(())
}

/// Splits an RRULE value into its `NAME=VALUE` parts, names upper-cased and both trimmed.
/// Parts without `=` are skipped: the recurrence parser reports them.
pub(super) fn rule_parts(rule: &str) -> impl Iterator<Item = (String, String)> + '_ {
    rule.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(name, value)| (name.trim().to_ascii_uppercase(), value.trim().to_owned()))
}

fn check_length(field: &str, days: i64, seconds: i64) -> Result<(), InvalidField> {
    let total_days = days.saturating_add(seconds / 86_400);
    if days < 0 || seconds < 0 || total_days > MAX_LENGTH_DAYS {
        return Err(InvalidField::new(
            field,
            format!("{days} days {seconds} seconds"),
            format!("must be between zero and {MAX_LENGTH_DAYS} days"),
        ));
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), InvalidField> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > MAX_URL_BYTES || url.chars().any(char::is_whitespace) {
        return Err(InvalidField::new(
            field,
            url,
            format!("must be an http or https URL of at most {MAX_URL_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a text field's length in characters and that it has no control characters other
/// than tab and line breaks.
pub fn check_chars(field: &str, text: &str, limit: usize) -> Result<(), InvalidField> {
    let count = text.chars().count();
    if count > limit {
        return Err(InvalidField::new(
            field,
            text,
            format!("is {count} characters, the limit is {limit}"),
        ));
    }
    if let Some(control) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(InvalidField::new(
            field,
            text,
            format!(
                "contains the control character U+{:04X}; only tab and line breaks are allowed",
                u32::from(control)
            ),
        ));
    }
    Ok(())
}
