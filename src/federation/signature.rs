//! HTTP signatures, draft-cavage-http-signatures-12 as the Fediverse uses it.
//!
//! Verification accepts `algorithm="rsa-sha256"`, `"hs2019"` and a missing `algorithm`, all
//! read as RSASSA-PKCS1-v1_5 over SHA-256 because every sender that uses an RSA key means
//! that. The signed headers must cover `(request-target)`, `host`, `digest` and either `date`
//! or `(created)`, so that a signature cannot be moved to another path, host, body or time.
//! The `Digest` is checked against the raw body bytes before anything is parsed.
//!
//! Signing produces the form Mastodon sends: `(request-target) host date digest`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey};
use openssl::sign::{Signer, Verifier};
use sha2::{Digest as _, Sha256};

/// Maximum age of a signed `Date`.
pub const MAX_AGE: Duration = Duration::hours(1);
/// How far ahead of our clock a signed `Date` may be (clock skew).
pub const MAX_SKEW_AHEAD: Duration = Duration::minutes(5);
/// Longest `Signature` header we parse, in bytes.
const MAX_SIGNATURE_HEADER: usize = 4096;

/// Reasons a signed request is rejected. Every variant means 401 at the inbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("header {0:?} is missing")]
    Missing(&'static str),
    /// The `Signature` header cannot be parsed.
    #[error("Signature header is malformed: {0}")]
    Malformed(String),
    /// The `Digest` header does not match the body.
    #[error("Digest {0:?} does not match the SHA-256 of the body")]
    DigestMismatch(String),
    /// A header that must be signed is not in `headers=`.
    #[error("header {0:?} must be covered by the signature")]
    NotCovered(&'static str),
    /// The algorithm is not one we verify.
    #[error("algorithm {0:?} is not supported: use rsa-sha256 or hs2019 with an RSA key")]
    Algorithm(String),
    /// The signed time cannot be read.
    #[error("Date {0:?} is not an HTTP date")]
    BadDate(String),
    /// The signed time is outside the accepted window.
    #[error(
        "Date {date} is outside the accepted window of 1 hour in the past to 5 minutes ahead \
         of {now}"
    )]
    Expired {
        /// The signed time.
        date: String,
        /// Our clock.
        now: String,
    },
    /// The public key is not an RSA key in SPKI PEM.
    #[error("public key {0} is not an RSA key we can use")]
    KeyType(String),
    /// The signature does not verify.
    #[error("signature does not verify with key {0}")]
    Invalid(String),
}

/// A parsed `Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// URL of the key, usually the actor id with `#main-key`.
    pub key_id: String,
    /// The `algorithm` parameter as sent, if any.
    pub algorithm: Option<String>,
    /// Signed header names, lowercased, in order.
    pub headers: Vec<String>,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// `created` (seconds since the epoch), if sent.
    pub created: Option<i64>,
}

/// The parts of an HTTP request that a signature covers.
#[derive(Debug, Clone)]
pub struct RequestParts<'a> {
    /// Method, any case.
    pub method: &'a str,
    /// Path with the query string, as sent.
    pub path_and_query: &'a str,
    /// Headers as (lowercase name, value) pairs.
    pub headers: &'a [(String, String)],
}

impl RequestParts<'_> {
    /// Returns the value of header `name` (lowercase), joining repeats with ", " as RFC 9110 does.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Parses a `Signature` header value.
pub fn parse_signature_header(value: &str) -> Result<SignatureHeader, SignatureError> {
    if value.len() > MAX_SIGNATURE_HEADER {
        return Err(SignatureError::Malformed(format!(
            "{} bytes, the limit is {MAX_SIGNATURE_HEADER}",
            value.len()
        )));
    }
    let mut key_id = None;
    let mut algorithm = None;
    let mut headers = None;
    let mut signature = None;
    let mut created = None;
    for (name, raw) in split_parameters(value)? {
        match name.as_str() {
            "keyid" => key_id = Some(raw),
            "algorithm" => algorithm = Some(raw),
            "headers" => {
                headers = Some(
                    raw.split_ascii_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect(),
                );
            }
            "signature" => {
                let bytes = BASE64.decode(raw.as_bytes()).map_err(|e| {
                    SignatureError::Malformed(format!("signature is not base64: {e}"))
                })?;
                signature = Some(bytes);
            }
            "created" => {
                let seconds = raw.parse().map_err(|_| {
                    SignatureError::Malformed(format!("created {raw:?} is not a number"))
                })?;
                created = Some(seconds);
            }
            _ => {}
        }
    }
    Ok(SignatureHeader {
        key_id: key_id.ok_or_else(|| SignatureError::Malformed("keyId is missing".into()))?,
        algorithm,
        // draft-cavage: without `headers`, only `(created)` is signed (formerly `date`).
        headers: headers.unwrap_or_else(|| vec!["date".to_owned()]),
        signature: signature
            .ok_or_else(|| SignatureError::Malformed("signature is missing".into()))?,
        created,
    })
}

/// Splits `a="b",c=1` into lowercase names and unquoted values.
fn split_parameters(value: &str) -> Result<Vec<(String, String)>, SignatureError> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| SignatureError::Malformed(format!("no '=' in {rest:?}")))?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (raw, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| SignatureError::Malformed(format!("{name} is not closed")))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        out.push((name, raw.to_owned()));
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

/// Checks the `Digest` header against the SHA-256 of `body`.
pub fn check_digest(request: &RequestParts<'_>, body: &[u8]) -> Result<(), SignatureError> {
    let header = request
        .header("digest")
        .ok_or(SignatureError::Missing("Digest"))?;
    let expected = BASE64.encode(Sha256::digest(body));
    let matches = header.split(',').any(|part| {
        part.trim()
            .split_once('=')
            .is_some_and(|(alg, value)| alg.eq_ignore_ascii_case("sha-256") && value == expected)
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::DigestMismatch(header))
    }
}

/// Checks that the signature covers what it must, and that its time is inside the window
/// around `now`. Does no cryptography and no I/O, so it runs before any fetch.
pub fn check_coverage_and_time(
    signature: &SignatureHeader,
    request: &RequestParts<'_>,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    check_algorithm(signature.algorithm.as_deref())?;
    let covers = |name: &str| signature.headers.iter().any(|h| h == name);
    for name in ["(request-target)", "host", "digest"] {
        if !covers(name) {
            return Err(SignatureError::NotCovered(match name {
                "(request-target)" => "(request-target)",
                "host" => "host",
                _ => "digest",
            }));
        }
    }
    let signed_at = if covers("date") {
        let text = request
            .header("date")
            .ok_or(SignatureError::Missing("Date"))?;
        parse_http_date(&text).ok_or(SignatureError::BadDate(text))?
    } else if covers("(created)") {
        let seconds = signature
            .created
            .ok_or(SignatureError::Missing("created"))?;
        DateTime::from_timestamp(seconds, 0)
            .ok_or_else(|| SignatureError::BadDate(seconds.to_string()))?
    } else {
        return Err(SignatureError::NotCovered("date"));
    };
    if signed_at < now - MAX_AGE || signed_at > now + MAX_SKEW_AHEAD {
        return Err(SignatureError::Expired {
            date: signed_at.to_rfc3339(),
            now: now.to_rfc3339(),
        });
    }
    Ok(())
}

fn check_algorithm(algorithm: Option<&str>) -> Result<(), SignatureError> {
    match algorithm.map(str::to_ascii_lowercase).as_deref() {
        None | Some("hs2019" | "rsa-sha256") => Ok(()),
        Some(other) => Err(SignatureError::Algorithm(other.to_owned())),
    }
}

/// Reads the three date forms HTTP allows (RFC 9110 section 5.6.7): IMF-fixdate, RFC 850 and
/// asctime.
pub fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(date) = DateTime::parse_from_rfc2822(text) {
        return Some(date.to_utc());
    }
    let without_zone = text.strip_suffix(" GMT").unwrap_or(text);
    ["%A, %d-%b-%y %H:%M:%S", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(without_zone, format).ok())
        .map(|naive| naive.and_utc())
}

/// Builds the string that was signed, from the signed header names.
pub fn signing_string(
    signature: &SignatureHeader,
    request: &RequestParts<'_>,
) -> Result<String, SignatureError> {
    let mut lines = Vec::with_capacity(signature.headers.len());
    for name in &signature.headers {
        let value = match name.as_str() {
            "(request-target)" => format!(
                "{} {}",
                request.method.to_ascii_lowercase(),
                request.path_and_query
            ),
            "(created)" => signature
                .created
                .ok_or(SignatureError::Missing("created"))?
                .to_string(),
            other => request.header(other).ok_or_else(|| {
                SignatureError::Malformed(format!("signed header {other:?} is not in the request"))
            })?,
        };
        lines.push(format!("{name}: {value}"));
    }
    Ok(lines.join("\n"))
}

/// Largest RSA key accepted, in bits, which bounds the work one request can cost.
const MAX_KEY_BITS: u32 = 4096;

/// Verifies the signature bytes over `signing_string` with an SPKI PEM public key.
pub fn verify(
    signature: &SignatureHeader,
    signing_string: &str,
    public_key_pem: &str,
) -> Result<(), SignatureError> {
    let key = parsed_public_key(public_key_pem)
        .ok()
        .filter(|key| key.id() == Id::RSA && key.bits() <= MAX_KEY_BITS)
        .ok_or_else(|| SignatureError::KeyType(signature.key_id.clone()))?;
    let verified = Verifier::new(MessageDigest::sha256(), &key)
        .and_then(|mut verifier| {
            verifier.verify_oneshot(&signature.signature, signing_string.as_bytes())
        })
        .unwrap_or(false);
    if verified {
        Ok(())
    } else {
        Err(SignatureError::Invalid(signature.key_id.clone()))
    }
}

/// Runs every check on a signed request with a known key: digest, coverage, time and the
/// signature itself.
pub fn verify_request(
    request: &RequestParts<'_>,
    body: &[u8],
    now: DateTime<Utc>,
    public_key_pem: &str,
) -> Result<SignatureHeader, SignatureError> {
    let header = request
        .header("signature")
        .ok_or(SignatureError::Missing("Signature"))?;
    let signature = parse_signature_header(&header)?;
    check_digest(request, body)?;
    check_coverage_and_time(&signature, request, now)?;
    let text = signing_string(&signature, request)?;
    verify(&signature, &text, public_key_pem)?;
    Ok(signature)
}

/// Headers to add to a request so that it is signed by `key_id`.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// `Host` as signed.
    pub host: String,
    /// `Date` as signed.
    pub date: String,
    /// `Digest` of the body, when there is one.
    pub digest: Option<String>,
    /// The `Signature` header value.
    pub signature: String,
}

/// Signs a request: `(request-target) host date`, plus `digest` when a body is given.
pub fn sign(
    method: &str,
    url: &url::Url,
    body: Option<&[u8]>,
    key_id: &str,
    private_key_pem: &str,
    now: DateTime<Utc>,
) -> Result<SignedHeaders, String> {
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };

    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let digest = body.map(|b| format!("SHA-256={}", BASE64.encode(Sha256::digest(b))));
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut names = vec!["(request-target)", "host", "date"];
    let mut lines = vec![
        format!("(request-target): {} {target}", method.to_ascii_lowercase()),
        format!("host: {host}"),
        format!("date: {date}"),
    ];
    if let Some(digest) = &digest {
        names.push("digest");
        lines.push(format!("digest: {digest}"));
    }

    let signed = sign_bytes(lines.join("\n").as_bytes(), private_key_pem)
        .map_err(|e| format!("private key of {key_id} cannot sign: {e}"))?;
    let signature = format!(
        "keyId=\"{key_id}\",algorithm=\"rsa-sha256\",headers=\"{}\",signature=\"{}\"",
        names.join(" "),
        BASE64.encode(signed)
    );
    Ok(SignedHeaders {
        host,
        date,
        digest,
        signature,
    })
}

/// Signs `data` with RSASSA-PKCS1-v1_5 over SHA-256 and a PKCS#8 PEM private key, through
/// OpenSSL.
fn sign_bytes(data: &[u8], private_key_pem: &str) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let key = parsed_private_key(private_key_pem)?;
    Signer::new(MessageDigest::sha256(), &key)?.sign_oneshot_to_vec(data)
}

/// Keys parsed so far, by their PEM text, at most [`PARSED_KEYS`] of each kind. Parsing a
/// PEM key through OpenSSL costs more than the signature it is used for, and every delivery
/// is signed and every inbox request verified with one of a few keys, so each is parsed once.
/// A changed key has a new PEM text and so a new entry.
const PARSED_KEYS: usize = 4096;

type KeyCache<T> = std::sync::Mutex<std::collections::HashMap<String, PKey<T>>>;

fn parsed_key<T>(
    cache: &'static std::sync::OnceLock<KeyCache<T>>,
    pem: &str,
    parse: impl FnOnce(&[u8]) -> Result<PKey<T>, openssl::error::ErrorStack>,
) -> Result<PKey<T>, openssl::error::ErrorStack> {
    use std::sync::PoisonError;
    let keys = cache.get_or_init(KeyCache::default);
    if let Some(key) = keys.lock().unwrap_or_else(PoisonError::into_inner).get(pem) {
        return Ok(key.clone());
    }
    let key = parse(pem.as_bytes())?;
    let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
    if keys.len() >= PARSED_KEYS {
        keys.clear();
    }
    keys.insert(pem.to_owned(), key.clone());
    Ok(key)
}

fn parsed_private_key(
    pem: &str,
) -> Result<PKey<openssl::pkey::Private>, openssl::error::ErrorStack> {
    static KEYS: std::sync::OnceLock<KeyCache<openssl::pkey::Private>> = std::sync::OnceLock::new();
    parsed_key(&KEYS, pem, PKey::private_key_from_pem)
}

fn parsed_public_key(pem: &str) -> Result<PKey<openssl::pkey::Public>, openssl::error::ErrorStack> {
    static KEYS: std::sync::OnceLock<KeyCache<openssl::pkey::Public>> = std::sync::OnceLock::new();
    parsed_key(&KEYS, pem, PKey::public_key_from_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_with_commas_inside_quotes_are_split_correctly() {
        let parsed = parse_signature_header(
            "keyId=\"https://a.example/u#k\",algorithm=\"hs2019\",\
             headers=\"(request-target) host date digest\",signature=\"AAEC\"",
        );
        let parsed = parsed.map_err(|e| e.to_string());
        assert_eq!(
            parsed.as_ref().map(|s| s.key_id.as_str()),
            Ok("https://a.example/u#k")
        );
        assert_eq!(parsed.as_ref().map(|s| s.headers.len()), Ok(4));
        assert_eq!(parsed.map(|s| s.signature), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn signature_verifies_with_the_matching_key_only() {
        let pair = activitypub_federation::http_signatures::generate_actor_keypair()
            .map_err(|e| e.to_string());
        let Ok(pair) = pair else {
            panic!("key generation failed: {pair:?}");
        };
        let url = url::Url::parse("https://b.example/inbox").unwrap_or_else(|e| panic!("{e}"));
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .map(|d| d.to_utc())
            .unwrap_or_default();
        let signed = sign(
            "POST",
            &url,
            Some(b"{}"),
            "https://a.example/u#k",
            &pair.private_key,
            now,
        );
        let header =
            signed.and_then(|s| parse_signature_header(&s.signature).map_err(|e| e.to_string()));
        let Ok(header) = header else {
            panic!("signing failed: {header:?}");
        };
        let text = format!(
            "(request-target): post /inbox\nhost: b.example\ndate: Tue, 01 Jan 2030 00:00:00 GMT\n\
             digest: SHA-256={}",
            BASE64.encode(Sha256::digest(b"{}"))
        );
        assert_eq!(verify(&header, &text, &pair.public_key), Ok(()));
        assert!(matches!(
            verify(&header, &format!("{text}x"), &pair.public_key),
            Err(SignatureError::Invalid(_))
        ));
        assert!(matches!(
            verify(&header, &text, "not a key"),
            Err(SignatureError::KeyType(_))
        ));
    }

    #[test]
    fn http_dates_in_all_three_forms_parse() {
        let expected = DateTime::parse_from_rfc3339("1994-11-06T08:49:37Z")
            .map(|d| d.to_utc())
            .ok();
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(parse_http_date("aaaa"), None);
    }
}
