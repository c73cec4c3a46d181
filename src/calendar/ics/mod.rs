//! iCalendar (RFC 5545) import and export.
//!
//! Import reads a whole `.ics` file into [`NewEvent`]s or rejects the whole file with an
//! [`IcsError`] that names the physical line, the property and the value. Only VEVENTs produce
//! events; VTODO, VJOURNAL and VALARM are skipped with everything inside them.
//!
//! Terms used in this module:
//!
//! - A *master* is a VEVENT without RECURRENCE-ID. An *override* is a VEVENT with the same UID
//!   and a RECURRENCE-ID; it is attached to its master wherever it appears in the file. An
//!   override whose master is not in the file is imported as a one-off event with that UID.
//! - A VEVENT without UID gets `<hash>@import.rose-events.invalid`, where the hash is a SHA-256 of
//!   its unfolded content lines, so importing the same file twice yields the same UIDs.
//! - A TZID is resolved to an IANA zone in this order. An IANA name is used as it is. A Windows
//!   name goes through the CLDR `windowsZones` table. A vendor path
//!   (`/mozilla.org/20070129_1/Asia/Tokyo`) uses the IANA name at its end. Anything else uses the
//!   file's own VTIMEZONE, matched against the IANA zones by its offsets and transitions in the
//!   years the file uses.
//! - URL is read into [`EventDetails::online_url`](crate::calendar::event::EventDetails).
//!
//! Export writes a feed any calendar application can subscribe to: CRLF line ends, lines folded
//! at 75 octets, one VTIMEZONE generated from the tz database for every zone used.

mod component;
mod export;
mod export_tz;
mod import;
mod lines;
mod values;
mod vevent;
mod vtimezone;
mod windows_zones;

pub use export::{FeedEvent, write_calendar};
pub use windows_zones::windows_zone_to_iana;

use crate::calendar::event::NewEvent;

/// Maximum file size, in bytes.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Maximum length of a content line after unfolding, in bytes.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// Maximum number of VEVENTs (masters and overrides together) in one file.
pub const MAX_EVENTS: usize = 20_000;
/// Maximum nesting depth of components, VCALENDAR included.
pub const MAX_DEPTH: usize = 6;
/// Maximum number of values in one RDATE or EXDATE property.
pub const MAX_DATES_PER_PROPERTY: usize = 5_000;

/// The result of reading one `.ics` file.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedCalendar {
    /// The calendar's display name (`X-WR-CALNAME`).
    pub name: Option<String>,
    /// Master events with their overrides attached, in file order.
    pub events: Vec<NewEvent>,
}

/// Reason a file was rejected. Line numbers are 1-based physical lines of the original file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("file is {bytes} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the file.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// An unfolded line is longer than [`MAX_LINE_BYTES`].
    #[error(
        "line {line}: content line is {bytes} bytes after unfolding, more than the limit of {limit}"
    )]
    LineTooLong {
        /// Physical line where it starts.
        line: usize,
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes of a line are not UTF-8.
    #[error("line {line}: content line is not valid UTF-8")]
    NotUtf8 {
        /// Physical line where it starts.
        line: usize,
    },
    /// The structure is broken: a line without colon, an unclosed or unopened component.
    #[error("line {line}: {message}")]
    Syntax {
        /// Physical line where the problem was found.
        line: usize,
        /// Description of the problem.
        message: String,
    },
    /// A property value cannot be read or breaks a rule.
    #[error("line {line}: {property} value {value:?} {problem}")]
    InvalidValue {
        /// Physical line of the property.
        line: usize,
        /// Property name.
        property: String,
        /// The value as written (cut to 60 characters).
        value: String,
        /// Description of the problem with the value.
        problem: String,
    },
    /// A component lacks a required property.
    #[error("line {line}: the {component} begun here has no {property}")]
    Missing {
        /// Physical line of the component's BEGIN.
        line: usize,
        /// Component name.
        component: String,
        /// Missing property name.
        property: String,
    },
    /// The file contains more of something than a limit allows.
    #[error("line {line}: more than {limit} {what}")]
    TooMany {
        /// Physical line where the limit was passed.
        line: usize,
        /// The thing counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A TZID names no known zone and the file has no VTIMEZONE for it.
    #[error(
        "line {line}: TZID {tzid:?} is not an IANA or Windows zone name and no VTIMEZONE in the file defines it"
    )]
    UnknownZone {
        /// Physical line of the property that uses it.
        line: usize,
        /// The TZID.
        tzid: String,
    },
    /// The file's VTIMEZONE for a TZID matches no IANA zone.
    #[error("line {line}: VTIMEZONE {tzid:?} matches no IANA zone: {reason}")]
    UnmatchedZone {
        /// Physical line of the VTIMEZONE's BEGIN.
        line: usize,
        /// The TZID.
        tzid: String,
        /// Reason no zone matched.
        reason: String,
    },
}

/// Parses a whole `.ics` file; any error rejects the whole file.
pub fn parse_calendar(bytes: &[u8]) -> Result<ParsedCalendar, IcsError> {
    // Some Windows exporters start the file with a UTF-8 byte order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let lines = lines::content_lines(bytes)?;
    let calendar = component::build_calendar(lines)?;
    import::import_calendar(&calendar)
}

#[cfg(test)]
mod fuzz_tests;
