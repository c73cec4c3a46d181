//! RSA keys of our actors, made on first use and kept in `actor_keys`.
//!
//! An *actor key* names one of our actors: `instance`, `calendar:<id>` or `person:<id>`.

use chrono::Utc;
use diesel::prelude::*;

use super::Error;
use crate::db::schema::actor_keys;
use crate::db::{AnyConnection, write_transaction};

/// A PEM-encoded RSA key pair.
#[derive(Clone)]
pub struct KeyPair {
    /// SPKI PEM, published in the actor document.
    pub public_key_pem: String,
    /// PKCS#8 PEM; never leaves the database except to sign.
    pub private_key_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key_pem", &self.public_key_pem)
            .finish_non_exhaustive()
    }
}

/// The key name of the instance actor.
pub const INSTANCE: &str = "instance";

/// Returns the key name of a calendar's actor.
pub fn calendar_key(calendar_id: i64) -> String {
    format!("calendar:{calendar_id}")
}

/// Returns the key name of a local person's actor.
pub fn person_key(person_id: &str) -> String {
    format!("person:{person_id}")
}

/// Returns the key pair of `actor_key`, generating and storing one on first use.
///
/// Two callers racing on first use both generate a key; the insert of the second is ignored
/// and both return the stored one.
pub fn key_pair(conn: &mut AnyConnection, actor_key: &str) -> Result<KeyPair, Error> {
    if let Some(found) = stored(conn, actor_key)? {
        return Ok(found);
    }
    let generated =
        activitypub_federation::http_signatures::generate_actor_keypair().map_err(|e| {
            Error::Key {
                actor: actor_key.to_owned(),
                detail: e.to_string(),
            }
        })?;
    write_transaction(conn, |conn| {
        if stored(conn, actor_key)?.is_none() {
            diesel::insert_into(actor_keys::table)
                .values((
                    actor_keys::actor_key.eq(actor_key),
                    actor_keys::public_key_pem.eq(&generated.public_key),
                    actor_keys::private_key_pem.eq(&generated.private_key),
                    actor_keys::created_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
        }
        Ok::<_, Error>(())
    })?;
    stored(conn, actor_key)?.ok_or_else(|| Error::Key {
        actor: actor_key.to_owned(),
        detail: "the key was stored but cannot be read back".to_owned(),
    })
}

/// Returns the stored key pair of `actor_key`, if it has one.
pub fn stored(conn: &mut AnyConnection, actor_key: &str) -> Result<Option<KeyPair>, Error> {
    let row: Option<(String, String)> = actor_keys::table
        .filter(actor_keys::actor_key.eq(actor_key))
        .select((actor_keys::public_key_pem, actor_keys::private_key_pem))
        .first(conn)
        .optional()?;
    Ok(row.map(|(public_key_pem, private_key_pem)| KeyPair {
        public_key_pem,
        private_key_pem,
    }))
}
