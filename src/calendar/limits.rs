//! Bounds on what one event or calendar may contain, shared by the API and the importer.

/// Longest title (SUMMARY), in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// Longest free-text location, in characters.
pub const MAX_LOCATION_CHARS: usize = 1_000;
/// Longest RRULE value, in bytes.
pub const MAX_RRULE_BYTES: usize = 1_000;
