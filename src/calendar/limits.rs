//! Bounds on what one event or calendar may contain, shared by the API and the importer.

/// Maximum length of a title (SUMMARY), in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Maximum length of a description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// Maximum length of a free-text location, in characters.
pub const MAX_LOCATION_CHARS: usize = 1_000;
/// Longest RRULE value, in bytes.
pub const MAX_RRULE_BYTES: usize = 1_000;
