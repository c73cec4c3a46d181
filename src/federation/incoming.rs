//! Reading what peers send: bounded JSON, activity envelopes and `Event` objects in the
//! shapes Mobilizon, Gancio, Friendica, Hubzilla, WordPress Event Bridge and rose-events use.
//!
//! Each reader names the field and the value it could not use, so the inbox can return a
//! problem that shows the sender what to fix.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::calendar::event::{EventStatus, Place};
use crate::calendar::validate::InvalidField;

/// Deepest JSON nesting accepted. Real activities nest about six levels.
pub const MAX_JSON_DEPTH: usize = 32;
/// Maximum title length kept, in characters; longer titles are cut.
const MAX_TITLE_CHARS: usize = 500;
/// Maximum length kept of other text fields, in characters; longer values are cut.
const MAX_TEXT_CHARS: usize = 2_000;

/// Maximum length of a link kept from a peer, in bytes; longer links are dropped.
const MAX_URL_BYTES: usize = 2_000;

/// Parses JSON and rejects documents nested deeper than [`MAX_JSON_DEPTH`].
pub fn parse_bounded_json(bytes: &[u8]) -> Result<Value, String> {
    check_depth(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Counts bracket nesting outside strings, so depth is checked before anything is built.
pub fn check_depth(bytes: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(format!(
                        "JSON is nested deeper than the limit of {MAX_JSON_DEPTH} levels"
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Returns the id of a value that is either a URL string or an object with an `id`.
pub fn id_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(map) => map.get("id").and_then(Value::as_str),
        Value::Array(items) => items.first().and_then(id_of),
        _ => None,
    }
}

/// Returns the `type` of an object; the first one when it is an array.
pub fn type_of(value: &Value) -> Option<&str> {
    match value.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(items) => items.first().and_then(Value::as_str),
        _ => None,
    }
}

/// The envelope every activity must have.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Activity id.
    pub id: String,
    /// Activity type.
    pub kind: String,
    /// The actor's id.
    pub actor: String,
}

/// Reads `id`, `type` and `actor` of an activity.
pub fn envelope(activity: &Value) -> Result<Envelope, InvalidField> {
    let field = |name: &str| {
        activity
            .get(name)
            .ok_or_else(|| InvalidField::new(name, "", "is missing"))
    };
    let id = field("id")?
        .as_str()
        .ok_or_else(|| InvalidField::new("id", activity["id"].to_string(), "must be a URL"))?;
    let kind = type_of(activity)
        .ok_or_else(|| InvalidField::new("type", activity["type"].to_string(), "is missing"))?;
    let actor = id_of(field("actor")?).ok_or_else(|| {
        InvalidField::new(
            "actor",
            activity["actor"].to_string(),
            "must be an actor id",
        )
    })?;
    for (name, value) in [("id", id), ("actor", actor)] {
        if url::Url::parse(value).is_err() {
            return Err(InvalidField::new(name, value, "must be an absolute URL"));
        }
    }
    Ok(Envelope {
        id: id.to_owned(),
        kind: kind.to_owned(),
        actor: actor.to_owned(),
    })
}

/// An `Event` as we store it from a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEventData {
    /// Object id.
    pub object_id: String,
    /// The actor it is attributed to (first of `attributedTo`), or the sender.
    pub attributed_to: Option<String>,
    /// Title.
    pub title: String,
    /// Human-facing page.
    pub url: Option<String>,
    /// IANA zone, when the peer sent one we know.
    pub zone: Option<Tz>,
    /// Start instant.
    pub start: DateTime<Utc>,
    /// End instant, when sent.
    pub end: Option<DateTime<Utc>>,
    /// Place, when one physical location was sent.
    pub place: Option<Place>,
    /// Online link.
    pub online_url: Option<String>,
    /// Seats, `None` for unlimited (absent or 0, as Mobilizon writes unlimited).
    pub capacity: Option<i32>,
    /// Seats left, when sent.
    pub remaining_capacity: Option<i32>,
    /// Status.
    pub status: EventStatus,
    /// Recurrence in our own terms (`rose:rrule` with `rose:dtstart`), when sent.
    pub recurrence: Option<RemoteRecurrence>,
    /// The series an occurrence object belongs to (`rose:series`), when sent.
    pub series: Option<String>,
    /// The occurrence's original start in its series (`rose:recurrenceId`), when sent.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// `updated`, else `published`: the version used to decide what is newer.
    pub version: Option<DateTime<Utc>>,
}

/// Holds a peer's event to the limits of local ones: years 1 to 9999 and at most
/// [`MAX_LENGTH_DAYS`](crate::calendar::validate::MAX_LENGTH_DAYS) long.
fn check_bounds(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Result<(), InvalidField> {
    use crate::calendar::validate::{MAX_LENGTH_DAYS, MAX_YEAR, MIN_YEAR};
    use chrono::Datelike;

    for (field, instant) in [("object.startTime", Some(start)), ("object.endTime", end)] {
        if let Some(instant) = instant
            && !(MIN_YEAR..=MAX_YEAR).contains(&instant.year())
        {
            return Err(InvalidField::new(
                field,
                instant.to_rfc3339(),
                format!("must fall in the years {MIN_YEAR} to {MAX_YEAR}"),
            ));
        }
    }
    if let Some(end) = end
        && end - start > chrono::Duration::days(MAX_LENGTH_DAYS)
    {
        return Err(InvalidField::new(
            "object.endTime",
            end.to_rfc3339(),
            format!("is more than {MAX_LENGTH_DAYS} days after startTime"),
        ));
    }
    Ok(())
}

/// Holds a peer's texts to the limits of local ones.
fn check_text(data: &RemoteEventData) -> Result<(), InvalidField> {
    use crate::calendar::limits::{MAX_LOCATION_CHARS, MAX_TITLE_CHARS};
    use crate::calendar::validate::check_chars;

    check_chars("object.name", &data.title, MAX_TITLE_CHARS)?;
    if let Some(place) = &data.place {
        check_chars("object.location", &place.one_line(), MAX_LOCATION_CHARS)?;
    }
    Ok(())
}

/// A series as rose-events peers publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteRecurrence {
    /// RRULE value.
    pub rrule: String,
    /// First start as a wall time in the event zone.
    pub dtstart: NaiveDateTime,
    /// Excluded starts.
    pub exdates: Vec<DateTime<Utc>>,
}

/// Reads an `Event` object.
pub fn event(object: &Value) -> Result<RemoteEventData, InvalidField> {
    let object_id = id_of(object)
        .ok_or_else(|| InvalidField::new("object.id", "", "is missing"))?
        .to_owned();
    let zone_name = object.get("timezone").and_then(Value::as_str);
    let zone = match zone_name {
        Some(name) => Some(name.parse::<Tz>().map_err(|_| {
            InvalidField::new("object.timezone", name, "is not an IANA time zone name")
        })?),
        None => None,
    };
    let start_text = object
        .get("startTime")
        .and_then(Value::as_str)
        .ok_or_else(|| InvalidField::new("object.startTime", "", "is missing"))?;
    let start = event_time("object.startTime", start_text, zone)?;
    let end = match object.get("endTime").and_then(Value::as_str) {
        Some(text) => Some(event_time("object.endTime", text, zone)?),
        None => None,
    };
    if let Some(end) = end
        && end < start
    {
        return Err(InvalidField::new(
            "object.endTime",
            end.to_rfc3339(),
            "is before startTime",
        ));
    }
    check_bounds(start, end)?;
    let (place, virtual_url) = location(object.get("location"));
    let data = RemoteEventData {
        attributed_to: object
            .get("attributedTo")
            .and_then(id_of)
            .map(str::to_owned),
        title: title(object),
        url: object.get("url").and_then(first_url).and_then(web_url),
        zone,
        start,
        end,
        place,
        online_url: virtual_url
            .and_then(web_url)
            .or_else(|| online_attachment(object).and_then(web_url)),
        capacity: capacity(object.get("maximumAttendeeCapacity")).filter(|&seats| seats > 0),
        remaining_capacity: capacity(object.get("remainingAttendeeCapacity")),
        status: status(object),
        recurrence: recurrence(object, zone)?,
        series: object.get("rose:series").and_then(id_of).map(str::to_owned),
        recurrence_id: recurrence_id(object)?,
        version: ["updated", "published"]
            .iter()
            .find_map(|name| object.get(*name).and_then(Value::as_str))
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|t| t.to_utc()),
        object_id,
    };
    check_text(&data)?;
    Ok(data)
}

/// Reads `startTime` or `endTime`.
///
/// An offset or `Z` fixes the instant, whatever `timezone` names (Gancio sends its instance's
/// offset, Friendica `+00:00`). A time without an offset, or with `-00:00` (RFC 3339's
/// "offset unknown", which Hubzilla writes for floating events), is a wall time: it is read in
/// `timezone`, and rejected when there is none, because reading it as UTC would move it.
pub fn event_time(
    field: &str,
    text: &str,
    zone: Option<Tz>,
) -> Result<DateTime<Utc>, InvalidField> {
    let floating_text = text.strip_suffix("-00:00");
    if floating_text.is_none()
        && let Ok(instant) = DateTime::<FixedOffset>::parse_from_rfc3339(text)
    {
        return Ok(instant.to_utc());
    }
    let wall_text = floating_text.unwrap_or(text);
    let wall = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(wall_text, format).ok())
    .ok_or_else(|| {
        InvalidField::new(
            field,
            text,
            "is not an RFC 3339 date-time like 2026-10-24T14:00:00+02:00",
        )
    })?;
    let Some(zone) = zone else {
        return Err(InvalidField::new(
            field,
            text,
            "is a floating time without an offset and the object has no timezone, so its \
             instant is unknown",
        ));
    };
    Ok(crate::calendar::time::resolve_local(zone, wall))
}

fn title(object: &Value) -> String {
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .get("nameMap")
                .and_then(Value::as_object)
                .and_then(|map| map.values().find_map(Value::as_str))
        })
        .or_else(|| object.get("summary").and_then(Value::as_str))
        .unwrap_or("(untitled)");
    truncate(name.trim(), MAX_TITLE_CHARS)
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Keeps a link only when it is an http or https URL of at most [`MAX_URL_BYTES`], because it
/// is shown to people as a link.
fn web_url(text: String) -> Option<String> {
    let parsed = url::Url::parse(&text).ok()?;
    let web = matches!(parsed.scheme(), "http" | "https");
    (web && text.len() <= MAX_URL_BYTES).then_some(text)
}

/// Returns the first URL of a `url` field: a string, a Link, or an array of either.
fn first_url(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("href").and_then(Value::as_str).map(str::to_owned),
        Value::Array(items) => items.iter().find_map(first_url),
        _ => None,
    }
}

/// Reads `location`: one object or an array (Gancio), holding `Place`s and
/// `VirtualLocation`s. The first physical place wins.
fn location(value: Option<&Value>) -> (Option<Place>, Option<String>) {
    let items: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        Some(Value::String(text)) => {
            let place = Place {
                name: Some(truncate(text, MAX_TEXT_CHARS)),
                ..Place::default()
            };
            return (Some(place), None);
        }
        _ => Vec::new(),
    };
    let mut place = None;
    let mut online = None;
    for item in items {
        match type_of(item) {
            Some("VirtualLocation") => {
                online = online.or_else(|| item.get("url").and_then(first_url));
            }
            _ if place.is_none() => place = Some(read_place(item)),
            _ => {}
        }
    }
    (place.filter(|p: &Place| !p.is_empty()), online)
}

fn read_place(item: &Value) -> Place {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .map(|s| truncate(s.trim(), MAX_TEXT_CHARS))
            .filter(|s| !s.is_empty())
    };
    // Hubzilla puts the place in `content` as HTML and sends no `name`.
    let name = text(item.get("name")).or_else(|| text(item.get("content")).map(|s| strip_tags(&s)));
    let mut place = Place {
        name,
        latitude: coordinate(item.get("latitude"), 90.0),
        longitude: coordinate(item.get("longitude"), 180.0),
        ..Place::default()
    };
    match item.get("address") {
        // Gancio sends the address as one free-text string.
        Some(Value::String(s)) => place.street = text(Some(&Value::String(s.clone()))),
        Some(address @ Value::Object(_)) => {
            place.street = text(address.get("streetAddress"));
            place.locality = text(address.get("addressLocality"));
            place.region = text(address.get("addressRegion"));
            place.postal_code = text(address.get("postalCode"));
            place.country = text(address.get("addressCountry"));
        }
        _ => {}
    }
    place
}

/// Reads a latitude or longitude given as a number or a numeric string (Friendica), and
/// drops it when out of range.
fn coordinate(value: Option<&Value>, limit: f64) -> Option<f64> {
    let number = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (number.is_finite() && number.abs() <= limit).then_some(number)
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

/// Finds an online link in `attachment`: Mobilizon names it "Website", Gancio gives one `Link` per
/// URL with a `text/html` media type.
fn online_attachment(object: &Value) -> Option<String> {
    let items = match object.get("attachment")? {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        item => vec![item],
    };
    items
        .into_iter()
        .filter(|item| type_of(item) == Some("Link"))
        .find_map(|item| item.get("href").and_then(Value::as_str))
        .map(str::to_owned)
}

fn capacity(value: Option<&Value>) -> Option<i32> {
    let number = match value? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    i32::try_from(number).ok().filter(|&n| n >= 0)
}

/// `eventStatus` (FEP-8a8e) over `status` over `ical:status`; upper or lower case, or a
/// schema.org IRI such as `https://schema.org/EventCancelled`.
fn status(object: &Value) -> EventStatus {
    let text = ["eventStatus", "status", "ical:status"]
        .iter()
        .find_map(|name| object.get(*name).and_then(Value::as_str))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if text.contains("cancel") {
        EventStatus::Cancelled
    } else if text.contains("tentative") {
        EventStatus::Tentative
    } else {
        EventStatus::Confirmed
    }
}

/// Reads `rose:recurrenceId`, an instant with an offset (rose-events sends UTC).
fn recurrence_id(object: &Value) -> Result<Option<DateTime<Utc>>, InvalidField> {
    let Some(text) = object.get("rose:recurrenceId").and_then(Value::as_str) else {
        return Ok(None);
    };
    let instant = DateTime::parse_from_rfc3339(text).map_err(|_| {
        InvalidField::new(
            "object.rose:recurrenceId",
            text,
            "must be an RFC 3339 instant like 2026-05-05T17:00:00Z",
        )
    })?;
    Ok(Some(instant.to_utc()))
}

fn recurrence(object: &Value, zone: Option<Tz>) -> Result<Option<RemoteRecurrence>, InvalidField> {
    let Some(rrule) = object.get("rose:rrule").and_then(Value::as_str) else {
        return Ok(None);
    };
    let dtstart_text = object
        .get("rose:dtstart")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            InvalidField::new("object.rose:dtstart", "", "is missing beside rose:rrule")
        })?;
    let dtstart =
        NaiveDateTime::parse_from_str(dtstart_text, "%Y-%m-%dT%H:%M:%S").map_err(|_| {
            InvalidField::new(
                "object.rose:dtstart",
                dtstart_text,
                "must be a wall time like 2026-05-05T19:00:00",
            )
        })?;
    // NOTE: a series without a zone (UTC, floating or all-day at the sender) is stored as the
    // one occurrence that startTime names: its wall times cannot be expanded safely here.
    if zone.is_none() {
        return Ok(None);
    }
    let exdates = match object.get("rose:exdate") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(RemoteRecurrence {
        rrule: rrule.to_owned(),
        dtstart,
        exdates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
    }

    #[test]
    fn offset_keeps_its_instant_whatever_the_zone() {
        let paris = Some(chrono_tz::Europe::Paris);
        let read = event_time("t", "2025-06-14T19:00:00+02:00", paris).ok();
        assert_eq!(read, utc("2025-06-14T17:00:00Z"));
    }

    #[test]
    fn unknown_offset_is_read_in_the_timezone() {
        let paris = Some(chrono_tz::Europe::Paris);
        let read = event_time("t", "2025-06-14T19:00:00-00:00", paris).ok();
        assert_eq!(read, utc("2025-06-14T17:00:00Z"));
    }

    #[test]
    fn floating_time_without_timezone_is_rejected() {
        assert!(event_time("t", "2025-06-14T19:00:00-00:00", None).is_err());
        assert!(event_time("t", "2025-06-14T19:00:00", None).is_err());
    }

    #[test]
    fn links_other_than_web_urls_are_dropped() {
        assert_eq!(web_url("javascript:alert(1)".into()), None);
        assert_eq!(
            web_url(format!("https://a.example/{}", "x".repeat(MAX_URL_BYTES))),
            None
        );
        assert_eq!(
            web_url("https://a.example/e".into()),
            Some("https://a.example/e".to_owned())
        );
    }

    #[test]
    fn deep_json_is_rejected_before_parsing() {
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert!(parse_bounded_json(deep.as_bytes()).is_err());
        let fine = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(parse_bounded_json(fine.as_bytes()).is_ok());
        assert!(parse_bounded_json(br#"{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#).is_ok());
    }
}
