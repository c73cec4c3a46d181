//! Actor documents as we serve them.

use serde::Serialize;
use serde_json::Value;

/// An ActivityStreams actor: `Group` for a calendar, `Person`, or the instance `Application`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// JSON-LD context.
    #[serde(rename = "@context")]
    pub context: Value,
    /// Dereferenceable id.
    pub id: String,
    /// `Group`, `Person` or `Application`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The name in `acct:` addresses.
    pub preferred_username: String,
    /// Display name.
    pub name: String,
    /// Plain-text description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Where activities for this actor are posted.
    pub inbox: String,
    /// Activities this actor published.
    pub outbox: String,
    /// Who follows it, for actors that can be followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub followers: Option<String>,
    /// Human-facing page.
    pub url: String,
    /// Whether follows wait for approval.
    pub manually_approves_followers: bool,
    /// Whether directories may list it.
    pub discoverable: bool,
    /// The shared inbox.
    pub endpoints: Endpoints,
    /// The key that signs its requests.
    pub public_key: PublicKey,
}

/// Server-wide endpoints of an actor.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The instance inbox.
    pub shared_inbox: String,
}

/// A public key in the security vocabulary.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKey {
    /// `<actor>#main-key`.
    pub id: String,
    /// The actor id.
    pub owner: String,
    /// SPKI PEM.
    pub public_key_pem: String,
}

/// An `OrderedCollection` with its first items inline.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderedCollection {
    /// JSON-LD context.
    #[serde(rename = "@context")]
    pub context: &'static str,
    /// Dereferenceable id.
    pub id: String,
    /// Always `OrderedCollection`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// How many items there are in all.
    pub total_items: i64,
    /// The newest items (all of them when the collection is small).
    pub ordered_items: Vec<Value>,
}
