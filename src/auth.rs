//! Write tokens: random bearer secrets, stored only as SHA-256 hashes.

use std::fmt::Write;

use base64::Engine;
use chrono::Utc;
use diesel::prelude::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::AnyConnection;
use crate::db::schema::api_tokens;

/// Prefix of every token, so a leaked one is easy to recognise in logs and scanners.
const TOKEN_PREFIX: &str = "rev1_";

/// Creates a token, stores its hash and returns the secret (shown once).
pub fn create_token(conn: &mut AnyConnection, label: &str) -> Result<String, crate::db::Error> {
    let mut secret = [0_u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::token_hash.eq(hash_token(&token)),
            api_tokens::label.eq(label),
            api_tokens::created_at.eq(Utc::now().naive_utc()),
        ))
        .execute(conn)?;
    Ok(token)
}

/// Whether `token` is one we issued.
pub fn token_is_valid(conn: &mut AnyConnection, token: &str) -> Result<bool, crate::db::Error> {
    let count = api_tokens::table
        .filter(api_tokens::token_hash.eq(hash_token(token)))
        .count()
        .get_result::<i64>(conn)?;
    Ok(count > 0)
}

pub(crate) fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}
