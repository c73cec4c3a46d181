//! The job handlers of notifications: `reminder` and `digest` decide what to send and fan out
//! into `push` (one per subscription) and `email` jobs, which call the transports.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::messages::{self, Notice};
use super::people::{self, Person};
use super::reminders::{self, ReminderJob};
use super::{Channel, Error, digests, subscriptions};
use crate::calendar::event::EventStatus;
use crate::calendar::store;
use crate::db::{AnyConnection, DbPool, write_transaction};
use crate::delivery::cleanup::{self, CleanupHandler};
use crate::delivery::queue::{self, Job, NewJob};
use crate::delivery::transport::email::EmailResult;
use crate::delivery::transport::web_push::topic_for;
use crate::delivery::transport::{
    EmailMessage, EmailTransport, PushMessage, PushResult, PushUrgency, WebPushTransport,
};
use crate::delivery::worker::run_blocking;
use crate::delivery::{BoxFuture, Handlers, JobHandler, Outcome};

/// Job kind of one Web Push message to one subscription.
pub const PUSH: &str = "push";
/// Job kind of one email.
pub const EMAIL: &str = "email";
/// Attempts of a push send before it dies.
const PUSH_ATTEMPTS: i32 = 8;
/// Attempts of an email send before it dies.
const EMAIL_ATTEMPTS: i32 = 6;
/// Wait after the relay rejected our login before trying again.
const SENDER_REJECTED_PAUSE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Shared state of the notification handlers.
#[derive(Clone)]
pub struct NotifyContext {
    /// Database connections.
    pub pool: DbPool,
    /// Public base URL, for links.
    pub public_url: String,
    /// Web Push, when configured.
    pub push: Option<Arc<WebPushTransport>>,
    /// Email, when configured.
    pub email: Option<Arc<EmailTransport>>,
}

/// Every handler the server runs: reminders, digests, push and email sends, and the cleanup
/// of finished jobs kept for `retention`.
pub fn handlers(context: &NotifyContext, retention: Duration) -> Handlers {
    let shared = Arc::new(context.clone());
    let mut handlers = Handlers::default();
    handlers.insert(reminders::KIND, Arc::new(ReminderHandler(shared.clone())));
    handlers.insert(digests::KIND, Arc::new(DigestHandler(shared.clone())));
    if let Some(push) = &context.push {
        handlers.insert(
            PUSH,
            Arc::new(PushHandler {
                pool: context.pool.clone(),
                transport: push.clone(),
                prefetched: std::sync::Mutex::default(),
            }),
        );
    }
    if let Some(email) = &context.email {
        handlers.insert(EMAIL, Arc::new(EmailHandler(email.clone())));
    }
    handlers.insert(
        cleanup::KIND,
        CleanupHandler::new(context.pool.clone(), retention),
    );
    handlers
}

/// Returns the dedup-key prefixes of the sends that a job with key `parent` fans out into.
pub fn child_prefixes(parent: &str) -> [String; 2] {
    [format!("{PUSH}/{parent}/"), format!("{EMAIL}/{parent}/")]
}

/// The payload of a `push` job.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PushJob {
    /// The subscription.
    pub subscription_id: i64,
    /// Its endpoint when the job was made; a re-subscribed browser has a new one.
    pub endpoint: String,
    /// The plaintext payload.
    pub payload: String,
    /// Push service TTL in seconds.
    pub ttl: u32,
    /// Urgency.
    pub urgency: PushUrgency,
    /// Topic, the same on every resend.
    pub topic: String,
}

fn outcome_of(result: Result<Outcome, Error>) -> Outcome {
    result.unwrap_or_else(|error| Outcome::Retry {
        error: error.to_string(),
        after: None,
    })
}

fn bad_payload(job: &Job, error: &crate::delivery::Error) -> Outcome {
    Outcome::Failed(format!("job {} payload is unreadable: {error}", job.id))
}

// ---- reminders ----

struct ReminderHandler(Arc<NotifyContext>);

impl JobHandler for ReminderHandler {
    fn run<'a>(&'a self, job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let reminder: ReminderJob = match job.payload_as() {
                Ok(r) => r,
                Err(error) => return bad_payload(job, &error),
            };
            let context = self.0.clone();
            let key = job.dedup_key.clone();
            let result = run_blocking(context.pool.clone(), move |conn| {
                fan_out_reminder(conn, &context, &key, &reminder, now)
                    .map_err(|e| crate::delivery::Error::Task(e.to_string()))
            })
            .await;
            outcome_of(result.map_err(Error::from))
        })
    }
}

fn fan_out_reminder(
    conn: &mut AnyConnection,
    context: &NotifyContext,
    key: &str,
    reminder: &ReminderJob,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    write_transaction(conn, |conn| {
        if !reminders::exists(conn, reminder)? {
            return Ok(Outcome::Dropped("reminder was cancelled".to_owned()));
        }
        let occurrence = match reminder_occurrence(conn, context, reminder.occurrence)? {
            Ok(found) => found,
            Err(why) => return Ok(Outcome::Dropped(why)),
        };
        if occurrence.cancelled {
            return Ok(Outcome::Dropped("occurrence was cancelled".to_owned()));
        }
        if occurrence.start <= now {
            return Ok(Outcome::Dropped("occurrence already started".to_owned()));
        }

        let person = people::find_or_default(conn, &reminder.person)?;
        let mut lines = vec![format!(
            "Starts {}",
            messages::local_time(occurrence.start, person.zone)
        )];
        if let Some(location) = &occurrence.location {
            lines.push(location.clone());
        }
        let notice = Notice {
            title: format!("Reminder: {}", occurrence.title),
            lines,
            url: occurrence.url,
        };
        let urgency = if reminder.offset_minutes <= 60 {
            PushUrgency::High
        } else {
            PushUrgency::Normal
        };
        let send = Send {
            parent_key: key,
            notice: &notice,
            deadline: occurrence.start,
            urgency,
            now,
        };
        match reminder.channel {
            Channel::Push => send.push(conn, context, &person),
            Channel::Email => send.email(conn, context, &person),
        }
    })
}

/// The details of an occurrence that a reminder contains.
struct ReminderOccurrence {
    title: String,
    start: DateTime<Utc>,
    location: Option<String>,
    url: String,
    cancelled: bool,
}

/// Finds the details of `occurrence` for a reminder. The inner error gives the reason the
/// occurrence no longer exists.
fn reminder_occurrence(
    conn: &mut AnyConnection,
    context: &NotifyContext,
    occurrence: reminders::OccurrenceRef,
) -> Result<Result<ReminderOccurrence, String>, Error> {
    let event_id = occurrence.event_id;
    if occurrence.remote {
        let found =
            crate::federation::rsvp::remote_occurrence(conn, event_id, occurrence.recurrence_id)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
        let Some(found) = found else {
            return Ok(Err(format!(
                "occurrence of remote event {event_id} no longer exists"
            )));
        };
        return Ok(Ok(ReminderOccurrence {
            title: found.title,
            start: found.start,
            location: found.location,
            url: found.url,
            cancelled: found.cancelled,
        }));
    }
    let Some(event) = store::find_event(conn, event_id)? else {
        return Ok(Err(format!("event {event_id} was deleted")));
    };
    let Some(found) = reminders::find_occurrence(&event.event, occurrence.recurrence_id)? else {
        return Ok(Err("occurrence no longer exists".to_owned()));
    };
    let slug = store::find_calendar_by_id(conn, event.calendar_id)?
        .map(|c| c.slug)
        .unwrap_or_default();
    Ok(Ok(ReminderOccurrence {
        url: format!(
            "{}/calendars/{slug}#{}",
            context.public_url,
            messages::anchor(event_id, found.recurrence_id)
        ),
        title: found.details.title,
        start: found.start,
        location: found.details.location,
        cancelled: found.details.status == EventStatus::Cancelled,
    }))
}

/// Fans one notice out into send jobs.
struct Send<'a> {
    parent_key: &'a str,
    notice: &'a Notice,
    deadline: DateTime<Utc>,
    urgency: PushUrgency,
    now: DateTime<Utc>,
}

impl Send<'_> {
    fn push(
        &self,
        conn: &mut AnyConnection,
        context: &NotifyContext,
        person: &Person,
    ) -> Result<Outcome, Error> {
        if context.push.is_none() {
            return Ok(Outcome::Dropped("Web Push is not configured".to_owned()));
        }
        let subscriptions = subscriptions::of_person(conn, &person.id)?;
        if subscriptions.is_empty() {
            return Ok(Outcome::Dropped(
                "person has no push subscriptions".to_owned(),
            ));
        }
        let topic = topic_for(self.parent_key);
        let payload = messages::push_payload(self.notice, &topic);
        let ttl = (self.deadline - self.now)
            .num_seconds()
            .clamp(60, 28 * 24 * 3600) as u32;
        for subscription in subscriptions {
            let job = PushJob {
                subscription_id: subscription.id,
                endpoint: subscription.endpoint.clone(),
                payload: payload.clone(),
                ttl,
                urgency: self.urgency,
                topic: topic.clone(),
            };
            let dedup_key = format!("{PUSH}/{}/{}", self.parent_key, subscription.id);
            self.enqueue(conn, PUSH, dedup_key, &job, PUSH_ATTEMPTS)?;
        }
        Ok(Outcome::Done)
    }

    fn email(
        &self,
        conn: &mut AnyConnection,
        context: &NotifyContext,
        person: &Person,
    ) -> Result<Outcome, Error> {
        if context.email.is_none() {
            return Ok(Outcome::Dropped("email is not configured".to_owned()));
        }
        let Some(address) = &person.email else {
            return Ok(Outcome::Dropped("person has no email address".to_owned()));
        };
        let dedup_key = format!("{EMAIL}/{}/0", self.parent_key);
        let unsubscribe = (!person.unsubscribe_token.is_empty()).then(|| {
            format!(
                "{}/unsubscribe/{}",
                context.public_url, person.unsubscribe_token
            )
        });
        let message: EmailMessage = messages::email(
            self.notice,
            address,
            &dedup_key,
            &context.public_url,
            unsubscribe,
            self.now,
        );
        self.enqueue(conn, EMAIL, dedup_key, &message, EMAIL_ATTEMPTS)?;
        Ok(Outcome::Done)
    }

    fn enqueue<T: serde::Serialize>(
        &self,
        conn: &mut AnyConnection,
        kind: &str,
        dedup_key: String,
        payload: &T,
        max_attempts: i32,
    ) -> Result<(), Error> {
        let payload = serde_json::to_value(payload).map_err(|e| Error::Corrupt(e.to_string()))?;
        queue::enqueue(
            conn,
            &NewJob {
                kind: kind.to_owned(),
                dedup_key,
                payload,
                run_at: self.now,
                deadline: Some(self.deadline),
                max_attempts,
            },
            self.now,
        )?;
        Ok(())
    }
}

// ---- digests ----

struct DigestHandler(Arc<NotifyContext>);

impl JobHandler for DigestHandler {
    fn run<'a>(&'a self, job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let digest: digests::DigestJob = match job.payload_as() {
                Ok(d) => d,
                Err(error) => return bad_payload(job, &error),
            };
            let context = self.0.clone();
            let key = job.dedup_key.clone();
            let deadline = job
                .deadline
                .map_or(now + Duration::hours(6), |d| d.and_utc());
            let result = run_blocking(context.pool.clone(), move |conn| {
                send_digest(conn, &context, &key, &digest.person, deadline, now)
                    .map_err(|e| crate::delivery::Error::Task(e.to_string()))
            })
            .await;
            outcome_of(result.map_err(Error::from))
        })
    }
}

fn send_digest(
    conn: &mut AnyConnection,
    context: &NotifyContext,
    key: &str,
    person_id: &str,
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    write_transaction(conn, |conn| {
        let Some(person) = people::find(conn, person_id)? else {
            return Ok(Outcome::Dropped("person has no preferences".to_owned()));
        };
        digests::plan_next(conn, &person, now)?;
        let Some(notice) = digests::compose(conn, &person, now, &context.public_url)? else {
            return Ok(Outcome::Dropped("nothing to report".to_owned()));
        };
        let send = Send {
            parent_key: key,
            notice: &notice,
            deadline,
            urgency: PushUrgency::Low,
            now,
        };
        let mut notes = Vec::new();
        for channel in &person.channels {
            let outcome = match channel {
                Channel::Push => send.push(conn, context, &person)?,
                Channel::Email => send.email(conn, context, &person)?,
            };
            if let Outcome::Dropped(note) = outcome {
                notes.push(note);
            }
        }
        if notes.len() == person.channels.len() {
            return Ok(Outcome::Dropped(notes.join("; ")));
        }
        Ok(Outcome::Done)
    })
}

// ---- sends ----

struct PushHandler {
    pool: DbPool,
    transport: Arc<WebPushTransport>,
    /// Subscriptions loaded by `prepare` for the jobs of the current batch, by job id, `None`
    /// when removed. Each job takes its own entry when it runs.
    prefetched: std::sync::Mutex<HashMap<i64, Option<subscriptions::Subscription>>>,
}

impl JobHandler for PushHandler {
    fn prepare<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, ()> {
        // (job id, subscription id) of each readable payload.
        let wanted: Vec<(i64, i64)> = jobs
            .iter()
            .filter_map(|job| Some((job.id, job.payload_as::<PushJob>().ok()?.subscription_id)))
            .collect();
        Box::pin(async move {
            let ids: Vec<i64> = wanted.iter().map(|(_, id)| *id).collect();
            let loaded = run_blocking(self.pool.clone(), move |conn| {
                subscriptions::find_all(conn, &ids)
                    .map_err(|e| crate::delivery::Error::Task(e.to_string()))
            })
            .await;
            // Without the batch load each job loads its own subscription.
            let Ok(loaded) = loaded else { return };
            let by_id: HashMap<i64, subscriptions::Subscription> =
                loaded.into_iter().map(|s| (s.id, s)).collect();
            let mut prefetched = self
                .prefetched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (job_id, subscription_id) in wanted {
                prefetched.insert(job_id, by_id.get(&subscription_id).cloned());
            }
        })
    }

    fn run<'a>(&'a self, job: &'a Job, _now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let push: PushJob = match job.payload_as() {
                Ok(p) => p,
                Err(error) => return bad_payload(job, &error),
            };
            let id = push.subscription_id;
            let found = self.subscription(job.id, id).await;
            let subscription = match found {
                Ok(Some(s)) if s.endpoint == push.endpoint => s,
                Ok(_) => return Outcome::Dropped("subscription was removed".to_owned()),
                Err(error) => {
                    return Outcome::Retry {
                        error: error.to_string(),
                        after: None,
                    };
                }
            };
            let message = PushMessage {
                endpoint: subscription.endpoint,
                p256dh: subscription.p256dh,
                auth: subscription.auth,
                payload: push.payload,
                ttl: push.ttl,
                urgency: push.urgency,
                topic: Some(push.topic),
            };
            match self.transport.send(&message).await {
                PushResult::Delivered => Outcome::Done,
                PushResult::Gone(status) => self.remove_gone(id, push.endpoint, status).await,
                PushResult::TooLarge(error) | PushResult::Failed(error) => Outcome::Failed(error),
                PushResult::Retry { error, after } => Outcome::Retry { error, after },
            }
        })
    }
}

impl PushHandler {
    /// Returns the subscription that `prepare` loaded for job `job_id`, or loads it.
    async fn subscription(
        &self,
        job_id: i64,
        id: i64,
    ) -> Result<Option<subscriptions::Subscription>, crate::delivery::Error> {
        let prefetched = self
            .prefetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&job_id);
        if let Some(found) = prefetched {
            return Ok(found);
        }
        run_blocking(self.pool.clone(), move |conn| {
            subscriptions::find(conn, id).map_err(|e| crate::delivery::Error::Task(e.to_string()))
        })
        .await
    }

    async fn remove_gone(&self, id: i64, endpoint: String, status: u16) -> Outcome {
        let removed = run_blocking(self.pool.clone(), move |conn| {
            subscriptions::remove_gone(conn, id, &endpoint)
                .map_err(|e| crate::delivery::Error::Task(e.to_string()))
        })
        .await;
        match removed {
            Ok(_) => {
                tracing::info!(
                    subscription_id = id,
                    status,
                    "push subscription is gone; removed it"
                );
                Outcome::Dropped(format!(
                    "push service answered {status}: subscription removed"
                ))
            }
            Err(error) => Outcome::Retry {
                error: format!("cannot remove gone subscription {id}: {error}"),
                after: None,
            },
        }
    }
}

struct EmailHandler(Arc<EmailTransport>);

impl JobHandler for EmailHandler {
    fn run<'a>(&'a self, job: &'a Job, _now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let message: EmailMessage = match job.payload_as() {
                Ok(m) => m,
                Err(error) => return bad_payload(job, &error),
            };
            match self.0.send(&message).await {
                EmailResult::Sent => Outcome::Done,
                EmailResult::Retry(error) => Outcome::Retry { error, after: None },
                EmailResult::SenderRejected(error) => {
                    tracing::error!(job_id = job.id, error = %error, "SMTP relay rejected our login: check the SMTP username and password");
                    Outcome::Retry {
                        error,
                        after: Some(SENDER_REJECTED_PAUSE),
                    }
                }
                EmailResult::Failed(error) => Outcome::Failed(error),
            }
        })
    }
}
