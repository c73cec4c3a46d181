//! Delivery of published activities: one queue job per recipient inbox, signed at send time.
//!
//! [`super::outbox::publish`] enqueues the jobs in the transaction that records the activity,
//! so a crash loses no delivery. The worker signs each POST with the sending actor's current
//! key (draft-cavage, rsa-sha256, over `(request-target) host date digest`) just before it
//! goes out, so a retry days later still carries a fresh `Date`.
//!
//! Each send also reads and updates the health of the inbox's domain
//! ([`crate::delivery::domains`]): while a domain fails, its jobs wait for the domain's next
//! attempt time, and while it is dead they stay parked between probes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Settings;
use super::fetch::{FetchError, checked_address};
use super::signature;
use crate::db::{AnyConnection, DbPool};
use crate::delivery::NewJob;
use crate::delivery::domains::{
    self, DomainHealth, DomainPolicy, DomainState, Gate, MAX_RETRY_AFTER,
};
use crate::delivery::queue;
use crate::delivery::worker::{BoxFuture, JobHandler};
use crate::delivery::{Clock, Job, Outcome};

/// Job kind of an ActivityPub delivery.
pub const KIND: &str = "activitypub";
/// How long a delivery keeps being retried before the job dies.
pub const DELIVERY_DEADLINE_DAYS: i64 = 7;
/// Attempts before a delivery dies, spread over the deadline by the queue's backoff.
pub const MAX_ATTEMPTS: i32 = 25;
/// Time allowed for one POST, connection included.
const SEND_TIMEOUT: StdDuration = StdDuration::from_secs(20);

/// The payload of one delivery job.
#[derive(Debug, Serialize, Deserialize)]
struct Delivery {
    /// The sending actor's id, which selects the signing key.
    actor: String,
    /// The recipient inbox URL.
    inbox: String,
    /// The activity as published.
    activity: Value,
}

/// Enqueues one delivery job per inbox, in the caller's transaction. The dedup key is the
/// activity id and the inbox, so publishing the same activity twice sends it once.
pub fn enqueue(
    conn: &mut AnyConnection,
    actor: &str,
    activity_id: &str,
    activity: &Value,
    inboxes: &[String],
    now: DateTime<Utc>,
) -> Result<(), crate::delivery::Error> {
    for inbox in inboxes {
        let payload = serde_json::to_value(Delivery {
            actor: actor.to_owned(),
            inbox: inbox.clone(),
            activity: activity.clone(),
        })
        .unwrap_or(Value::Null);
        queue::enqueue(
            conn,
            &NewJob {
                kind: KIND.to_owned(),
                dedup_key: format!("{KIND}/{activity_id}/{inbox}"),
                payload,
                run_at: now,
                deadline: Some(now + Duration::days(DELIVERY_DEADLINE_DAYS)),
                max_attempts: MAX_ATTEMPTS,
            },
            now,
        )?;
    }
    Ok(())
}

/// Sends delivery jobs, keeping each destination domain's health (see
/// [`crate::delivery::domains`]): a job for a failing domain waits for the domain's next
/// attempt time instead of trying on its own.
///
/// Waiting jobs are deferred by the handler: claimed, found waiting, and put back to the
/// domain's next attempt time without spending an attempt. The claim query stays the plain
/// index scan over due jobs, and a waiting job costs one claim per backoff period of its
/// domain. Filtering waiting jobs out in the claim query instead would make every claim step
/// over all the due jobs of every failing domain, which grows with the outage.
pub struct DeliveryHandler {
    pool: DbPool,
    settings: Settings,
    policy: DomainPolicy,
    clock: Arc<dyn Clock>,
    /// Health of the domains of the current batches, read once per batch by `prepare` and
    /// kept up to date by this process's own results. `None`: no failure recorded, or
    /// healthy again.
    health: Mutex<HashMap<String, Option<DomainHealth>>>,
    /// Signing keys (key id and PEM) of the current batches' actors, read once per batch by
    /// `prepare`. `None`: the actor is gone.
    keys: Mutex<HashMap<String, Option<(String, String)>>>,
    /// HTTP clients by host and checked address. Deliveries to one server share a client and
    /// its open connections instead of building a client, TLS settings included, per job.
    clients: Mutex<HashMap<(String, SocketAddr), reqwest::Client>>,
}

/// Domains whose health is kept in memory at most; the map is emptied when it grows past this.
const HEALTH_CACHE_SIZE: usize = 10_000;
/// HTTP clients kept at most; the map is emptied when it grows past this.
const CLIENT_CACHE_SIZE: usize = 1_000;

/// Permission for a job of a domain to go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pass {
    /// The domain is healthy.
    Healthy,
    /// This job took the trial of a failing domain.
    Trial,
    /// Not before this instant, for this reason.
    Wait(DateTime<Utc>, String),
}

/// Result of an attempt, as it bears on the domain's health.
enum Attempt {
    /// The server responded, even if only to reject the delivery: it is up.
    Answered(Outcome),
    /// The server could not be reached or reported overload (408, 429, 5xx).
    Unreachable {
        error: String,
        retry_after: Option<StdDuration>,
    },
    /// Nothing reached the server, for a reason on our side.
    NotSent(Outcome),
}

impl DeliveryHandler {
    /// A handler that reads signing keys from `pool`, checks addresses with `settings`, keeps
    /// domain health by `policy` and dates it by `clock`, the worker's clock.
    pub fn new(
        pool: DbPool,
        settings: Settings,
        policy: DomainPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        DeliveryHandler {
            pool,
            settings,
            policy,
            clock,
            health: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn send(&self, job: &Job, started: DateTime<Utc>) -> Outcome {
        let delivery: Delivery = match serde_json::from_str(&job.payload) {
            Ok(delivery) => delivery,
            Err(error) => return Outcome::Failed(format!("invalid delivery payload: {error}")),
        };
        let (Ok(url), Some(domain)) = (
            url::Url::parse(&delivery.inbox),
            super::domain_of(&delivery.inbox),
        ) else {
            return Outcome::Failed(format!("inbox {:?} is not a URL", delivery.inbox));
        };

        let pass = match self.pass(&domain, started).await {
            Ok(Pass::Wait(until, note)) => return Outcome::Defer { until, note },
            Ok(pass) => pass,
            Err(error) => return Outcome::Retry { error, after: None },
        };
        let attempt = self.attempt(&delivery, &url, started).await;
        self.settle(&domain, &pass, attempt, started).await
    }

    /// Decides whether a job for `domain` may be sent at `now`, taking the trial when the
    /// failing domain's next attempt time has come.
    async fn pass(&self, domain: &str, now: DateTime<Utc>) -> Result<Pass, String> {
        let health = self.health_of(domain).await?;
        match domains::gate(health.as_ref(), now) {
            Gate::Open => Ok(Pass::Healthy),
            Gate::Wait(until, note) => Ok(Pass::Wait(until, note)),
            Gate::TrialDue => self.take_trial(domain, now).await,
        }
    }

    async fn take_trial(&self, domain: &str, now: DateTime<Utc>) -> Result<Pass, String> {
        let (name, hold) = (domain.to_owned(), self.policy.trial_hold);
        let (won, health) = self
            .with_conn(move |conn| {
                let won = domains::take_trial(conn, &name, now, hold)?;
                Ok::<_, crate::delivery::Error>((won, domains::find(conn, &name)?))
            })
            .await?;
        self.remember(domain, health.clone());
        if won {
            tracing::info!(domain, "trying one delivery to a failing domain");
            return Ok(Pass::Trial);
        }
        Ok(match domains::gate(health.as_ref(), now) {
            Gate::Open => Pass::Healthy,
            Gate::Wait(until, note) => Pass::Wait(until, note),
            // Another worker's trial is being recorded right now; come back after the hold.
            Gate::TrialDue => Pass::Wait(
                now + hold,
                format!("waiting for the trial delivery to domain {domain}"),
            ),
        })
    }

    /// Records what the attempt showed about the domain and returns the job's outcome.
    async fn settle(
        &self,
        domain: &str,
        pass: &Pass,
        attempt: Attempt,
        started: DateTime<Utc>,
    ) -> Outcome {
        match attempt {
            Attempt::NotSent(outcome) => outcome,
            Attempt::Answered(outcome) => {
                if *pass == Pass::Trial || self.cached_failing(domain) {
                    self.record_answer(domain).await;
                }
                outcome
            }
            Attempt::Unreachable { error, retry_after } => {
                self.record_failure(domain, pass, error, retry_after, started)
                    .await
            }
        }
    }

    /// Records that a failing domain responded, which makes it healthy.
    async fn record_answer(&self, domain: &str) {
        let (name, now) = (domain.to_owned(), self.clock.now());
        let recorded = self
            .with_conn(move |conn| domains::record_success(conn, &name, now))
            .await;
        if let Err(error) = recorded {
            tracing::warn!(domain, error = %error, "cannot record that a domain responded");
        } else {
            self.remember(domain, None);
        }
    }

    async fn record_failure(
        &self,
        domain: &str,
        pass: &Pass,
        error: String,
        retry_after: Option<StdDuration>,
        started: DateTime<Utc>,
    ) -> Outcome {
        let now = self.clock.now();
        let (name, text, policy) = (domain.to_owned(), error.clone(), self.policy);
        let recorded = self
            .with_conn(move |conn| {
                let failure = domains::Failure {
                    started,
                    now,
                    error: &text,
                    retry_after,
                };
                domains::record_failure(conn, &name, &failure, &policy)
            })
            .await;
        let health = match recorded {
            Ok(health) => health,
            Err(cause) => {
                tracing::warn!(domain, error = %cause, "cannot record a failure of a domain");
                return Outcome::Retry {
                    error,
                    after: retry_after,
                };
            }
        };
        self.remember(domain, Some(health.clone()));
        let next = health.next_attempt_at.filter(|next| *next > now);
        match (pass, next) {
            // The trial stood for the whole domain: the job itself did not fail.
            (Pass::Trial, Some(until)) => Outcome::Defer {
                until,
                note: domains::waiting_note(&health),
            },
            (_, Some(until)) => Outcome::Retry {
                error,
                after: (until - now).to_std().ok(),
            },
            (_, None) => Outcome::Retry {
                error,
                after: retry_after,
            },
        }
    }

    /// Signs and POSTs one delivery.
    async fn attempt(&self, delivery: &Delivery, url: &url::Url, now: DateTime<Utc>) -> Attempt {
        let (key_id, pem) = match self.signing_key(&delivery.actor).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                return Attempt::NotSent(Outcome::Dropped(format!(
                    "actor {} is gone",
                    delivery.actor
                )));
            }
            Err(error) => return Attempt::NotSent(Outcome::Retry { error, after: None }),
        };
        let address = match checked_address(&self.settings, url).await {
            Ok(address) => address,
            Err(error @ (FetchError::Forbidden { .. } | FetchError::BadUrl(_))) => {
                return Attempt::NotSent(Outcome::Failed(error.to_string()));
            }
            Err(error) => {
                return Attempt::Unreachable {
                    error: error.to_string(),
                    retry_after: None,
                };
            }
        };
        let body = delivery.activity.to_string().into_bytes();
        let headers = match signature::sign("POST", url, Some(&body), &key_id, &pem, now) {
            Ok(headers) => headers,
            Err(error) => {
                return Attempt::NotSent(Outcome::Failed(format!(
                    "cannot sign the delivery: {error}"
                )));
            }
        };
        let client = match self.client(url, address) {
            Ok(client) => client,
            Err(error) => {
                return Attempt::NotSent(Outcome::Failed(format!(
                    "cannot build the HTTP client: {error}"
                )));
            }
        };
        let mut request = client
            .post(url.clone())
            .header("Content-Type", "application/activity+json")
            .header("Date", headers.date)
            .header("Signature", headers.signature);
        if let Some(digest) = headers.digest {
            request = request.header("Digest", digest);
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(&response, now);
                match outcome_of(status, retry_after) {
                    Outcome::Retry { error, after } if is_overloaded(status) => {
                        Attempt::Unreachable {
                            error: format!("{error} at {url}"),
                            retry_after: after,
                        }
                    }
                    outcome => Attempt::Answered(outcome),
                }
            }
            Err(error) => Attempt::Unreachable {
                error: format!("POST {url} failed: {error}"),
                retry_after: None,
            },
        }
    }

    /// Returns the client for `url`'s host, pinned to the checked `address`.
    fn client(&self, url: &url::Url, address: SocketAddr) -> reqwest::Result<reqwest::Client> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let key = (host, address);
        if let Some(client) = lock(&self.clients).get(&key) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(SEND_TIMEOUT)
            .resolve(&key.0, address)
            .build()?;
        let mut clients = lock(&self.clients);
        if clients.len() >= CLIENT_CACHE_SIZE {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The signing key of `actor`, from this batch's reading when there is one.
    async fn signing_key(&self, actor: &str) -> Result<Option<(String, String)>, String> {
        if let Some(key) = lock(&self.keys).get(actor) {
            return Ok(key.clone());
        }
        self.read_signing_key(actor).await
    }

    async fn read_signing_key(&self, actor: &str) -> Result<Option<(String, String)>, String> {
        let public_url = self.settings.public_url.clone();
        let actor = actor.to_owned();
        self.with_conn(move |conn| super::outbox::signing_key(conn, &public_url, &actor))
            .await
    }

    /// Returns the health of `domain`, from this batch's reading when there is one.
    async fn health_of(&self, domain: &str) -> Result<Option<DomainHealth>, String> {
        if let Some(known) = lock(&self.health).get(domain) {
            return Ok(known.clone());
        }
        let name = domain.to_owned();
        let health = self
            .with_conn(move |conn| domains::find(conn, &name))
            .await?;
        self.remember(domain, health.clone());
        Ok(health)
    }

    fn cached_failing(&self, domain: &str) -> bool {
        lock(&self.health)
            .get(domain)
            .is_some_and(|h| h.as_ref().is_some_and(|h| h.state != DomainState::Healthy))
    }

    fn remember(&self, domain: &str, health: Option<DomainHealth>) {
        let mut cache = lock(&self.health);
        if cache.len() >= HEALTH_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(domain.to_owned(), health);
    }

    /// Reads what the batch `jobs` needs before they run: the health of their domains, in one
    /// query, and the signing key of each sending actor.
    async fn load_batch(&self, jobs: &[Job]) {
        let addressed: Vec<Addressing> = jobs
            .iter()
            .filter_map(|job| serde_json::from_str(&job.payload).ok())
            .collect();
        let mut actors: Vec<&str> = addressed.iter().map(|a| a.actor.as_str()).collect();
        actors.sort_unstable();
        actors.dedup();
        let mut keys = HashMap::new();
        for actor in actors {
            match self.read_signing_key(actor).await {
                Ok(key) => {
                    keys.insert(actor.to_owned(), key);
                }
                Err(error) => tracing::warn!(actor, error = %error, "cannot read a signing key"),
            }
        }
        *lock(&self.keys) = keys;
        self.load_health(&addressed).await;
    }

    async fn load_health(&self, addressed: &[Addressing]) {
        let mut names: Vec<String> = addressed
            .iter()
            .filter_map(|delivery| super::domain_of(&delivery.inbox))
            .collect();
        names.sort_unstable();
        names.dedup();
        let queried = names.clone();
        match self
            .with_conn(move |conn| domains::find_many(conn, &queried))
            .await
        {
            Ok(found) => {
                let mut by_name: HashMap<String, DomainHealth> =
                    found.into_iter().map(|h| (h.domain.clone(), h)).collect();
                for name in names {
                    let health = by_name.remove(&name);
                    self.remember(&name, health);
                }
            }
            Err(error) => tracing::warn!(error = %error, "cannot read the health of domains"),
        }
    }

    /// Runs blocking database work off the async threads, with errors as text.
    async fn with_conn<T, E, F>(&self, work: F) -> Result<T, String>
    where
        T: Send + 'static,
        E: std::fmt::Display,
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            work(&mut conn).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The sender and inbox of a delivery payload, read without the activity.
#[derive(Deserialize)]
struct Addressing {
    actor: String,
    inbox: String,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl JobHandler for DeliveryHandler {
    fn run<'a>(&'a self, job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send(job, now))
    }

    fn prepare<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, ()> {
        Box::pin(self.load_batch(jobs))
    }
}

/// Maps the inbox's response status: 2xx is delivered; 404 and 410 mean the inbox is gone for good;
/// 408, 429 and 5xx are worth another try; any other 4xx will not change on a retry.
///
/// Redirects are not followed, because the new host's address would go unchecked. A temporary
/// one (302, 303, 307) is tried again later, at the same inbox. Any other 3xx means the inbox
/// moved for good, so the job dies with that status.
fn outcome_of(status: u16, after: Option<StdDuration>) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        404 | 410 => Outcome::Failed(format!("inbox answered {status}: it is gone")),
        408 | 429 | 500..=599 | 302 | 303 | 307 => Outcome::Retry {
            error: format!("inbox answered {status}"),
            after,
        },
        300..=399 => Outcome::Failed(format!(
            "inbox answered {status}: it moved, and redirects are not followed"
        )),
        _ => Outcome::Failed(format!("inbox rejected the delivery with {status}")),
    }
}

/// Returns whether a status means the server is unreachable or overloaded, a failure of its whole
/// domain rather than of this one delivery.
fn is_overloaded(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Reads `Retry-After` as seconds or as an HTTP date, cut to [`MAX_RETRY_AFTER`].
fn retry_after(response: &reqwest::Response, now: DateTime<Utc>) -> Option<StdDuration> {
    let text = response.headers().get("Retry-After")?.to_str().ok()?.trim();
    parse_retry_after(text, now)
}

fn parse_retry_after(text: &str, now: DateTime<Utc>) -> Option<StdDuration> {
    let delay = if let Ok(seconds) = text.parse::<u64>() {
        StdDuration::from_secs(seconds)
    } else {
        let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
        (at - now).to_std().unwrap_or_default()
    };
    let max = MAX_RETRY_AFTER.to_std().unwrap_or(delay);
    Some(delay.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome_of(202, None), Outcome::Done);
        assert!(matches!(outcome_of(410, None), Outcome::Failed(_)));
        assert!(matches!(outcome_of(404, None), Outcome::Failed(_)));
        assert!(matches!(outcome_of(401, None), Outcome::Failed(_)));
        let wait = Some(StdDuration::from_secs(30));
        assert_eq!(
            outcome_of(429, wait),
            Outcome::Retry {
                error: "inbox answered 429".to_owned(),
                after: wait
            }
        );
        assert!(matches!(outcome_of(503, None), Outcome::Retry { .. }));
        assert!(matches!(outcome_of(307, None), Outcome::Retry { .. }));
        assert!(matches!(outcome_of(301, None), Outcome::Failed(_)));
        assert!(matches!(outcome_of(308, None), Outcome::Failed(_)));
        assert!(!is_overloaded(307));
        assert!(is_overloaded(503));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_date() {
        let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap_or_default();
        assert_eq!(
            parse_retry_after("120", now),
            Some(StdDuration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Jan 2030 00:05:00 GMT", now),
            Some(StdDuration::from_secs(300))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(
            parse_retry_after("Mon, 31 Dec 2029 23:00:00 GMT", now),
            Some(StdDuration::ZERO)
        );
    }

    #[test]
    fn huge_retry_after_is_cut_to_a_day() {
        let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap_or_default();
        let day = MAX_RETRY_AFTER.to_std().ok();
        assert_eq!(parse_retry_after("18446744073709551615", now), day);
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), day);
    }
}
