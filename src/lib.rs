//! rose-events: the events server of rose-ash.

pub mod calendar;
