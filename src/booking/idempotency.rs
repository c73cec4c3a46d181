//! Idempotency keys: a retried request gets the first request's result instead of booking twice.
//!
//! A key is scoped to its caller (the hash of the bearer token) and stored with a fingerprint
//! of the request (method, path and body) and the response, in the same transaction as the
//! booking it produced. Only successful results are stored. Refusals (409) and server errors
//! ask the client to retry later, so a retry with the same key is decided afresh. Stored keys are kept
//! for [`RETENTION_HOURS`] hours.

use std::collections::HashMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::Error;
use crate::db::AnyConnection;
use crate::db::schema::idempotency_keys;

/// Hours a stored key is kept before [`purge_expired`] removes it; at least 24 hours are promised.
pub const RETENTION_HOURS: i64 = 48;
/// Maximum key length, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// A request sent with an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// Sender: the hash of the caller's bearer token.
    pub caller: String,
    /// The `Idempotency-Key` header value.
    pub key: String,
    /// SHA-256 of the method, path and body, hex.
    pub fingerprint: String,
    /// HTTP status returned when the request succeeds (a waitlisted request returns 202).
    pub success_status: u16,
}

/// A stored response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes of visible ASCII.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces".to_owned());
    }
    Ok(())
}

/// The fingerprint of a request: SHA-256 over method, path and body, hex.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Finds the stored response for `claim`: `None` when the key is new, an error when it was
/// used with a different request.
pub fn lookup(conn: &mut AnyConnection, claim: &Claim) -> Result<Option<StoredResponse>, Error> {
    let row = idempotency_keys::table
        .filter(idempotency_keys::caller.eq(&claim.caller))
        .filter(idempotency_keys::key.eq(&claim.key))
        .select((
            idempotency_keys::fingerprint,
            idempotency_keys::status,
            idempotency_keys::body,
        ))
        .first::<(String, i32, String)>(conn)
        .optional()?;
    match row {
        None => Ok(None),
        Some((stored, _, _)) if stored != claim.fingerprint => {
            Err(Error::KeyReused(claim.key.clone()))
        }
        Some((_, status, body)) => Ok(Some(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            body,
        })),
    }
}

/// Finds the stored responses for several claims with one query; each result is as
/// [`lookup`] gives it.
pub fn lookup_many(
    conn: &mut AnyConnection,
    claims: &[&Claim],
) -> Result<Vec<Result<Option<StoredResponse>, Error>>, Error> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut callers: Vec<&str> = claims.iter().map(|c| c.caller.as_str()).collect();
    callers.sort_unstable();
    callers.dedup();
    let keys: Vec<&str> = claims.iter().map(|c| c.key.as_str()).collect();
    let rows = idempotency_keys::table
        .filter(idempotency_keys::caller.eq_any(&callers))
        .filter(idempotency_keys::key.eq_any(&keys))
        .select((
            idempotency_keys::caller,
            idempotency_keys::key,
            idempotency_keys::fingerprint,
            idempotency_keys::status,
            idempotency_keys::body,
        ))
        .load::<(String, String, String, i32, String)>(conn)?;
    let stored: HashMap<(String, String), (String, i32, String)> = rows
        .into_iter()
        .map(|(caller, key, fingerprint, status, body)| {
            ((caller, key), (fingerprint, status, body))
        })
        .collect();
    Ok(claims
        .iter()
        .map(
            |claim| match stored.get(&(claim.caller.clone(), claim.key.clone())) {
                None => Ok(None),
                Some((fingerprint, _, _)) if *fingerprint != claim.fingerprint => {
                    Err(Error::KeyReused(claim.key.clone()))
                }
                Some((_, status, body)) => Ok(Some(StoredResponse {
                    status: u16::try_from(*status).unwrap_or(500),
                    body: body.clone(),
                })),
            },
        )
        .collect())
}

/// Stores responses for claims, inside the caller's transaction.
pub(super) fn store(
    conn: &mut AnyConnection,
    responses: &[(&Claim, StoredResponse)],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if responses.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = responses
        .iter()
        .map(|(claim, response)| {
            (
                idempotency_keys::caller.eq(claim.caller.clone()),
                idempotency_keys::key.eq(claim.key.clone()),
                idempotency_keys::fingerprint.eq(claim.fingerprint.clone()),
                idempotency_keys::status.eq(i32::from(response.status)),
                idempotency_keys::body.eq(response.body.clone()),
                idempotency_keys::created_at.eq(now.naive_utc()),
            )
        })
        .collect();
    // A key stored meanwhile by another process makes the insert fail with a unique
    // violation; the caller retries and then finds the stored response.
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::insert_into(idempotency_keys::table)
                .values(&rows)
                .execute(pg)?;
        }
        AnyConnection::Sqlite(sqlite) => {
            diesel::insert_into(idempotency_keys::table)
                .values(&rows)
                .execute(sqlite)?;
        }
    }
    Ok(())
}

/// Deletes keys older than [`RETENTION_HOURS`] and returns how many.
pub fn purge_expired(conn: &mut AnyConnection, now: DateTime<Utc>) -> Result<usize, Error> {
    let cutoff = (now - Duration::hours(RETENTION_HOURS)).naive_utc();
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
            .execute(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(
            fingerprint("POST", "/a", b"bc"),
            fingerprint("POST", "/ab", b"c")
        );
        assert_eq!(
            fingerprint("POST", "/a", b"{}"),
            fingerprint("POST", "/a", b"{}")
        );
    }

    #[test]
    fn key_must_be_visible_ascii() {
        assert!(check_key("order-17").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("with space").is_err());
        assert!(check_key(&"k".repeat(256)).is_err());
    }
}
