//! The line format of the `expand` command: one recurrence case in, one result line out.
//!
//! A case is a JSON object with `id`, `dtstart` (`YYYYMMDD`, `YYYYMMDDTHHMMSS` or
//! `YYYYMMDDTHHMMSSZ`), `tzid`, `all_day`, `rrule` (or `rrule_b64` for raw bytes), `rdate`,
//! `exdate`, `window` (`{"from", "to"}` in RFC 3339) and `limit`. The result is
//! `{"id": .., "instances": [..]}` or `{"id": .., "error": ".."}`. Instances are written in the
//! case's own terms: zoned as local time with its offset, UTC with `Z`, floating without an
//! offset, all-day as a date.

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::{Instance, MAX_INSTANCES, Recurrence};
use crate::calendar::time::{Moment, TimeBasis, Window};

/// Expands one case line and returns the result line (without a newline). Never panics: a
/// malformed line gives an error line, with id `""` when the id cannot be read.
pub fn expand_corpus_line(line: &[u8]) -> String {
    let case: Value = match serde_json::from_slice(line) {
        Ok(case) => case,
        Err(error) => return error_line("", &format!("invalid case line: {error}")),
    };
    let id = case.get("id").and_then(Value::as_str).unwrap_or_default();

    match run_case(&case) {
        Ok(instances) => json!({ "id": id, "instances": instances }).to_string(),
        Err(message) => error_line(id, &message),
    }
}

fn error_line(id: &str, message: &str) -> String {
    json!({ "id": id, "error": message }).to_string()
}

fn run_case(case: &Value) -> Result<Vec<String>, String> {
    let basis = read_basis(case)?;
    let dtstart = case
        .get("dtstart")
        .and_then(Value::as_str)
        .ok_or("dtstart is missing")?;
    let recurrence = Recurrence {
        start: read_wall(dtstart)
            .map_err(|()| format!("dtstart {dtstart:?} is invalid"))?
            .0,
        basis,
        rrule: read_rule(case)?,
        rdates: read_moments(case, "rdate")?,
        exdates: read_moments(case, "exdate")?,
    };
    let limit = match case.get("limit") {
        None | Some(Value::Null) => MAX_INSTANCES,
        Some(value) => value
            .as_u64()
            .ok_or("limit must be a non-negative integer")? as usize,
    };

    let expansion = recurrence
        .expand(read_window(case)?, limit)
        .map_err(|error| error.to_string())?;
    Ok(expansion
        .instances
        .iter()
        .map(|instance| format_instance(*instance, basis))
        .collect())
}

fn read_basis(case: &Value) -> Result<TimeBasis, String> {
    let all_day = case
        .get("all_day")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let dtstart = case
        .get("dtstart")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match case.get("tzid").and_then(Value::as_str) {
        _ if all_day => Ok(TimeBasis::AllDay),
        _ if dtstart.ends_with('Z') => Ok(TimeBasis::Utc),
        Some(name) => name
            .parse::<Tz>()
            .map(TimeBasis::Zoned)
            .map_err(|_| format!("tzid {name:?} is not a known IANA zone")),
        None => Ok(TimeBasis::Floating),
    }
}

/// The rule text, decoding `rrule_b64` when present; raw bytes must be UTF-8.
fn read_rule(case: &Value) -> Result<Option<String>, String> {
    if let Some(encoded) = case.get("rrule_b64").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| format!("rrule_b64 is not valid base64: {error}"))?;
        return String::from_utf8(bytes).map(Some).map_err(|error| {
            format!(
                "rrule is not valid UTF-8: invalid byte at offset {}",
                error.utf8_error().valid_up_to()
            )
        });
    }
    Ok(case.get("rrule").and_then(Value::as_str).map(str::to_owned))
}

/// Reads a basic-form value. The flag is true when the value ended in `Z`.
fn read_wall(value: &str) -> Result<(NaiveDateTime, bool), ()> {
    if let Some(text) = value.strip_suffix('Z') {
        return NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S")
            .map(|wall| (wall, true))
            .map_err(|_| ());
    }
    if value.len() == 8 {
        return NaiveDate::parse_from_str(value, "%Y%m%d")
            .map(|date| (date.and_time(NaiveTime::MIN), false))
            .map_err(|_| ());
    }
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S")
        .map(|wall| (wall, false))
        .map_err(|_| ())
}

fn read_moments(case: &Value, field: &str) -> Result<Vec<Moment>, String> {
    let Some(values) = case.get(field).and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    values
        .iter()
        .map(|value| {
            let text = value.as_str().unwrap_or_default();
            match read_wall(text) {
                Ok((wall, true)) => Ok(Moment::Utc(wall.and_utc())),
                Ok((wall, false)) => Ok(Moment::Wall(wall)),
                Err(()) => Err(format!("{field} value {value} is invalid")),
            }
        })
        .collect()
}

fn read_window(case: &Value) -> Result<Option<Window>, String> {
    let Some(window) = case.get("window").filter(|window| !window.is_null()) else {
        return Ok(None);
    };
    let bound = |name: &str| -> Result<DateTime<Utc>, String> {
        let text = window.get(name).and_then(Value::as_str).unwrap_or_default();
        DateTime::parse_from_rfc3339(text)
            .map(|instant| instant.with_timezone(&Utc))
            .map_err(|_| format!("window.{name} {text:?} is not an RFC 3339 time"))
    };
    Ok(Some(Window {
        from: bound("from")?,
        to: bound("to")?,
    }))
}

fn format_instance(instance: Instance, basis: TimeBasis) -> String {
    match basis {
        TimeBasis::Zoned(tz) => instance
            .utc
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        TimeBasis::Utc => instance.utc.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        TimeBasis::Floating => instance.wall.format("%Y-%m-%dT%H:%M:%S").to_string(),
        TimeBasis::AllDay => instance.wall.format("%Y-%m-%d").to_string(),
    }
}
