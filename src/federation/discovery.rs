//! Finding a peer's application actor and following it.
//!
//! A peer advertises its application actor in NodeInfo (FEP-2677: a link with rel
//! `https://www.w3.org/ns/activitystreams#Application`, which Gancio reads), or under
//! WebFinger as `acct:<host>@<host>` (Mastodon's instance actor) or `acct:relay@<host>`
//! (Mobilizon and Gancio). The first that returns an actor is used.

use activitypub_federation::fetch::webfinger::Webfinger;
use serde_json::{Value, json};

use super::fetch::{FetchBudget, FetchSigner, fetch_json};
use super::remote_actors::{self, RemoteActor};
use super::{Error, Settings, actors, keys, outbox, peers};
use crate::db::AnyConnection;

/// The FEP-2677 link relation of an application actor.
pub const APPLICATION_REL: &str = "https://www.w3.org/ns/activitystreams#Application";

/// Returns the base URL of a peer: https, or http for loopback hosts when tests allow them.
pub fn base_url(settings: &Settings, domain: &str) -> String {
    let host = domain.split(':').next().unwrap_or_default();
    let loopback = host == "localhost" || host == "127.0.0.1";
    if settings.allow_localhost && loopback {
        format!("http://{domain}")
    } else {
        format!("https://{domain}")
    }
}

/// Resolves the application actor of `domain`.
pub async fn resolve_application_actor(
    settings: &Settings,
    signer: &FetchSigner,
    domain: &str,
) -> Result<RemoteActor, Error> {
    let base = base_url(settings, domain);
    let mut budget = FetchBudget::default();
    let mut tried = Vec::new();
    let candidate = match nodeinfo_actor(settings, signer, &mut budget, &base).await {
        Ok(Some(actor)) => Some(actor),
        Ok(None) => {
            tried.push("NodeInfo has no application link".to_owned());
            None
        }
        Err(e) => {
            tried.push(format!("NodeInfo: {e}"));
            None
        }
    };
    let actor_id = match candidate {
        Some(id) => id,
        None => webfinger_actor(settings, signer, &base, domain, &mut tried)
            .await
            .ok_or_else(|| Error::PeerDiscovery {
                domain: domain.to_owned(),
                detail: tried.join("; "),
            })?,
    };
    let mut budget = FetchBudget::default();
    let document = fetch_json(settings, Some(signer), &mut budget, &actor_id).await?;
    remote_actors::from_document(&document, &actor_id).map_err(|detail| Error::PeerDiscovery {
        domain: domain.to_owned(),
        detail,
    })
}

async fn nodeinfo_actor(
    settings: &Settings,
    signer: &FetchSigner,
    budget: &mut FetchBudget,
    base: &str,
) -> Result<Option<String>, Error> {
    let index = fetch_json(
        settings,
        Some(signer),
        budget,
        &format!("{base}/.well-known/nodeinfo"),
    )
    .await?;
    let links = index
        .get("links")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(links
        .iter()
        .find(|link| link.get("rel").and_then(Value::as_str) == Some(APPLICATION_REL))
        .and_then(|link| link.get("href").and_then(Value::as_str))
        .map(str::to_owned))
}

async fn webfinger_actor(
    settings: &Settings,
    signer: &FetchSigner,
    base: &str,
    domain: &str,
    tried: &mut Vec<String>,
) -> Option<String> {
    let host = domain.split(':').next().unwrap_or(domain);
    for user in [host, "relay"] {
        let mut budget = FetchBudget::default();
        let url = format!("{base}/.well-known/webfinger?resource=acct:{user}@{domain}");
        match fetch_json(settings, Some(signer), &mut budget, &url).await {
            Ok(document) => {
                let jrd: Webfinger = serde_json::from_value(document).unwrap_or_default();
                let href = jrd
                    .links
                    .iter()
                    .find(|link| link.rel.as_deref() == Some("self"))
                    .and_then(|link| link.href.as_ref());
                if let Some(href) = href {
                    return Some(href.to_string());
                }
                tried.push(format!("WebFinger acct:{user}@{domain} has no self link"));
            }
            Err(e) => tried.push(format!("WebFinger acct:{user}@{domain}: {e}")),
        }
    }
    None
}

/// Returns the key our instance actor signs fetches with, making it on first use.
pub fn instance_signer(
    conn: &mut AnyConnection,
    settings: &Settings,
) -> Result<FetchSigner, Error> {
    let pair = keys::key_pair(conn, keys::INSTANCE)?;
    Ok(FetchSigner {
        key_id: format!("{}#main-key", actors::instance_id(&settings.public_url)),
        private_key_pem: pair.private_key_pem,
    })
}

/// Stores a resolved peer actor and publishes a Follow of it from our instance actor.
pub fn record_and_follow(
    conn: &mut AnyConnection,
    settings: &Settings,
    domain: &str,
    actor: &RemoteActor,
) -> Result<(), Error> {
    crate::db::write_transaction(conn, |conn| {
        remote_actors::store(conn, actor)?;
        let ours = actors::instance_id(&settings.public_url);
        let follow_id = format!("{ours}#follow/{}", uuid::Uuid::new_v4());
        peers::set_actor(conn, domain, &actor.actor_id, &actor.inbox, &follow_id)?;
        let follow = json!({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": follow_id,
            "type": "Follow",
            "actor": ours,
            // Gancio ignores a Follow whose object is embedded instead of a plain IRI.
            "object": actor.actor_id,
            "to": [actor.actor_id],
        });
        outbox::publish(conn, &follow, std::slice::from_ref(&actor.inbox))?;
        Ok(())
    })
}
