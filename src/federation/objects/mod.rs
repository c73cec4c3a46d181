//! Conversions between calendar types and ActivityPub objects.

pub mod event;
