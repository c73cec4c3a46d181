//! Calendars and their events: schedules, recurrence, occurrences and iCalendar.
//!
//! A *calendar* is a named, followable collection of events with a default zone. An *event* is
//! what an organizer schedules; its *occurrences* are the concrete instances it produces in a
//! window, after recurrence rules, extra dates, exclusions and overrides.

pub mod agenda;
pub mod event;
pub mod ics;
pub mod import;
pub mod limits;
pub mod occurrence;
pub mod recurrence;
mod span;
pub mod store;
pub mod time;
pub mod validate;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Who can see a calendar in listings. Both kinds are readable by anyone who has the slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Listed, and included in the agenda of all calendars.
    Public,
    /// Reachable by its slug only.
    Unlisted,
}

impl Visibility {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "public" => Some(Visibility::Public),
            "unlisted" => Some(Visibility::Unlisted),
            _ => None,
        }
    }
}

/// A stored calendar.
#[derive(Clone, Debug, PartialEq)]
pub struct Calendar {
    /// Database id.
    pub id: i64,
    /// URL name, unique on this server.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Zone for new events that name none.
    pub default_zone: Tz,
    /// Listed or not.
    pub visibility: Visibility,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its settings last changed.
    pub updated_at: DateTime<Utc>,
}

/// A calendar to create, or the new settings of an existing one.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCalendar {
    /// URL name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Zone for new events that name none.
    pub default_zone: Tz,
    /// Listed or not.
    pub visibility: Visibility,
}

/// Calendar errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No calendar has that slug.
    #[error("calendar {0:?} not found")]
    CalendarNotFound(String),
    /// No event has that id.
    #[error("event {0} not found")]
    EventNotFound(i64),
    /// The slug belongs to another calendar.
    #[error("calendar slug {0:?} is already taken")]
    SlugTaken(String),
    /// The UID belongs to another event of the calendar.
    #[error("event uid {0:?} already exists in this calendar")]
    UidTaken(String),
    /// A field breaks a rule or a limit.
    #[error(transparent)]
    Invalid(#[from] validate::InvalidField),
    /// An iCalendar file was rejected.
    #[error(transparent)]
    Ics(#[from] ics::IcsError),
    /// Stored data cannot be read back: a bug or a hand-edited database.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] crate::db::Error),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(crate::db::Error::Query(error))
    }
}
