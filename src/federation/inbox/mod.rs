//! The inbox: every POST to `/inbox` (or an actor's own inbox) passes the same five steps, in
//! this order, each a function below that returns a typed [`Rejection`]:
//!
//! 1. **signature** – body size, JSON depth and envelope, the `Digest` over the raw bytes, the
//!    `Signature` header's coverage and its time window, and a key on the actor's host. No
//!    request leaves the server before these pass, so unsigned junk costs no fetch. A delivery
//!    whose exact body was processed before stops here with no second effect.
//! 2. **actor** – the sender's key, from the cache or fetched from the actor id (never from an
//!    arbitrary `keyId`), bound to the actor: the key must be the actor's own.
//! 3. **trust gate** – the sender's server in the peers table: blocked servers are rejected,
//!    untrusted ones may follow our calendars but their content is never merged.
//! 4. **verify** – the RSA signature, then the activity's own rules (its id on the actor's
//!    host).
//! 5. **receive** – the effect, in one transaction with the replay receipt.
//!
//! A peer's mistake is a 4xx: a 5xx would make the sender retry forever.

mod activities;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::fetch::{FetchBudget, FetchSigner, fetch_json};
use super::incoming::{self, Envelope};
use super::peers::{self, PeerState};
use super::remote_actors::{self, RemoteActor};
use super::signature::{self, RequestParts, SignatureError, SignatureHeader};
use super::{Settings, domain_of, hex};
use crate::calendar::validate::InvalidField;
use crate::db::DbPool;
use crate::db::schema::inbox_receipts;

/// Largest inbox body accepted, in bytes.
pub const MAX_INBOX_BODY_BYTES: usize = 256 * 1024;

/// A request as it reached the inbox.
#[derive(Debug, Clone)]
pub struct InboxRequest {
    /// HTTP method.
    pub method: String,
    /// Path with query, as sent.
    pub path_and_query: String,
    /// Headers as (lowercase name, value).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// Why the inbox refused a delivery; becomes a problem+json response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// Its value.
    pub value: Option<String>,
    /// What is wrong, for the sender.
    pub detail: String,
    /// The limit that was broken, when one was.
    pub limit: Option<usize>,
}

impl Rejection {
    fn new(status: u16, detail: impl Into<String>) -> Self {
        Rejection {
            status,
            field: None,
            value: None,
            detail: detail.into(),
            limit: None,
        }
    }

    fn invalid(field: &InvalidField) -> Self {
        Rejection {
            status: 422,
            field: Some(field.field.clone()),
            value: Some(field.value.clone()),
            detail: field.to_string(),
            limit: None,
        }
    }

    fn unauthorized(error: &SignatureError) -> Self {
        Rejection::new(401, error.to_string())
    }

    fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "inbox failed");
        Rejection::new(500, "internal error")
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.detail)
    }
}

/// What the inbox did with an accepted delivery (status 202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Short description of the effect, or why there was none.
    pub effect: String,
}

/// A delivery that passed the signature step.
struct Checked {
    activity: Value,
    envelope: Envelope,
    signature: SignatureHeader,
    body_sha256: String,
    now: DateTime<Utc>,
}

/// How far the sender is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    Trusted,
    Untrusted,
}

/// What the inbox needs: storage, settings and the key our fetches are signed with.
#[derive(Clone)]
pub struct InboxContext {
    /// Database connections.
    pub pool: DbPool,
    /// Federation settings.
    pub settings: Settings,
}

impl InboxContext {
    /// Runs blocking database work on the blocking thread pool.
    async fn db<T, F>(&self, work: F) -> Result<T, Rejection>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::db::AnyConnection) -> Result<T, Rejection> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| Rejection::internal(&e))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| Rejection::internal(&e))?
    }

    async fn signer(&self) -> Result<FetchSigner, Rejection> {
        let key_id = format!(
            "{}#main-key",
            super::actors::instance_id(&self.settings.public_url)
        );
        let pair = self
            .db(|conn| {
                super::keys::key_pair(conn, super::keys::INSTANCE)
                    .map_err(|e| Rejection::internal(&e))
            })
            .await?;
        Ok(FetchSigner {
            key_id,
            private_key_pem: pair.private_key_pem,
        })
    }
}

/// Processes one inbox delivery through the five steps, and logs a rejection with the
/// sender's host and the reason.
#[tracing::instrument(skip_all, fields(peer, activity, actor))]
pub async fn receive(context: &InboxContext, request: &InboxRequest) -> Result<Receipt, Rejection> {
    let result = run_steps(context, request).await;
    if let Err(rejection) = &result {
        tracing::info!(
            status = rejection.status,
            reason = %rejection.detail,
            "inbox rejected a delivery"
        );
    }
    result
}

async fn run_steps(context: &InboxContext, request: &InboxRequest) -> Result<Receipt, Rejection> {
    let checked = check_signature(&context.settings, request)?;
    let peer = domain_of(&checked.envelope.actor).unwrap_or_default();
    tracing::Span::current()
        .record("peer", peer.as_str())
        .record("activity", checked.envelope.id.as_str())
        .record("actor", checked.envelope.actor.as_str());
    if already_received(context, &checked.body_sha256).await? {
        return Ok(Receipt {
            effect: "duplicate delivery, already processed".into(),
        });
    }
    let mut budget = FetchBudget::default();
    let (actor, from_cache) = match load_actor(context, &checked, &mut budget, true).await {
        Ok(found) => found,
        Err(rejection) if is_delete_of_self(&checked) => {
            // Servers announce a deleted account signed by that account, whose key is gone.
            tracing::debug!(reason = %rejection, "ignored Delete of an actor we cannot fetch");
            return Ok(Receipt {
                effect: "ignored: Delete of an unknown actor".into(),
            });
        }
        Err(rejection) => return Err(rejection),
    };
    let trust = trust_gate(context, &checked.envelope).await?;
    let actor = match verify_signature(&checked, request, &actor) {
        Ok(()) => actor,
        // The actor may have rotated its key under the same key id: fetch it once more.
        Err(_) if from_cache => {
            let (fresh, _) = load_actor(context, &checked, &mut budget, false).await?;
            verify_signature(&checked, request, &fresh)?;
            fresh
        }
        Err(rejection) => return Err(rejection),
    };
    verify_activity(&checked)?;
    activities::dispatch(context, checked, &actor, trust, &mut budget).await
}

/// Step 1: everything that needs no fetch.
fn check_signature(settings: &Settings, request: &InboxRequest) -> Result<Checked, Rejection> {
    if request.body.len() > MAX_INBOX_BODY_BYTES {
        return Err(Rejection {
            status: 413,
            field: Some("body".into()),
            value: Some(format!("{} bytes", request.body.len())),
            detail: format!(
                "inbox body is {} bytes, the limit is {MAX_INBOX_BODY_BYTES}",
                request.body.len()
            ),
            limit: Some(MAX_INBOX_BODY_BYTES),
        });
    }
    incoming::check_depth(&request.body).map_err(|detail| Rejection {
        status: 400,
        field: Some("body".into()),
        value: None,
        detail,
        limit: Some(incoming::MAX_JSON_DEPTH),
    })?;
    let activity = incoming::parse_bounded_json(&request.body).map_err(|detail| Rejection {
        status: 400,
        field: Some("body".into()),
        value: None,
        detail: format!("body is not an ActivityPub JSON document: {detail}"),
        limit: None,
    })?;
    let envelope = incoming::envelope(&activity).map_err(|e| Rejection::invalid(&e))?;
    let parts = parts(request);
    let header = parts
        .header("signature")
        .ok_or_else(|| Rejection::unauthorized(&SignatureError::Missing("Signature")))?;
    let signature =
        signature::parse_signature_header(&header).map_err(|e| Rejection::unauthorized(&e))?;
    signature::check_digest(&parts, &request.body).map_err(|e| Rejection::unauthorized(&e))?;
    let now = settings.clock.now();
    signature::check_coverage_and_time(&signature, &parts, now)
        .map_err(|e| Rejection::unauthorized(&e))?;
    if domain_of(&signature.key_id) != domain_of(&envelope.actor) {
        return Err(Rejection::new(
            401,
            format!(
                "key {} is not on the host of actor {}",
                signature.key_id, envelope.actor
            ),
        ));
    }
    Ok(Checked {
        body_sha256: hex(&Sha256::digest(&request.body)),
        activity,
        envelope,
        signature,
        now,
    })
}

fn parts(request: &InboxRequest) -> RequestParts<'_> {
    RequestParts {
        method: &request.method,
        path_and_query: &request.path_and_query,
        headers: &request.headers,
    }
}

async fn already_received(context: &InboxContext, body_sha256: &str) -> Result<bool, Rejection> {
    let key = body_sha256.to_owned();
    context
        .db(move |conn| {
            let found: Option<String> = inbox_receipts::table
                .find(&key)
                .select(inbox_receipts::body_sha256)
                .first(conn)
                .optional()
                .map_err(|e| Rejection::internal(&e))?;
            Ok(found.is_some())
        })
        .await
}

fn is_delete_of_self(checked: &Checked) -> bool {
    checked.envelope.kind == "Delete"
        && checked.activity.get("object").and_then(incoming::id_of)
            == Some(checked.envelope.actor.as_str())
}

/// Step 2: the sender's key, bound to the sender.
/// Returns the actor and whether it came from the cache; `use_cache` false forces a fetch.
async fn load_actor(
    context: &InboxContext,
    checked: &Checked,
    budget: &mut FetchBudget,
    use_cache: bool,
) -> Result<(RemoteActor, bool), Rejection> {
    let actor_id = checked.envelope.actor.clone();
    let cached = if use_cache {
        let id = actor_id.clone();
        context
            .db(move |conn| remote_actors::cached(conn, &id).map_err(|e| Rejection::internal(&e)))
            .await?
    } else {
        None
    };
    if let Some(actor) = cached
        && actor.key_id == checked.signature.key_id
    {
        return Ok((actor, true));
    }

    // Blocked servers are not even fetched from.
    let domain = domain_of(&actor_id).unwrap_or_default();
    let blocked = {
        let domain = domain.clone();
        context
            .db(move |conn| {
                peers::find(conn, &domain)
                    .map(|p| p.is_some_and(|p| p.state == PeerState::Blocked))
                    .map_err(|e| Rejection::internal(&e))
            })
            .await?
    };
    if blocked {
        return Err(blocked_rejection(&domain));
    }

    let signer = context.signer().await?;
    let document = fetch_json(&context.settings, Some(&signer), budget, &actor_id)
        .await
        .map_err(|e| Rejection::new(401, format!("cannot fetch the sender's key: {e}")))?;
    let actor = remote_actors::from_document(&document, &actor_id)
        .map_err(|detail| Rejection::new(401, format!("sender's actor is unusable: {detail}")))?;

    if actor.key_id != checked.signature.key_id {
        return Err(Rejection::new(
            401,
            format!(
                "key {} is not the key of actor {actor_id} ({})",
                checked.signature.key_id, actor.key_id
            ),
        ));
    }
    let stored = actor.clone();
    context
        .db(move |conn| remote_actors::store(conn, &stored).map_err(|e| Rejection::internal(&e)))
        .await?;
    Ok((actor, false))
}

fn blocked_rejection(domain: &str) -> Rejection {
    tracing::info!(peer = %domain, decision = "rejected", reason = "peer is blocked", "inbox decision");
    Rejection::new(403, format!("server {domain} is blocked here"))
}

/// Step 3: the peers table.
async fn trust_gate(context: &InboxContext, envelope: &Envelope) -> Result<Trust, Rejection> {
    let domain = domain_of(&envelope.actor).unwrap_or_default();
    let policy = context.settings.policy;
    let state = {
        let domain = domain.clone();
        context
            .db(move |conn| {
                peers::effective_state(conn, &domain, policy).map_err(|e| Rejection::internal(&e))
            })
            .await?
    };
    match state {
        PeerState::Blocked => Err(blocked_rejection(&domain)),
        PeerState::Trusted => Ok(Trust::Trusted),
        PeerState::Pending => Ok(Trust::Untrusted),
    }
}

/// Step 4a: the signature itself, with the actor's key.
fn verify_signature(
    checked: &Checked,
    request: &InboxRequest,
    actor: &RemoteActor,
) -> Result<(), Rejection> {
    let parts = parts(request);
    let text = signature::signing_string(&checked.signature, &parts)
        .map_err(|e| Rejection::unauthorized(&e))?;
    signature::verify(&checked.signature, &text, &actor.public_key_pem)
        .map_err(|e| Rejection::unauthorized(&e))
}

/// Step 4b: the activity's own rules, which need no I/O.
fn verify_activity(checked: &Checked) -> Result<(), Rejection> {
    if domain_of(&checked.envelope.id) != domain_of(&checked.envelope.actor) {
        return Err(Rejection {
            status: 422,
            field: Some("id".into()),
            value: Some(checked.envelope.id.clone()),
            detail: format!(
                "activity id {} is not on the host of its actor {}",
                checked.envelope.id, checked.envelope.actor
            ),
            limit: None,
        });
    }
    Ok(())
}
