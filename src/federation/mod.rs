//! ActivityPub: how our events look on the wire (FEP-8a8e `Event` objects).
//!
//! `protocol` holds the wire shapes only; `objects` converts between them and calendar types.

pub mod objects;
pub mod protocol;

/// Media type of ActivityPub documents.
pub const ACTIVITY_JSON: &str = "application/activity+json";
/// The JSON-LD profile form of the same media type, which some servers send in `Accept`.
pub const LD_JSON_PROFILE: &str =
    "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"";

/// Whether an `Accept` header asks for ActivityPub JSON.
pub fn wants_activity_json(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let media = part.trim().to_ascii_lowercase();
        media.starts_with("application/activity+json")
            || (media.starts_with("application/ld+json")
                && media.contains("https://www.w3.org/ns/activitystreams"))
    })
}
