//! Our actors: where they live and what their documents contain.
//!
//! | actor | id | type |
//! | --- | --- | --- |
//! | the instance | `/actor` | `Application`, signs our fetches |
//! | a calendar | `/calendars/{slug}` | `Group`, followable from Mastodon |
//! | a local person | `/people/{id}` | `Person`, the same id bookings use as attendee |
//!
//! Every actor shares the instance inbox `/inbox`; each also has its own inbox path, which
//! leads to the same handler.

use serde_json::json;

use super::keys::{self, KeyPair};
use super::protocol::{Actor, Endpoints, PublicKey};
use super::{Error, Settings};
use crate::calendar::Calendar;
use crate::calendar::validate::InvalidField;
use crate::db::AnyConnection;

/// Maximum length of a person id, in characters.
pub const MAX_PERSON_ID_CHARS: usize = 200;
/// The instance actor's `preferredUsername`, also its WebFinger name.
pub const INSTANCE_USERNAME: &str = "events";

/// Returns the instance actor's id.
pub fn instance_id(public_url: &str) -> String {
    format!("{public_url}/actor")
}

/// Returns the id of the actor of calendar `slug`.
pub fn calendar_id(public_url: &str, slug: &str) -> String {
    format!("{public_url}/calendars/{slug}")
}

/// Returns the id of the actor of local person `person`.
pub fn person_id(public_url: &str, person: &str) -> String {
    format!("{public_url}/people/{person}")
}

/// Checks a person id: 1 to 200 characters of `A-Z a-z 0-9 . _ @ : + -`.
pub fn check_person_id(person: &str) -> Result<(), InvalidField> {
    let count = person.chars().count();
    if count == 0 || count > MAX_PERSON_ID_CHARS {
        return Err(InvalidField::new(
            "person",
            person,
            format!("must have 1 to {MAX_PERSON_ID_CHARS} characters, has {count}"),
        ));
    }
    if let Some(bad) = person
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._@:+-".contains(*c)))
    {
        return Err(InvalidField::new(
            "person",
            person,
            format!("contains {bad:?}; only A-Z, a-z, 0-9 and . _ @ : + - are allowed"),
        ));
    }
    Ok(())
}

/// Makes sure a local person has an actor (and so a key), for when they act on remote events.
pub fn ensure_person(conn: &mut AnyConnection, person: &str) -> Result<KeyPair, Error> {
    check_person_id(person)?;
    keys::key_pair(conn, &keys::person_key(person))
}

fn context() -> serde_json::Value {
    json!([
        "https://www.w3.org/ns/activitystreams",
        "https://w3id.org/security/v1",
        {
            "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
            "toot": "http://joinmastodon.org/ns#",
            "discoverable": "toot:discoverable"
        }
    ])
}

struct Parts<'a> {
    id: String,
    kind: &'static str,
    username: &'a str,
    name: &'a str,
    summary: Option<String>,
    followers: bool,
    manual: bool,
    key: KeyPair,
}

fn document(settings: &Settings, parts: Parts<'_>) -> Actor {
    let id = parts.id;
    Actor {
        context: context(),
        inbox: format!("{id}/inbox"),
        outbox: format!("{id}/outbox"),
        followers: parts.followers.then(|| format!("{id}/followers")),
        url: id.clone(),
        kind: parts.kind,
        preferred_username: parts.username.to_owned(),
        name: parts.name.to_owned(),
        summary: parts.summary,
        manually_approves_followers: parts.manual,
        discoverable: parts.followers,
        endpoints: Endpoints {
            shared_inbox: format!("{}/inbox", settings.public_url),
        },
        public_key: PublicKey {
            id: format!("{id}#main-key"),
            owner: id.clone(),
            public_key_pem: parts.key.public_key_pem,
        },
        id,
    }
}

/// Builds the instance actor's document, making its key on first use.
pub fn instance_document(conn: &mut AnyConnection, settings: &Settings) -> Result<Actor, Error> {
    let key = keys::key_pair(conn, keys::INSTANCE)?;
    Ok(document(
        settings,
        Parts {
            id: instance_id(&settings.public_url),
            kind: "Application",
            username: INSTANCE_USERNAME,
            name: "rose-events",
            summary: Some(
                "The instance actor of this rose-events server; its followers receive the \
                 events of every calendar."
                    .to_owned(),
            ),
            followers: false,
            manual: false,
            key,
        },
    ))
}

/// Builds a calendar actor's document, making its key on first use.
pub fn calendar_document(
    conn: &mut AnyConnection,
    settings: &Settings,
    calendar: &Calendar,
) -> Result<Actor, Error> {
    let key = keys::key_pair(conn, &keys::calendar_key(calendar.id))?;
    let manual = super::follows::manually_approves(conn, calendar.id)?;
    Ok(document(
        settings,
        Parts {
            id: calendar_id(&settings.public_url, &calendar.slug),
            kind: "Group",
            username: &calendar.slug,
            name: &calendar.name,
            summary: Some(format!(
                "Events of {}, times in {}.",
                calendar.name, calendar.default_zone
            )),
            followers: true,
            manual,
            key,
        },
    ))
}

/// Builds a person actor's document, or `None` when that person has no actor yet.
pub fn person_document(
    conn: &mut AnyConnection,
    settings: &Settings,
    person: &str,
) -> Result<Option<Actor>, Error> {
    check_person_id(person)?;
    let Some(key) = keys::stored(conn, &keys::person_key(person))? else {
        return Ok(None);
    };
    Ok(Some(document(
        settings,
        Parts {
            id: person_id(&settings.public_url, person),
            kind: "Person",
            username: person,
            name: person,
            summary: None,
            followers: false,
            manual: false,
            key,
        },
    )))
}
