//! Delivery of published activities: one queue job per recipient inbox, signed at send time.
//!
//! [`super::outbox::publish`] enqueues the jobs in the transaction that records the activity,
//! so a crash loses no delivery. The worker signs each POST with the sending actor's current
//! key (draft-cavage, rsa-sha256, over `(request-target) host date digest`) just before it
//! goes out, so a retry days later still carries a fresh `Date`.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Settings;
use super::fetch::{FetchError, checked_address};
use super::signature;
use crate::db::{AnyConnection, DbPool};
use crate::delivery::NewJob;
use crate::delivery::queue;
use crate::delivery::worker::{BoxFuture, JobHandler};
use crate::delivery::{Job, Outcome};

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

/// Sends delivery jobs.
pub struct DeliveryHandler {
    pool: DbPool,
    settings: Settings,
}

impl DeliveryHandler {
    /// A handler that reads signing keys from `pool` and checks addresses with `settings`.
    pub fn new(pool: DbPool, settings: Settings) -> Self {
        DeliveryHandler { pool, settings }
    }

    async fn send(&self, job: &Job, now: DateTime<Utc>) -> Outcome {
        let delivery: Delivery = match serde_json::from_str(&job.payload) {
            Ok(delivery) => delivery,
            Err(error) => return Outcome::Failed(format!("invalid delivery payload: {error}")),
        };
        let Ok(url) = url::Url::parse(&delivery.inbox) else {
            return Outcome::Failed(format!("inbox {:?} is not a URL", delivery.inbox));
        };
        let (key_id, pem) = match self.signing_key(&delivery.actor).await {
            Ok(Some(key)) => key,
            Ok(None) => return Outcome::Dropped(format!("actor {} is gone", delivery.actor)),
            Err(error) => {
                return Outcome::Retry { error, after: None };
            }
        };
        let address = match checked_address(&self.settings, &url).await {
            Ok(address) => address,
            Err(error @ (FetchError::Forbidden { .. } | FetchError::BadUrl(_))) => {
                return Outcome::Failed(error.to_string());
            }
            Err(error) => {
                return Outcome::Retry {
                    error: error.to_string(),
                    after: None,
                };
            }
        };
        let body = delivery.activity.to_string().into_bytes();
        let headers = match signature::sign("POST", &url, Some(&body), &key_id, &pem, now) {
            Ok(headers) => headers,
            Err(error) => return Outcome::Failed(format!("cannot sign the delivery: {error}")),
        };
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(SEND_TIMEOUT)
            .resolve(url.host_str().unwrap_or_default(), address)
            .build()
        {
            Ok(client) => client,
            Err(error) => return Outcome::Failed(format!("cannot build the HTTP client: {error}")),
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
            Ok(response) => outcome_of(response.status().as_u16(), retry_after(&response)),
            Err(error) => Outcome::Retry {
                error: format!("POST {url} failed: {error}"),
                after: None,
            },
        }
    }

    async fn signing_key(&self, actor: &str) -> Result<Option<(String, String)>, String> {
        let pool = self.pool.clone();
        let public_url = self.settings.public_url.clone();
        let actor = actor.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            super::outbox::signing_key(&mut conn, &public_url, &actor).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

impl JobHandler for DeliveryHandler {
    fn run<'a>(&'a self, job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send(job, now))
    }
}

/// Maps the inbox's response status: 2xx is delivered; 404 and 410 mean the inbox is gone for good;
/// 408, 429 and 5xx are worth another try; any other 4xx will not change on a retry.
fn outcome_of(status: u16, after: Option<StdDuration>) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        404 | 410 => Outcome::Failed(format!("inbox answered {status}: it is gone")),
        408 | 429 | 500..=599 => Outcome::Retry {
            error: format!("inbox answered {status}"),
            after,
        },
        _ => Outcome::Failed(format!("inbox rejected the delivery with {status}")),
    }
}

fn retry_after(response: &reqwest::Response) -> Option<StdDuration> {
    response
        .headers()
        .get("Retry-After")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(StdDuration::from_secs)
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
    }
}
