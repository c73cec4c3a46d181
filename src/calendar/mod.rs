//! Calendars and their events: schedules, recurrence, occurrences and iCalendar.

pub mod event;
pub mod time;
