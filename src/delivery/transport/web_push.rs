//! Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291).
//!
//! The web-push crate encrypts the payload and builds the request. We send it with our own
//! reqwest client, because the crate's clients have no timeout. We also mint the VAPID token
//! ourselves, because the crate's default `aud` drops the endpoint's port, and because one
//! token per push-service origin, reused until close to its expiry, saves an ECDSA signature
//! per message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use web_push::{
    ContentEncoding, PartialVapidSignatureBuilder, SubscriptionInfo, VapidSignature,
    VapidSignatureBuilder, WebPushMessageBuilder,
};

use crate::delivery::Clock;

/// Largest plaintext the web-push crate (0.11) encrypts. RFC 8291 allows 3,993 bytes in one
/// 4,096-byte record, but the crate stops at 3,052, the size all major push services take.
pub const MAX_PAYLOAD_BYTES: usize = 3052;
/// How long a minted VAPID token is valid. RFC 8292 allows at most 24 hours; 12 leaves room
/// for a sender whose clock runs ahead of the push service's.
const TOKEN_LIFETIME: Duration = Duration::hours(12);
/// A cached token with less than this left is minted again, so a request never carries a
/// token that expires in transit or during a slow retry.
const TOKEN_RENEW_MARGIN: Duration = Duration::hours(1);
/// Maximum wait for a push service, connection included.
const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Longest Retry-After we honour; a longer one is cut to this.
const MAX_RETRY_AFTER: StdDuration = StdDuration::from_secs(24 * 3600);
/// File name of the VAPID private key in the data directory.
pub const VAPID_KEY_FILE: &str = "vapid_private_key.pem";

/// Web Push errors that stop the transport from being built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file cannot be read, written or parsed.
    #[error("VAPID key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The VAPID subject breaks RFC 8292 or names a host push services refuse.
    #[error(
        "VAPID subject {0:?} is invalid: use mailto:address or an https:// URL of a public host"
    )]
    Subject(String),
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The server's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    builder: PartialVapidSignatureBuilder,
    public_key: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl VapidKey {
    /// Reads the key from `dir`, creating and storing a new one first if there is none.
    pub fn load_or_generate(dir: &Path) -> Result<VapidKey, Error> {
        let path = dir.join(VAPID_KEY_FILE);
        if !path.exists() {
            generate_key_file(&path, false)?;
            tracing::info!(path = %path.display(), "created VAPID key");
        }
        VapidKey::load(&path)
    }

    /// Reads a PEM key (PKCS#8 or SEC1).
    pub fn load(path: &Path) -> Result<VapidKey, Error> {
        let key_error = |reason: String| Error::Key {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| key_error(e.to_string()))?;
        let builder = VapidSignatureBuilder::from_pem_no_sub(pem.as_slice())
            .map_err(|e| key_error(format!("not a P-256 private key: {e}")))?;
        let public_key = URL_SAFE_NO_PAD.encode(builder.get_public_key());
        Ok(VapidKey {
            builder,
            public_key,
        })
    }

    /// Returns the public key in the form browsers take for `applicationServerKey`: the
    /// uncompressed P-256 point, base64url without padding.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }
}

/// Creates a new P-256 key and writes it as PKCS#8 PEM, readable by the owner only. An
/// existing file is replaced only when `replace` is set.
pub fn generate_key_file(path: &Path, replace: bool) -> Result<PathBuf, Error> {
    let key_error = |reason: String| Error::Key {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() && !replace {
        return Err(key_error(
            "exists already; pass --force to replace it".to_owned(),
        ));
    }
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
        .map_err(|e| key_error(e.to_string()))?;
    let key = openssl::ec::EcKey::generate(&group).map_err(|e| key_error(e.to_string()))?;
    let pem = openssl::pkey::PKey::from_ec_key(key)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .map_err(|e| key_error(e.to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| key_error(e.to_string()))?;
    }
    write_private(path, &pem).map_err(|e| key_error(e.to_string()))?;
    Ok(path.to_path_buf())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Checks a VAPID `sub` claim: a `mailto:` address or an `https:` URL, whose host is not
/// `localhost`, `*.local` or `*.invalid` (push services reject those).
pub fn check_subject(subject: &str) -> Result<(), Error> {
    let host = if let Some(address) = subject.strip_prefix("mailto:") {
        address.rsplit_once('@').map(|(_, host)| host.to_owned())
    } else if subject.starts_with("https://") {
        reqwest::Url::parse(subject)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
    } else {
        None
    };
    let Some(host) = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase()) else {
        return Err(Error::Subject(subject.to_owned()));
    };
    let last_label = host.rsplit('.').next().unwrap_or_default();
    let rejected = host.is_empty() || matches!(last_label, "localhost" | "local" | "invalid");
    if rejected {
        return Err(Error::Subject(subject.to_owned()));
    }
    Ok(())
}

/// Delivery urgency requested from the push service (RFC 8030 `Urgency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushUrgency {
    /// Deliver when convenient.
    VeryLow,
    /// Deliver on power and Wi-Fi.
    Low,
    /// Deliver now unless the device saves power.
    Normal,
    /// Deliver now.
    High,
}

/// One message to one subscription.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PushMessage {
    /// The subscription's endpoint URL.
    pub endpoint: String,
    /// The subscription's P-256 public key, base64url.
    pub p256dh: String,
    /// The subscription's authentication secret, base64url.
    pub auth: String,
    /// Plaintext to encrypt, at most [`MAX_PAYLOAD_BYTES`].
    pub payload: String,
    /// Seconds the push service keeps the message for an offline device.
    pub ttl: u32,
    /// Delivery urgency.
    pub urgency: PushUrgency,
    /// Replaces an undelivered message with the same topic: at most 32 base64url characters.
    pub topic: Option<String>,
}

/// Outcome of one push request, classified by the response status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushResult {
    /// 2xx: the push service took the message.
    Delivered,
    /// 404 or 410: the subscription no longer exists; never send to it again.
    Gone(u16),
    /// 413 or a payload the crate refuses: this body can never be sent.
    TooLarge(String),
    /// 429, 5xx, a timeout or a network error: try again, not before `after` if given.
    Retry {
        /// What failed.
        error: String,
        /// The push service's Retry-After.
        after: Option<StdDuration>,
    },
    /// Any other response, including a VAPID token rejected twice.
    Failed(String),
}

/// Sends Web Push messages.
pub struct WebPushTransport {
    key: VapidKey,
    subject: String,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    signature: VapidSignature,
    expires: DateTime<Utc>,
}

impl WebPushTransport {
    /// Creates a transport that signs with `key` as `subject`. The `clock` dates the VAPID
    /// tokens.
    pub fn new(key: VapidKey, subject: &str, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        check_subject(subject)?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(StdDuration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(WebPushTransport {
            key,
            subject: subject.to_owned(),
            client,
            clock,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the VAPID public key.
    pub fn public_key(&self) -> &str {
        self.key.public_key()
    }

    /// Encrypts and sends one message. A 401 or 403 (the push service rejected our token) drops
    /// the cached token and tries once more with a fresh one.
    pub async fn send(&self, message: &PushMessage) -> PushResult {
        let (status, body) = match self.send_once(message).await {
            Attempt::Answered(result) => return result,
            Attempt::Refused(status, body) => (status, body),
        };
        tracing::warn!(status, body = %body, "push service rejected our VAPID token; minting a new one");
        self.forget_token(&message.endpoint);
        match self.send_once(message).await {
            Attempt::Answered(result) => result,
            Attempt::Refused(status, body) => {
                tracing::error!(status, body = %body, "push service rejected a fresh VAPID token: check the VAPID key and subject");
                PushResult::Failed(format!(
                    "VAPID token rejected with {status} after minting a new one: {body}"
                ))
            }
        }
    }

    async fn send_once(&self, message: &PushMessage) -> Attempt {
        let request = match self.build_request(message) {
            Ok(request) => request,
            Err(result) => return Attempt::Answered(result),
        };
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                let kind = if error.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Attempt::Answered(PushResult::Retry {
                    error: format!("push request {kind}: {error}"),
                    after: None,
                });
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        match status {
            200..=299 => Attempt::Answered(PushResult::Delivered),
            401 | 403 => Attempt::Refused(status, body),
            404 | 410 => Attempt::Answered(PushResult::Gone(status)),
            413 => Attempt::Answered(PushResult::TooLarge(format!(
                "push service answered 413: {body}"
            ))),
            429 | 500..=599 => Attempt::Answered(PushResult::Retry {
                error: format!("push service answered {status}: {body}"),
                after: retry_after,
            }),
            _ => Attempt::Answered(PushResult::Failed(format!(
                "push service answered {status}: {body}"
            ))),
        }
    }

    fn build_request(&self, message: &PushMessage) -> Result<reqwest::Request, PushResult> {
        if message.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(PushResult::TooLarge(format!(
                "payload is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
                message.payload.len()
            )));
        }
        let info = SubscriptionInfo::new(
            message.endpoint.as_str(),
            message.p256dh.as_str(),
            message.auth.as_str(),
        );
        let signature = self
            .token_for(&message.endpoint)
            .map_err(PushResult::Failed)?;
        let mut builder = WebPushMessageBuilder::new(&info);
        builder.set_payload(ContentEncoding::Aes128Gcm, message.payload.as_bytes());
        builder.set_ttl(message.ttl);
        builder.set_urgency(crate_urgency(message.urgency));
        if let Some(topic) = &message.topic {
            builder.set_topic(topic.clone());
        }
        builder.set_vapid_signature(signature);
        let built = builder.build().map_err(|e| {
            PushResult::Failed(format!("cannot encrypt for this subscription: {e}"))
        })?;
        let request = web_push::request_builder::build_request::<Vec<u8>>(built);
        let (parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| PushResult::Failed(format!("invalid endpoint: {e}")))?;
        let mut out = reqwest::Request::new(reqwest::Method::POST, url);
        for (name, value) in &parts.headers {
            let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
            ) else {
                return Err(PushResult::Failed(format!("invalid header {name}")));
            };
            out.headers_mut().insert(name, value);
        }
        *out.body_mut() = Some(body.into());
        Ok(out)
    }

    /// Returns the VAPID token for the endpoint's origin: the cached one while it has more
    /// than [`TOKEN_RENEW_MARGIN`] left, else a new one valid for [`TOKEN_LIFETIME`].
    fn token_for(&self, endpoint: &str) -> Result<VapidSignature, String> {
        let audience = audience(endpoint)?;
        let now = self.clock.now();
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cached) = tokens.get(&audience)
            && cached.expires - now > TOKEN_RENEW_MARGIN
        {
            return Ok(cached.signature.clone());
        }
        let expires = now + TOKEN_LIFETIME;
        let info = SubscriptionInfo::new(endpoint, "", "");
        let mut builder = self.key.builder.clone().add_sub_info(&info);
        builder.add_claim("aud", audience.as_str());
        builder.add_claim("exp", expires.timestamp());
        builder.add_claim("sub", self.subject.as_str());
        let signature = builder
            .build()
            .map_err(|e| format!("cannot sign the VAPID token for {audience}: {e}"))?;
        tokens.insert(
            audience,
            CachedToken {
                signature: signature.clone(),
                expires,
            },
        );
        Ok(signature)
    }

    fn forget_token(&self, endpoint: &str) {
        if let Ok(audience) = audience(endpoint) {
            self.tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&audience);
        }
    }

    /// Encrypts and signs `message` as [`send`](Self::send) would, without sending it; returns
    /// the body length. For the benchmark's encryption-only baseline.
    pub fn encrypt_only(&self, message: &PushMessage) -> Result<usize, String> {
        match self.build_request(message) {
            Ok(request) => Ok(request
                .body()
                .and_then(|b| b.as_bytes())
                .map_or(0, <[u8]>::len)),
            Err(result) => Err(format!("{result:?}")),
        }
    }

    /// Returns the `(token, expiry)` that the next message to `endpoint` would carry.
    pub fn current_token(&self, endpoint: &str) -> Result<(String, DateTime<Utc>), String> {
        self.token_for(endpoint)?;
        let audience = audience(endpoint)?;
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cached = tokens
            .get(&audience)
            .ok_or_else(|| format!("no token for {audience}"))?;
        Ok((cached.signature.auth_t.clone(), cached.expires))
    }
}

enum Attempt {
    Answered(PushResult),
    Refused(u16, String),
}

/// Returns the VAPID audience of an endpoint: its origin, `scheme://host[:port]`, keeping a
/// non-default port.
pub fn audience(endpoint: &str) -> Result<String, String> {
    let url =
        reqwest::Url::parse(endpoint).map_err(|e| format!("invalid endpoint {endpoint:?}: {e}"))?;
    let origin = url.origin();
    if origin.is_tuple() {
        Ok(origin.ascii_serialization())
    } else {
        Err(format!("endpoint {endpoint:?} has no origin"))
    }
}

/// Reads `Retry-After` as seconds or as an HTTP date, capped at one day.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<StdDuration> {
    let value = value.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        StdDuration::from_secs(seconds)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or_default()
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

fn crate_urgency(urgency: PushUrgency) -> web_push::Urgency {
    match urgency {
        PushUrgency::VeryLow => web_push::Urgency::VeryLow,
        PushUrgency::Low => web_push::Urgency::Low,
        PushUrgency::Normal => web_push::Urgency::Normal,
        PushUrgency::High => web_push::Urgency::High,
    }
}

/// Derives the Topic header value of a dedup key: 32 base64url characters of its SHA-256, so
/// every resend of one job carries the same topic and a push service replaces the earlier
/// copy.
pub fn topic_for(dedup_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dedup_key.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_keeps_a_non_default_port() {
        assert_eq!(
            audience("https://push.example.net:8443/wpush/v2/abc?x=1").as_deref(),
            Ok("https://push.example.net:8443")
        );
        assert_eq!(
            audience("https://web.push.example.com/QK9v").as_deref(),
            Ok("https://web.push.example.com")
        );
        assert_eq!(
            audience("https://push.example.net:443/a").as_deref(),
            Ok("https://push.example.net")
        );
    }

    #[test]
    fn subject_rules() {
        assert!(check_subject("mailto:ops@events.example").is_ok());
        assert!(check_subject("https://events.example/contact").is_ok());
        for refused in [
            "ops@events.example",
            "mailto:ops@localhost",
            "mailto:relay@box.local",
            "mailto:security@x.invalid",
            "https://localhost/contact",
            "http://events.example/contact",
        ] {
            assert!(check_subject(refused).is_err(), "{refused} was accepted");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now: DateTime<Utc> = "2026-05-02T08:00:00Z".parse().unwrap_or_default();
        assert_eq!(
            parse_retry_after("120", now),
            Some(StdDuration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sat, 02 May 2026 08:05:00 GMT", now),
            Some(StdDuration::from_secs(300))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn topic_is_stable_and_short() {
        let topic = topic_for("reminder:1:single:vera:push:60");
        assert_eq!(topic.len(), 32);
        assert_eq!(topic, topic_for("reminder:1:single:vera:push:60"));
        assert_ne!(topic, topic_for("reminder:1:single:vera:push:1440"));
    }
}
