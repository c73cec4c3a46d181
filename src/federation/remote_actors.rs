//! Remote actors' public keys and inboxes, fetched once and cached.

use chrono::Utc;
use diesel::prelude::*;
use serde_json::Value;

use super::Error;
use super::incoming::id_of;
use crate::db::AnyConnection;
use crate::db::schema::remote_actors;

/// The stored part of a remote actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteActor {
    /// Actor id.
    pub actor_id: String,
    /// Id of its public key.
    pub key_id: String,
    /// SPKI PEM.
    pub public_key_pem: String,
    /// Its own inbox.
    pub inbox: String,
    /// Its server's shared inbox, if it has one.
    pub shared_inbox: Option<String>,
}

/// Reads an actor document fetched from `expected_id`.
///
/// The document must carry that id (a server could otherwise serve another actor's key at
/// this URL), a public key owned by it, and an inbox on the same host.
pub fn from_document(document: &Value, expected_id: &str) -> Result<RemoteActor, String> {
    let id = document
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if id != expected_id {
        return Err(format!("document at {expected_id} has id {id:?}"));
    }

    let key = match document.get("publicKey") {
        Some(Value::Array(keys)) => keys.first(),
        other => other,
    }
    .ok_or_else(|| format!("actor {id} has no publicKey"))?;
    let owner = key.get("owner").and_then(id_of).unwrap_or(id);
    if owner != id {
        return Err(format!("key of actor {id} is owned by {owner}"));
    }
    let key_id = id_of(key).ok_or_else(|| format!("key of actor {id} has no id"))?;
    let pem = key
        .get("publicKeyPem")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("key of actor {id} has no publicKeyPem"))?;

    let inbox = document
        .get("inbox")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("actor {id} has no inbox"))?;
    if super::domain_of(inbox) != super::domain_of(id) {
        return Err(format!("inbox {inbox} of actor {id} is on another host"));
    }
    let shared_inbox = document
        .get("endpoints")
        .and_then(|e| e.get("sharedInbox"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(RemoteActor {
        actor_id: id.to_owned(),
        key_id: key_id.to_owned(),
        public_key_pem: pem.to_owned(),
        inbox: inbox.to_owned(),
        shared_inbox,
    })
}

/// Returns the cached actor, if any.
pub fn cached(conn: &mut AnyConnection, actor_id: &str) -> Result<Option<RemoteActor>, Error> {
    let row: Option<(String, String, String, String, Option<String>)> = remote_actors::table
        .find(actor_id)
        .select((
            remote_actors::actor_id,
            remote_actors::key_id,
            remote_actors::public_key_pem,
            remote_actors::inbox,
            remote_actors::shared_inbox,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(
        |(actor_id, key_id, public_key_pem, inbox, shared_inbox)| RemoteActor {
            actor_id,
            key_id,
            public_key_pem,
            inbox,
            shared_inbox,
        },
    ))
}

/// Stores (or replaces) a fetched actor.
///
/// Several deliveries from a sender we have not seen yet arrive together, and each fetches
/// and stores its actor; the upsert lets them all succeed instead of failing all but one on
/// the primary key, which would answer 500 and make the sender back off.
pub fn store(conn: &mut AnyConnection, actor: &RemoteActor) -> Result<(), Error> {
    let now = Utc::now().naive_utc();
    let values = (
        remote_actors::actor_id.eq(&actor.actor_id),
        remote_actors::key_id.eq(&actor.key_id),
        remote_actors::public_key_pem.eq(&actor.public_key_pem),
        remote_actors::inbox.eq(&actor.inbox),
        remote_actors::shared_inbox.eq(&actor.shared_inbox),
        remote_actors::fetched_at.eq(now),
    );
    let changes = (
        remote_actors::key_id.eq(&actor.key_id),
        remote_actors::public_key_pem.eq(&actor.public_key_pem),
        remote_actors::inbox.eq(&actor.inbox),
        remote_actors::shared_inbox.eq(&actor.shared_inbox),
        remote_actors::fetched_at.eq(now),
    );
    match conn {
        AnyConnection::Postgresql(pg) => diesel::insert_into(remote_actors::table)
            .values(values)
            .on_conflict(remote_actors::actor_id)
            .do_update()
            .set(changes)
            .execute(pg)?,
        AnyConnection::Sqlite(lite) => diesel::insert_into(remote_actors::table)
            .values(values)
            .on_conflict(remote_actors::actor_id)
            .do_update()
            .set(changes)
            .execute(lite)?,
    };
    Ok(())
}
