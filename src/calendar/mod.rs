//! Calendars and their events: schedules, recurrence, occurrences and iCalendar.

pub mod event;
pub mod occurrence;
pub mod recurrence;
pub mod time;
