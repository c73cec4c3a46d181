//! Notifications, deciding what to send and when: people and their preferences, push subscriptions, reminders and
//! digests. Everything here turns into jobs of the delivery queue.
//!
//! Vocabulary:
//! - A *person* is identified by a text id of 1 to 200 characters from `A-Z a-z 0-9 . _ @ : + -`,
//!   the same id bookings use for attendees. Preferences are optional: a person without a row
//!   gets the defaults.
//! - A *channel* is how a person is reached: `push` (every push subscription they registered)
//!   or `email` (their address).
//! - A *reminder* is keyed by (event, occurrence, person, channel, offset). It owns one queue
//!   job of kind `reminder` that runs `offset` minutes before the occurrence starts, checks
//!   that the occurrence still takes place, and fans out into `push` and `email` jobs.
//! - A *digest* is a periodic summary (daily or weekly, at the person's local hour) of their
//!   upcoming reminded occurrences and the new events of calendars they follow.
//!
//! ```text
//!  booking live ──► reminders::schedule ──► job "reminder" (run at start − offset)
//!  event moved  ──► reminders::event_changed ──► run-at and deadline follow the occurrence
//!  job "reminder" ──► occurrence still on? ──► job "push" per subscription, job "email"
//!  job "digest"   ──► summary ──► job "push"/"email" ──► next job "digest"
//! ```

pub mod digests;
pub mod jobs;
pub mod messages;
pub mod people;
pub mod reminders;
pub mod service;
pub mod subscriptions;

use crate::calendar::validate::InvalidField;

/// Maximum person id length, in characters.
pub const MAX_PERSON_ID_CHARS: usize = 200;

/// Notification errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field breaks a rule or a limit.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The event does not exist.
    #[error("event {0} not found")]
    EventNotFound(i64),
    /// The event has no occurrence with that recurrence id.
    #[error("event {event_id} has no occurrence {occurrence}")]
    OccurrenceNotFound {
        /// The event.
        event_id: i64,
        /// The recurrence id asked for, or `single`.
        occurrence: String,
    },
    /// No calendar has that slug.
    #[error("calendar {0:?} not found")]
    CalendarNotFound(String),
    /// No person has that id.
    #[error("person {0:?} not found")]
    PersonNotFound(String),
    /// Stored data cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The calendar failed.
    #[error(transparent)]
    Calendar(#[from] crate::calendar::Error),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] crate::delivery::Error),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Queue(crate::delivery::Error::from(error))
    }
}

impl From<crate::db::Error> for Error {
    fn from(error: crate::db::Error) -> Self {
        Error::Queue(crate::delivery::Error::Database(error))
    }
}

/// Way of reaching a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Web Push to every subscription of the person.
    Push,
    /// Email to the person's address.
    Email,
}

impl Channel {
    /// Returns the stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Email => "email",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "push" => Some(Channel::Push),
            "email" => Some(Channel::Email),
            _ => None,
        }
    }
}

/// Checks a person id: 1 to [`MAX_PERSON_ID_CHARS`] characters of `A-Z a-z 0-9 . _ @ : + -`.
pub fn check_person_id(field: &str, id: &str) -> Result<(), InvalidField> {
    if id.is_empty() {
        return Err(InvalidField::new(field, id, "must not be empty"));
    }
    let length = id.chars().count();
    if length > MAX_PERSON_ID_CHARS {
        return Err(InvalidField::new(
            field,
            id,
            format!("is {length} characters long, the limit is {MAX_PERSON_ID_CHARS}"),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | ':' | '+' | '-')))
    {
        return Err(InvalidField::new(
            field,
            id,
            format!("contains {bad:?}; allowed are A-Z, a-z, 0-9 and . _ @ : + -"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_id_rules() {
        assert!(check_person_id("person", "vera@example.net").is_ok());
        assert!(check_person_id("person", "acct:ana+1_x.y-z").is_ok());
        assert!(check_person_id("person", "").is_err());
        assert!(check_person_id("person", "a/b").is_err());
        assert!(check_person_id("person", "a b").is_err());
        assert!(check_person_id("person", &"x".repeat(200)).is_ok());
        let long = check_person_id("person", &"x".repeat(201));
        assert!(long.is_err_and(|e| e.problem.contains("limit is 200")));
    }
}
