//! ActivityPub federation: our actors, the FEP-8a8e `Event` objects we publish, the inbox with
//! its trust gate, the peers we trust and the outbox.
//!
//! Vocabulary used throughout:
//! - an *actor* is anything with an inbox and a key. Ours are one `Group` per calendar, one
//!   `Person` per local person and one `Application` for the instance (it signs our fetches);
//! - a *peer* is another server, named by its host (with the port when it is not the default);
//! - *origin* of an object is the host of its id. Only the origin may update or delete it;
//! - a *remote event* is an `Event` received from a trusted peer and stored with its
//!   occurrences, so that the agenda can list it beside our own;
//! - an *occurrence object* is an `Event` for one occurrence of a series, linked to the series
//!   by `rose:series` and keyed by `rose:recurrenceId`, its original start in UTC. We publish
//!   one per upcoming occurrence ([`series`]) and merge peers' ones into their series
//!   ([`remote_series`]).
//!
//! `protocol` contains wire shapes only, and the other modules contain behaviour.

pub mod actors;
pub mod deliver;
pub mod discovery;
pub mod fetch;
pub mod follows;
pub mod inbox;
pub mod incoming;
pub mod keys;
pub mod objects;
pub mod outbox;
pub mod peers;
pub mod protocol;
pub mod publish;
pub mod published;
pub mod refresh;
pub mod remote;
pub mod remote_actors;
pub mod remote_series;
pub mod rsvp;
pub mod series;
pub mod signature;

use chrono::{DateTime, Utc};

/// Media type of ActivityPub documents.
pub const ACTIVITY_JSON: &str = "application/activity+json";
/// The JSON-LD profile form of the same media type, which some servers send in `Accept`.
pub const LD_JSON_PROFILE: &str =
    "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"";
/// The ActivityStreams public collection.
pub const PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";

/// Whether an `Accept` header requests ActivityPub JSON.
pub fn wants_activity_json(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let media = part.trim().to_ascii_lowercase();
        media.starts_with("application/activity+json")
            || (media.starts_with("application/ld+json")
                && media.contains("https://www.w3.org/ns/activitystreams"))
    })
}

/// Which peers' content the inbox merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrustPolicy {
    /// Only peers marked trusted (the default).
    AllowList,
    /// Every peer that is not blocked.
    Open,
}

/// The time source of signature checks, replaceable in tests.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant.
    Fixed(DateTime<Utc>),
}

impl Clock {
    /// The current instant on this clock.
    pub fn now(self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(instant) => instant,
        }
    }
}

/// Federation settings shared by the inbox, the fetcher and the routes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Our public base URL without a trailing slash.
    pub public_url: String,
    /// Which peers' content is merged.
    pub policy: TrustPolicy,
    /// Whether outbound fetches may reach `localhost` and 127.0.0.1 on an explicit port
    /// (for tests on one machine; never in production).
    pub allow_localhost: bool,
    /// Time source of the inbox.
    pub clock: Clock,
}

impl Settings {
    /// Our host with its port, as it appears in our actor ids.
    pub fn local_domain(&self) -> String {
        domain_of(&self.public_url).unwrap_or_default()
    }
}

/// Returns `bytes` as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The host of a URL with its port when the port is explicit, lowercased: the name of a peer.
pub fn domain_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed
        .host_str()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    Some(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Federation errors outside the inbox (which has its own rejection type).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query failed.
    #[error("database query failed: {0}")]
    Database(#[from] diesel::result::Error),
    /// An RSA key could not be made, read or used.
    #[error("RSA key for actor {actor}: {detail}")]
    Key {
        /// Which of our actors.
        actor: String,
        /// What failed.
        detail: String,
    },
    /// A fetch from another server failed.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// A peer could not be resolved to its application actor.
    #[error("cannot find the application actor of {domain}: {detail}")]
    PeerDiscovery {
        /// The peer.
        domain: String,
        /// What was tried and what failed.
        detail: String,
    },
    /// A value is invalid.
    #[error(transparent)]
    Invalid(#[from] crate::calendar::validate::InvalidField),
    /// Nothing with this name.
    #[error("{0}")]
    NotFound(String),
    /// Reading calendars or events failed.
    #[error(transparent)]
    Calendar(#[from] crate::calendar::Error),
    /// Enqueueing a delivery failed.
    #[error(transparent)]
    Delivery(#[from] crate::delivery::Error),
    /// The booking function failed, or reading an event's seats did.
    #[error(transparent)]
    Booking(#[from] crate::booking::Error),
    /// Scheduling or removing reminders failed.
    #[error(transparent)]
    Notify(#[from] crate::notify::Error),
}
