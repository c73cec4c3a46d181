//! One VEVENT's properties read into schedule and details.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDateTime};
use chrono_tz::Tz;

use super::component::Component;
use super::lines::{ContentLine, preview};
use super::values::{DateValue, parse_date_value, parse_duration, unescape_text};
use super::{IcsError, MAX_DATES_PER_PROPERTY};
use crate::calendar::event::{EventDetails, EventStatus, ExtraDate, Place};
use crate::calendar::limits::{
    MAX_DESCRIPTION_CHARS, MAX_LOCATION_CHARS, MAX_RRULE_BYTES, MAX_TITLE_CHARS,
};
use crate::calendar::time::{EventLength, Moment, TimeBasis};

/// A DATE or DATE-TIME with its zone applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timed {
    /// Wall time (midnight for a date).
    pub wall: NaiveDateTime,
    /// How to read it.
    pub basis: TimeBasis,
}

impl Timed {
    /// This value as a recurrence moment of an event on `series`: a wall time when it is written
    /// on the same basis, else its instant.
    pub fn moment_for(self, series: TimeBasis) -> Moment {
        if self.basis == series {
            Moment::Wall(self.wall)
        } else {
            Moment::Utc(self.basis.to_utc(self.wall))
        }
    }
}

/// Reads date properties with the file's resolved zones.
pub(crate) struct DateReader<'a> {
    /// Resolved zone for every TZID used in the file.
    pub zones: &'a HashMap<String, Tz>,
}

impl DateReader<'_> {
    /// Reads one value of `property` (which may hold a list; `text` is one item).
    pub fn read(&self, property: &ContentLine, text: &str) -> Result<Timed, IcsError> {
        let value = parse_date_value(text)
            .ok_or_else(|| invalid(property, text, "is not a DATE or DATE-TIME"))?;
        let wants_date = property
            .param("VALUE")
            .is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
        if wants_date && !matches!(value, DateValue::Date(_)) {
            return Err(invalid(
                property,
                text,
                "is not a DATE although VALUE=DATE is given",
            ));
        }

        // A TZID on a DATE value is ignored: Lightning writes one on all-day events.
        let basis = match (value, property.param("TZID")) {
            (DateValue::Date(_), _) => TimeBasis::AllDay,
            (DateValue::Utc(_), _) => TimeBasis::Utc,
            (DateValue::Local(_), None) => TimeBasis::Floating,
            (DateValue::Local(_), Some(tzid)) => {
                let zone = self
                    .zones
                    .get(tzid.trim())
                    .ok_or_else(|| IcsError::UnknownZone {
                        line: property.line,
                        tzid: tzid.to_string(),
                    })?;
                TimeBasis::Zoned(*zone)
            }
        };
        Ok(Timed {
            wall: value.wall(),
            basis,
        })
    }

    /// Reads a single-valued date property.
    pub fn read_one(&self, property: &ContentLine) -> Result<Timed, IcsError> {
        self.read(property, property.value.trim())
    }

    /// Reads the event's length from DTEND or DURATION, with the RFC 5545 defaults otherwise.
    pub fn length(&self, event: &Component, start: Timed) -> Result<EventLength, IcsError> {
        if let Some(end) = event.property("DTEND") {
            let end_value = self.read_one(end)?;
            return length_between(end, start, end_value);
        }
        if let Some(duration) = event.property("DURATION") {
            return parse_duration(&duration.value).ok_or_else(|| {
                invalid(duration, &duration.value, "is not a non-negative DURATION")
            });
        }
        Ok(match start.basis {
            TimeBasis::AllDay => EventLength {
                days: 1,
                seconds: 0,
            },
            _ => EventLength::default(),
        })
    }

    /// RDATE values, with their own length when given as a PERIOD.
    pub fn extra_dates(
        &self,
        event: &Component,
        series: TimeBasis,
    ) -> Result<Vec<ExtraDate>, IcsError> {
        let mut dates = Vec::new();
        for property in event.properties_named("RDATE") {
            for item in list_items(property)? {
                dates.push(self.extra_date(property, item, series)?);
            }
        }
        Ok(dates)
    }

    fn extra_date(
        &self,
        property: &ContentLine,
        item: &str,
        series: TimeBasis,
    ) -> Result<ExtraDate, IcsError> {
        let Some((start_text, end_text)) = item.split_once('/') else {
            let at = self.read(property, item)?.moment_for(series);
            return Ok(ExtraDate { at, length: None });
        };

        let start = self.read(property, start_text)?;
        let length = match parse_duration(end_text) {
            Some(length) => length,
            None => length_between(property, start, self.read(property, end_text)?)?,
        };
        Ok(ExtraDate {
            at: start.moment_for(series),
            length: Some(length),
        })
    }

    /// EXDATE values.
    ///
    /// A DATE on a timed series (written by some exporters against RFC 5545) excludes the
    /// instance of that day at the series' time of day, instead of matching nothing.
    pub fn exclusions(&self, event: &Component, start: Timed) -> Result<Vec<Moment>, IcsError> {
        let series = start.basis;
        let mut moments = Vec::new();
        for property in event.properties_named("EXDATE") {
            for item in list_items(property)? {
                let value = self.read(property, item)?;
                if value.basis == TimeBasis::AllDay && series != TimeBasis::AllDay {
                    moments.push(Moment::Wall(value.wall.date().and_time(start.wall.time())));
                } else {
                    moments.push(value.moment_for(series));
                }
            }
        }
        Ok(moments)
    }
}

/// `end - start`: whole days between dates, exact seconds between instants otherwise.
fn length_between(
    property: &ContentLine,
    start: Timed,
    end: Timed,
) -> Result<EventLength, IcsError> {
    let shown = |end: Timed| end.wall.format("%Y%m%dT%H%M%S").to_string();
    if (start.basis == TimeBasis::AllDay) != (end.basis == TimeBasis::AllDay) {
        return Err(invalid(
            property,
            &shown(end),
            "must be a DATE exactly when DTSTART is one",
        ));
    }

    let length = if start.basis == TimeBasis::AllDay {
        EventLength {
            days: (end.wall - start.wall).num_days(),
            seconds: 0,
        }
    } else {
        let seconds = (end.basis.to_utc(end.wall) - start.basis.to_utc(start.wall)).num_seconds();
        EventLength { days: 0, seconds }
    };
    if length.days < 0 || length.seconds < 0 {
        return Err(invalid(property, &shown(end), "is before the start"));
    }
    Ok(length)
}

fn list_items(property: &ContentLine) -> Result<Vec<&str>, IcsError> {
    let items: Vec<&str> = property
        .value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    if items.len() > MAX_DATES_PER_PROPERTY {
        return Err(IcsError::TooMany {
            line: property.line,
            what: "values in one RDATE or EXDATE property",
            limit: MAX_DATES_PER_PROPERTY,
        });
    }
    Ok(items)
}

/// SUMMARY, DESCRIPTION, LOCATION, GEO, URL and STATUS.
pub(crate) fn read_details(event: &Component) -> Result<EventDetails, IcsError> {
    let title = text_property(event, "SUMMARY", MAX_TITLE_CHARS)?.unwrap_or_default();
    let description = text_property(event, "DESCRIPTION", MAX_DESCRIPTION_CHARS)?;
    let location = text_property(event, "LOCATION", MAX_LOCATION_CHARS)?;
    let place = event.property("GEO").map(read_geo).transpose()?;
    let online_url = event
        .property("URL")
        .map(|url| url.value.trim().to_string())
        .filter(|url| !url.is_empty());
    let status = match event.property("STATUS") {
        None => EventStatus::Confirmed,
        Some(status) => EventStatus::parse(status.value.trim()).ok_or_else(|| {
            invalid(
                status,
                &status.value,
                "is not TENTATIVE, CONFIRMED or CANCELLED",
            )
        })?,
    };
    Ok(EventDetails {
        title,
        description,
        location,
        place,
        online_url,
        status,
    })
}

/// Reads an unescaped TEXT property. Empty values count as absent.
fn text_property(
    event: &Component,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, IcsError> {
    let Some(property) = event.property(name) else {
        return Ok(None);
    };
    let text = unescape_text(&property.value);
    let chars = text.chars().count();
    if chars > max_chars {
        let problem = format!("is {chars} characters long, more than the limit of {max_chars}");
        return Err(invalid(property, &property.value, &problem));
    }
    Ok(Some(text).filter(|text| !text.is_empty()))
}

fn read_geo(property: &ContentLine) -> Result<Place, IcsError> {
    let bad = || {
        invalid(
            property,
            &property.value,
            "is not \"latitude;longitude\" in degrees",
        )
    };
    let (latitude, longitude) = property.value.split_once([';', ',']).ok_or_else(bad)?;
    let latitude: f64 = latitude.trim().parse().map_err(|_| bad())?;
    let longitude: f64 = longitude.trim().parse().map_err(|_| bad())?;
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err(bad());
    }
    Ok(Place {
        latitude: Some(latitude),
        longitude: Some(longitude),
        ..Place::default()
    })
}

/// Reads the RRULE value, checked against [`MAX_RRULE_BYTES`]. A second RRULE is rejected
/// because a schedule has one rule.
pub(crate) fn read_rrule(event: &Component) -> Result<Option<String>, IcsError> {
    let mut rules = event.properties_named("RRULE");
    let Some(rule) = rules.next() else {
        return Ok(None);
    };
    if let Some(second) = rules.next() {
        return Err(invalid(
            second,
            &second.value,
            "is a second RRULE, and only one is supported",
        ));
    }
    let value = rule.value.trim();
    if value.len() > MAX_RRULE_BYTES {
        let problem = format!(
            "is {} bytes long, more than the limit of {MAX_RRULE_BYTES}",
            value.len()
        );
        return Err(invalid(rule, value, &problem));
    }
    if !value.to_ascii_uppercase().contains("FREQ=") {
        return Err(invalid(rule, value, "has no FREQ"));
    }
    Ok(Some(value.to_string()))
}

/// Builds the error for `value` of `property`.
pub(crate) fn invalid(property: &ContentLine, value: &str, problem: &str) -> IcsError {
    IcsError::InvalidValue {
        line: property.line,
        property: property.name.clone(),
        value: preview(value),
        problem: problem.to_string(),
    }
}

/// Returns the year of a DATE or DATE-TIME text, to choose which years of a zone matter.
pub(crate) fn value_year(text: &str) -> Option<i32> {
    parse_date_value(text).map(|value| value.wall().year())
}
