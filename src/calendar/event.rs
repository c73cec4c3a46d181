//! Events as organizers schedule them: one start, a length, an optional recurrence and
//! single-occurrence overrides.
//!
//! An *override* replaces one instance of a recurring event, named by its RECURRENCE-ID (the
//! instance's original start): it can cancel it, move it or change its fields.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::time::{EventLength, Moment, TimeBasis};

/// Whether an event (or one occurrence) takes place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Going ahead (iCalendar `CONFIRMED`, or no STATUS at all).
    #[default]
    Confirmed,
    /// Not yet certain (iCalendar `TENTATIVE`).
    Tentative,
    /// Called off (iCalendar `CANCELLED`).
    Cancelled,
}

impl EventStatus {
    /// The iCalendar STATUS value.
    pub fn as_ical(self) -> &'static str {
        match self {
            EventStatus::Confirmed => "CONFIRMED",
            EventStatus::Tentative => "TENTATIVE",
            EventStatus::Cancelled => "CANCELLED",
        }
    }

    /// The stored and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Confirmed => "confirmed",
            EventStatus::Tentative => "tentative",
            EventStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored spelling or an iCalendar STATUS value (any case).
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "confirmed" => Some(EventStatus::Confirmed),
            "tentative" => Some(EventStatus::Tentative),
            "cancelled" | "canceled" => Some(EventStatus::Cancelled),
            _ => None,
        }
    }
}

/// A physical place with a postal address and optional coordinates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// Name of the venue, or the whole free-text location when nothing else is known.
    pub name: Option<String>,
    /// Street and number.
    pub street: Option<String>,
    /// City or town.
    pub locality: Option<String>,
    /// Region, state or province.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Country name or ISO code.
    pub country: Option<String>,
    /// Latitude in degrees, -90 to 90.
    pub latitude: Option<f64>,
    /// Longitude in degrees, -180 to 180.
    pub longitude: Option<f64>,
}

impl Place {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Place::default()
    }

    /// One line for people: name, street, postal code and locality, country.
    pub fn one_line(&self) -> String {
        let city = match (&self.postal_code, &self.locality) {
            (Some(code), Some(city)) => Some(format!("{code} {city}")),
            (None, Some(city)) => Some(city.clone()),
            (Some(code), None) => Some(code.clone()),
            (None, None) => None,
        };
        [
            self.name.clone(),
            self.street.clone(),
            city,
            self.country.clone(),
        ]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// An extra instance added by RDATE, with its own length when it was given as a PERIOD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraDate {
    /// When the instance starts.
    pub at: Moment,
    /// Its own length (RDATE;VALUE=PERIOD), or `None` for the event's length.
    pub length: Option<EventLength>,
}

/// The schedule of an event: first start, length and recurrence.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Wall time of the first start (midnight for all-day events).
    pub start: NaiveDateTime,
    /// How wall times map to instants.
    pub basis: TimeBasis,
    /// How long each occurrence lasts.
    pub length: EventLength,
    /// RRULE value without the `RRULE:` prefix.
    pub rrule: Option<String>,
    /// RDATE values.
    pub rdates: Vec<ExtraDate>,
    /// EXDATE values.
    pub exdates: Vec<Moment>,
}

/// The fields of an event that an override can also change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventDetails {
    /// Title (SUMMARY).
    pub title: String,
    /// Longer text (DESCRIPTION).
    pub description: Option<String>,
    /// Free-text location as written (LOCATION).
    pub location: Option<String>,
    /// Structured place, when known.
    pub place: Option<Place>,
    /// Link to join online.
    pub online_url: Option<String>,
    /// Whether it takes place.
    pub status: EventStatus,
}

/// An event as scheduled, before it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Globally unique id (iCalendar UID); generated when the organizer gives none.
    pub uid: String,
    /// Title, text, place and status.
    pub details: EventDetails,
    /// Start, length and recurrence.
    pub schedule: Schedule,
    /// Seats per occurrence, or `None` for no limit.
    pub capacity: Option<i32>,
    /// Single-occurrence changes.
    pub overrides: Vec<NewOverride>,
}

/// A change to one occurrence of a recurring event.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOverride {
    /// The original start of the occurrence it replaces.
    pub recurrence_id: Moment,
    /// New wall start on the event's basis (or on `basis` when given), or `None` to keep it.
    pub start: Option<NaiveDateTime>,
    /// Basis of `start` when the override is written in another zone than the series.
    pub basis: Option<TimeBasis>,
    /// New length, or `None` to keep the series' length.
    pub length: Option<EventLength>,
    /// Replacement fields; `None` keeps the series' fields.
    pub details: Option<EventDetails>,
}
