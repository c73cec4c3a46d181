//! The `Event` object as we publish it.
//!
//! Fields follow FEP-8a8e (events in ActivityPub) and the terms Mobilizon and Gancio read:
//! `location` is a single `Place` because Mobilizon rejects an array, each online link is an
//! attachment with a `mediaType` because Gancio ignores links without one, and `summary`
//! carries date, zone and place for servers such as Mastodon that show only text.

use serde::Serialize;
use serde_json::Value;

/// An ActivityStreams `Event`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// JSON-LD context.
    #[serde(rename = "@context")]
    pub context: Value,
    /// Dereferenceable id.
    pub id: String,
    /// Always `Event`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Human-facing page.
    pub url: String,
    /// Title.
    pub name: String,
    /// Plain-text line with date, zone and place.
    pub summary: String,
    /// Description as HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Media type of `content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<&'static str>,
    /// Start with the event zone's offset (or `Z`).
    pub start_time: String,
    /// End with the event zone's offset (or `Z`).
    pub end_time: String,
    /// IANA zone, or absent for UTC, floating and all-day events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `CONFIRMED`, `TENTATIVE` or `CANCELLED`.
    pub status: &'static str,
    /// The venue, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Place>,
    /// Online links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachment: Vec<EventLink>,
    /// Seats; 0 means unlimited, as Mobilizon reads it.
    pub maximum_attendee_capacity: i32,
    /// Seats left, or null when unlimited.
    pub remaining_attendee_capacity: Option<i32>,
    /// Whether only an online link is given.
    pub is_online: bool,
    /// The calendar actor that publishes it.
    pub attributed_to: String,
    /// Audience.
    pub to: Vec<String>,
    /// Secondary audience.
    pub cc: Vec<String>,
    /// When it was first stored.
    pub published: String,
    /// When it last changed.
    pub updated: String,
    /// The series an occurrence belongs to.
    #[serde(rename = "rose:series", skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// An occurrence's original start in UTC (RFC 3339), which stays its key when an override
    /// moves it.
    #[serde(rename = "rose:recurrenceId", skip_serializing_if = "Option::is_none")]
    pub recurrence_id: Option<String>,
    /// The series' recurrence rule, for peers that expand recurrence themselves.
    #[serde(rename = "rose:rrule", skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
    /// The series' excluded starts (RFC 3339).
    #[serde(rename = "rose:exdate", skip_serializing_if = "Vec::is_empty")]
    pub exdate: Vec<String>,
    /// The series' extra starts (RFC 3339).
    #[serde(rename = "rose:rdate", skip_serializing_if = "Vec::is_empty")]
    pub rdate: Vec<String>,
    /// Wall-clock start of the series in `timezone`, the anchor of `rose:rrule`.
    #[serde(rename = "rose:dtstart", skip_serializing_if = "Option::is_none")]
    pub dtstart: Option<String>,
    /// Whether times are whole days.
    #[serde(rename = "rose:allDay")]
    pub all_day: bool,
}

/// A venue.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Place {
    /// Always `Place`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Venue name (or the free-text location).
    pub name: String,
    /// Postal address, when any part is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
    /// Latitude in degrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// A schema.org postal address.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostalAddress {
    /// Always `PostalAddress`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Street and number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_locality: Option<String>,
    /// Region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_region: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_country: Option<String>,
}

/// An online link attached to an event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLink {
    /// Always `Link`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Label.
    pub name: String,
    /// Target.
    pub href: String,
    /// Always `text/html`.
    pub media_type: &'static str,
}
