//! Push subscriptions: the browser's `PushSubscription` (endpoint and keys) for a person.
//!
//! The endpoint is the identity: subscribing the same endpoint again replaces its keys and
//! owner, and a push service's 404 or 410 removes exactly the endpoint that failed, so a
//! browser that re-subscribed (new endpoint) keeps its new row.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{Error, check_person_id};
use crate::calendar::validate::InvalidField;
use crate::db::schema::push_subscriptions;
use crate::db::{AnyConnection, write_transaction};

/// Maximum endpoint URL length, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// Maximum subscriptions per person (browsers and devices).
pub const MAX_SUBSCRIPTIONS_PER_PERSON: i64 = 20;

/// The browser's `PushSubscription.toJSON()`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct BrowserSubscription {
    /// Push service URL.
    pub endpoint: String,
    /// Keys for RFC 8291 encryption.
    pub keys: BrowserKeys,
    /// When the browser will drop it (milliseconds since 1970), if the browser sets it.
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<f64>,
}

/// The `keys` member of a browser subscription.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct BrowserKeys {
    /// P-256 public key, uncompressed point, base64url.
    pub p256dh: String,
    /// 16-byte authentication secret, base64url.
    pub auth: String,
}

/// A stored subscription.
#[derive(Clone, Debug, PartialEq, Queryable, serde::Serialize)]
pub struct Subscription {
    /// Database id.
    pub id: i64,
    /// Owner.
    pub person: String,
    /// Push service URL.
    pub endpoint: String,
    /// P-256 public key, base64url.
    #[serde(skip)]
    pub p256dh: String,
    /// Authentication secret, base64url.
    #[serde(skip)]
    pub auth: String,
    /// When it was stored.
    #[serde(skip)]
    pub created_at: NaiveDateTime,
}

/// Checks a browser subscription. Endpoints must be `https://` URLs; `allow_loopback_http`
/// also admits `http://127.0.0.1` and `http://localhost`, for tests with a local push service.
pub fn check(
    subscription: &BrowserSubscription,
    allow_loopback_http: bool,
) -> Result<(), InvalidField> {
    let endpoint = &subscription.endpoint;
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(InvalidField::new(
            "endpoint",
            endpoint,
            format!(
                "is {} bytes long, the limit is {MAX_ENDPOINT_BYTES}",
                endpoint.len()
            ),
        ));
    }
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| InvalidField::new("endpoint", endpoint, format!("is not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let allowed =
        url.scheme() == "https" || (allow_loopback_http && url.scheme() == "http" && loopback);
    if !allowed || url.host_str().is_none() {
        return Err(InvalidField::new(
            "endpoint",
            endpoint,
            "must be an https:// URL",
        ));
    }
    let key = decode("keys.p256dh", &subscription.keys.p256dh)?;
    if key.len() != 65 || key[0] != 4 {
        return Err(InvalidField::new(
            "keys.p256dh",
            &subscription.keys.p256dh,
            format!(
                "must be an uncompressed P-256 point (65 bytes), got {} bytes",
                key.len()
            ),
        ));
    }
    let auth = decode("keys.auth", &subscription.keys.auth)?;
    if auth.len() != 16 {
        return Err(InvalidField::new(
            "keys.auth",
            &subscription.keys.auth,
            format!("must be 16 bytes, got {}", auth.len()),
        ));
    }
    Ok(())
}

fn decode(field: &str, text: &str) -> Result<Vec<u8>, InvalidField> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| InvalidField::new(field, text, format!("is not base64url: {e}")))
}

/// Stores a subscription for `person`, replacing the keys and owner of the same endpoint.
pub fn subscribe(
    conn: &mut AnyConnection,
    person: &str,
    subscription: &BrowserSubscription,
    allow_loopback_http: bool,
    now: DateTime<Utc>,
) -> Result<Subscription, Error> {
    check_person_id("person", person)?;
    check(subscription, allow_loopback_http)?;
    write_transaction(conn, |conn| {
        let existing = find_by_endpoint(conn, &subscription.endpoint)?;
        if let Some(existing) = existing {
            diesel::update(push_subscriptions::table.find(existing.id))
                .set((
                    push_subscriptions::person.eq(person),
                    push_subscriptions::p256dh.eq(&subscription.keys.p256dh),
                    push_subscriptions::auth.eq(&subscription.keys.auth),
                ))
                .execute(conn)?;
        } else {
            let count = push_subscriptions::table
                .filter(push_subscriptions::person.eq(person))
                .count()
                .get_result::<i64>(conn)?;
            if count >= MAX_SUBSCRIPTIONS_PER_PERSON {
                return Err(InvalidField::new(
                    "person",
                    person,
                    format!("has {count} push subscriptions, the limit is {MAX_SUBSCRIPTIONS_PER_PERSON}"),
                )
                .into());
            }
            diesel::insert_into(push_subscriptions::table)
                .values((
                    push_subscriptions::person.eq(person),
                    push_subscriptions::endpoint.eq(&subscription.endpoint),
                    push_subscriptions::p256dh.eq(&subscription.keys.p256dh),
                    push_subscriptions::auth.eq(&subscription.keys.auth),
                    push_subscriptions::created_at.eq(now.naive_utc()),
                ))
                .execute(conn)?;
        }
        find_by_endpoint(conn, &subscription.endpoint)?
            .ok_or_else(|| Error::Corrupt("subscription vanished after insert".to_owned()))
    })
}

/// Removes the subscription with this endpoint; `false` when there was none.
pub fn unsubscribe(conn: &mut AnyConnection, endpoint: &str) -> Result<bool, Error> {
    let deleted =
        diesel::delete(push_subscriptions::table.filter(push_subscriptions::endpoint.eq(endpoint)))
            .execute(conn)?;
    Ok(deleted > 0)
}

/// Removes subscription `id` if it still has `endpoint` (after a 404 or 410 from it).
pub fn remove_gone(conn: &mut AnyConnection, id: i64, endpoint: &str) -> Result<bool, Error> {
    let deleted = diesel::delete(
        push_subscriptions::table
            .filter(push_subscriptions::id.eq(id))
            .filter(push_subscriptions::endpoint.eq(endpoint)),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

/// Loads one subscription.
pub fn find(conn: &mut AnyConnection, id: i64) -> Result<Option<Subscription>, Error> {
    Ok(push_subscriptions::table
        .find(id)
        .first::<Subscription>(conn)
        .optional()?)
}

/// Loads the subscriptions with these ids; missing ids are left out.
pub fn find_all(conn: &mut AnyConnection, ids: &[i64]) -> Result<Vec<Subscription>, Error> {
    let mut found = Vec::with_capacity(ids.len());
    // Chunks keep within SQLite's limit on bound parameters.
    for chunk in ids.chunks(500) {
        found.extend(
            push_subscriptions::table
                .filter(push_subscriptions::id.eq_any(chunk))
                .load::<Subscription>(conn)?,
        );
    }
    Ok(found)
}

/// Loads the subscription with this endpoint.
pub fn find_by_endpoint(
    conn: &mut AnyConnection,
    endpoint: &str,
) -> Result<Option<Subscription>, Error> {
    Ok(push_subscriptions::table
        .filter(push_subscriptions::endpoint.eq(endpoint))
        .first::<Subscription>(conn)
        .optional()?)
}

/// Loads a person's subscriptions, oldest first.
pub fn of_person(conn: &mut AnyConnection, person: &str) -> Result<Vec<Subscription>, Error> {
    Ok(push_subscriptions::table
        .filter(push_subscriptions::person.eq(person))
        .order(push_subscriptions::id.asc())
        .load::<Subscription>(conn)?)
}
