//! rose-events: the events server of rose-ash.

pub mod api;
pub mod auth;
pub mod availability;
pub mod booking;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod db;
pub mod delivery;
pub mod federation;
pub mod notify;
pub mod server;
