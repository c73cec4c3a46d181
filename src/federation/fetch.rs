//! Fetching ActivityPub documents from other servers, safely.
//!
//! Every fetch resolves the host first and rejects loopback, private, link-local, shared
//! (CGNAT), multicast and unspecified addresses, then connects to the address it checked, so a
//! second DNS answer cannot redirect it. Redirects are not followed. Bodies are capped and
//! every fetch is signed by the instance actor, because many servers require signed fetches.
//! The test setting `allow_localhost` lets `localhost` and 127.0.0.1 through when the URL names
//! an explicit port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use super::Settings;
use super::signature;

/// Largest document fetched, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Time allowed for one fetch, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most fetches one incoming activity may cause.
pub const MAX_FETCHES_PER_ACTIVITY: u32 = 3;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an http(s) URL with a host.
    #[error("URL {0:?} is not an http or https URL with a host")]
    BadUrl(String),
    /// The host resolves to an address we never contact.
    #[error("URL {url} resolves to {address}, a private, loopback or link-local address")]
    Forbidden {
        /// The URL.
        url: String,
        /// The rejected address.
        address: IpAddr,
    },
    /// The host does not resolve.
    #[error("host of {url} does not resolve: {detail}")]
    Resolve {
        /// The URL.
        url: String,
        /// The resolver's error.
        detail: String,
    },
    /// The budget of fetches for this activity is spent.
    #[error(
        "fetch of {0} refused: this activity already used its {MAX_FETCHES_PER_ACTIVITY} fetches"
    )]
    BudgetSpent(String),
    /// The connection or transfer failed.
    #[error("fetch of {url} failed: {detail}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server returned a status other than 200.
    #[error("fetch of {url} returned HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than the cap.
    #[error("document at {url} is larger than the limit of {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
    /// The body is not a JSON object.
    #[error("document at {url} is not a JSON object: {detail}")]
    NotJson {
        /// The URL.
        url: String,
        /// The parse error.
        detail: String,
    },
}

/// How many fetches an incoming activity may still make.
#[derive(Debug)]
pub struct FetchBudget {
    remaining: u32,
}

impl Default for FetchBudget {
    fn default() -> Self {
        FetchBudget {
            remaining: MAX_FETCHES_PER_ACTIVITY,
        }
    }
}

impl FetchBudget {
    fn spend(&mut self, url: &str) -> Result<(), FetchError> {
        if self.remaining == 0 {
            return Err(FetchError::BudgetSpent(url.to_owned()));
        }
        self.remaining -= 1;
        Ok(())
    }
}

/// A key to sign fetches with: the instance actor's.
#[derive(Clone)]
pub struct FetchSigner {
    /// `keyId` to send.
    pub key_id: String,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
}

/// Fetches `url` as ActivityPub JSON and returns the object, after the address checks.
pub async fn fetch_json(
    settings: &Settings,
    signer: Option<&FetchSigner>,
    budget: &mut FetchBudget,
    url: &str,
) -> Result<Value, FetchError> {
    budget.spend(url)?;
    let parsed = url::Url::parse(url).map_err(|_| FetchError::BadUrl(url.to_owned()))?;
    let address = checked_address(settings, &parsed).await?;

    let request = build_request(&parsed, address, signer)?;
    let mut response = request.send().await.map_err(|e| transport(url, &e))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }

    let body = read_limited(&mut response, url).await?;
    parse_object(&body, url)
}

/// A GET pinned to the checked address, signed when a signer is given.
fn build_request(
    url: &url::Url,
    address: SocketAddr,
    signer: Option<&FetchSigner>,
) -> Result<reqwest::RequestBuilder, FetchError> {
    let text = url.as_str();
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::BadUrl(text.to_owned()))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .resolve(host, address)
        .build()
        .map_err(|e| transport(text, &e))?;
    let request = client.get(url.clone()).header(
        "Accept",
        "application/activity+json, application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"",
    );
    let Some(signer) = signer else {
        return Ok(request);
    };
    let headers = signature::sign(
        "GET",
        url,
        None,
        &signer.key_id,
        &signer.private_key_pem,
        chrono::Utc::now(),
    )
    .map_err(|detail| FetchError::Transport {
        url: text.to_owned(),
        detail,
    })?;
    Ok(request
        .header("Date", headers.date)
        .header("Signature", headers.signature))
}

/// Reads the body, stopping at [`MAX_DOCUMENT_BYTES`].
async fn read_limited(response: &mut reqwest::Response, url: &str) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, &e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_object(body: &[u8], url: &str) -> Result<Value, FetchError> {
    let value =
        super::incoming::parse_bounded_json(body).map_err(|detail| FetchError::NotJson {
            url: url.to_owned(),
            detail,
        })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(FetchError::NotJson {
            url: url.to_owned(),
            detail: "top level is not an object".to_owned(),
        })
    }
}

fn transport(url: &str, error: &reqwest::Error) -> FetchError {
    FetchError::Transport {
        url: url.to_owned(),
        detail: error.to_string(),
    }
}

/// Resolves the URL's host and returns an address we may connect to.
pub(crate) async fn checked_address(
    settings: &Settings,
    url: &url::Url,
) -> Result<SocketAddr, FetchError> {
    let text = url.as_str().to_owned();
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl(text));
    }
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::BadUrl(text.clone()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadUrl(text.clone()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| FetchError::Resolve {
            url: text.clone(),
            detail: e.to_string(),
        })?
        .collect();
    let local_allowed = settings.allow_localhost && url.port().is_some();
    // Every address must pass: a name that resolves to one public and one private address
    // could otherwise be steered to the private one.
    for address in &addresses {
        let ip = address.ip();
        if !(is_public(ip) || local_allowed && ip.is_loopback()) {
            return Err(FetchError::Forbidden {
                url: text,
                address: ip,
            });
        }
    }
    // IPv4 first: `localhost` often resolves to ::1 first while test peers listen on
    // 127.0.0.1, and one address is all a pinned connection can use.
    let chosen = addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addresses.first());
    chosen.copied().ok_or(FetchError::Resolve {
        url: text,
        detail: "no addresses".to_owned(),
    })
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                // 100.64.0.0/10, shared address space (RFC 6598).
                || (a == 100 && (64..128).contains(&b))
                // 0.0.0.0/8 and 240.0.0.0/4.
                || a == 0
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // IPv4-compatible (::/96) and NAT64 (64:ff9b::/96) addresses end in an IPv4
            // address, and 6to4 (2002::/16) ones carry one after the prefix. A relay may
            // deliver to that IPv4 address, so it must be public too.
            if segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(IpAddr::V4(embedded_ipv4(segments[6], segments[7])));
            }
            if segments[0] == 0x2002
                && !is_public(IpAddr::V4(embedded_ipv4(segments[1], segments[2])))
            {
                return false;
            }
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // 2001:db8::/32, documentation.
                || (first == 0x2001 && segments[1] == 0x0db8))
        }
    }
}

/// Builds the IPv4 address whose high and low 16 bits are `high` and `low`.
fn embedded_ipv4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

#[cfg(test)]
mod tests {
    use super::{FetchBudget, MAX_FETCHES_PER_ACTIVITY, is_public};

    #[test]
    fn fetch_budget_runs_out() {
        let mut budget = FetchBudget::default();
        for _ in 0..MAX_FETCHES_PER_ACTIVITY {
            assert!(budget.spend("https://a.example/x").is_ok());
        }
        assert!(budget.spend("https://a.example/x").is_err());
    }

    #[test]
    fn non_public_addresses_are_rejected() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::1",
            "2001:db8::1",
        ] {
            let ip = text.parse().map_err(|_| text);
            assert_eq!(ip.map(is_public), Ok(false), "{text}");
        }
        for text in ["93.184.216.34", "2606:4700::1111", "64:ff9b::5db8:d822"] {
            let ip = text.parse().map_err(|_| text);
            assert_eq!(ip.map(is_public), Ok(true), "{text}");
        }
    }
}
