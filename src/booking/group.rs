//! Group commit: requests waiting for the same occurrence are decided in one transaction.
//!
//! Each occurrence has a queue. The first request to find its queue idle starts a drain on a
//! blocking thread. The drain takes everything waiting, up to [`MAX_BATCH`], and runs it
//! through [`apply`] as one transaction. Then it sends each request its own result and
//! repeats until the queue is empty. Requests that arrive while a transaction commits wait
//! for the next one, so under load one commit (one WAL flush) serves many bookings. An idle
//! server still decides a lone request in one transaction of its own.
//!
//! ```text
//! request ─► queue(occurrence) ─► drain: [r1 r2 … rn] ─► apply (one transaction) ─► replies
//! ```
//!
//! When a batch fails as a whole (for example a unique key taken by another process meanwhile)
//! each of its requests is run again on its own, so one request's trouble never decides another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::oneshot;

use super::apply::{Answer, apply};
use super::{Command, Error, OccurrenceKey};
use crate::db::DbPool;

/// Maximum requests decided in one transaction.
pub const MAX_BATCH: usize = 64;

// TODO: batches never span occurrences, so bookings spread over many occurrences pay about 15
// statements and one commit each. Deciding several occurrences in one transaction, with
// set-based statements and the capacity rows locked in sorted order before any attendee row,
// would bring that case near the hot-occurrence rate.
/// Attempts for a transaction that fails with a deadlock or serialization failure.
const ATTEMPTS: usize = 3;
/// How often expired idempotency keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

type Reply = oneshot::Sender<Result<Answer, Error>>;

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Command, Reply)>,
    draining: bool,
}

/// Decides booking commands, batching those for the same occurrence.
pub struct BookingService {
    pool: DbPool,
    queues: Mutex<HashMap<OccurrenceKey, Queue>>,
    keys_in_flight: Mutex<HashSet<(String, String)>>,
    last_purge: Mutex<Option<Instant>>,
}

impl BookingService {
    /// Creates the service over a connection pool.
    pub fn new(pool: DbPool) -> Arc<Self> {
        Arc::new(BookingService {
            pool,
            queues: Mutex::new(HashMap::new()),
            keys_in_flight: Mutex::new(HashSet::new()),
            last_purge: Mutex::new(None),
        })
    }

    /// Queues `command` for the occurrence and waits for its result.
    ///
    /// A command whose idempotency key is already being decided in this process gets
    /// [`Error::KeyInFlight`] at once.
    pub async fn submit(
        self: &Arc<Self>,
        key: OccurrenceKey,
        command: Command,
    ) -> Result<Answer, Error> {
        // The guard releases the key when this future ends, also when the client goes away
        // and the future is dropped before the result arrives.
        let _in_flight = match claim_of(&command) {
            Some(claim) => Some(InFlight::claim(self, claim)?),
            None => None,
        };
        let (reply, receive) = oneshot::channel();
        let start_drain = {
            let mut queues = lock(&self.queues);
            let queue = queues.entry(key).or_default();
            queue.waiting.push_back((command, reply));
            !std::mem::replace(&mut queue.draining, true)
        };
        if start_drain {
            let service = Arc::clone(self);
            actix_web::rt::task::spawn_blocking(move || service.drain(key));
        }
        receive
            .await
            .unwrap_or_else(|_| Err(Error::Corrupt("booking worker stopped".to_owned())))
    }

    fn drain(&self, key: OccurrenceKey) {
        // Should a batch panic, the guard removes the queue, so the next request starts a new
        // drain instead of waiting forever. The panicked batch's callers get an error.
        let _idle_on_exit = DrainGuard { service: self, key };
        loop {
            let batch: Vec<(Command, Reply)> = {
                let mut queues = lock(&self.queues);
                let Some(queue) = queues.get_mut(&key) else {
                    return;
                };
                if queue.waiting.is_empty() {
                    queues.remove(&key);
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
            let results = self.decide(key, &commands);
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have gone away; its result is committed regardless.
                let _ = reply.send(result);
            }
            self.purge_keys_now_and_then();
        }
    }

    /// Runs a batch, falling back to one transaction per command when the batch fails.
    fn decide(&self, key: OccurrenceKey, commands: &[Command]) -> Vec<Result<Answer, Error>> {
        match self.run_with_retries(key, commands) {
            Ok(results) => results,
            Err(error) if commands.len() > 1 => {
                tracing::warn!(
                    event = key.event_id,
                    batch = commands.len(),
                    error = %error,
                    "booking batch failed, deciding its requests one by one"
                );
                commands
                    .iter()
                    .map(|command| {
                        self.run_with_retries(key, std::slice::from_ref(command))
                            .and_then(|mut results| {
                                results.pop().unwrap_or_else(|| {
                                    Err(Error::Corrupt("no result for a command".to_owned()))
                                })
                            })
                    })
                    .collect()
            }
            Err(error) => vec![Err(error)],
        }
    }

    fn run_with_retries(
        &self,
        key: OccurrenceKey,
        commands: &[Command],
    ) -> Result<Vec<Result<Answer, Error>>, Error> {
        let mut attempt = 1;
        loop {
            let mut conn = self.pool.get().map_err(crate::db::Error::from)?;
            match apply(&mut conn, key, commands, Utc::now()) {
                Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(event = key.event_id, attempt, error = %error, "retrying booking transaction");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn purge_keys_now_and_then(&self) {
        {
            let mut last = lock(&self.last_purge);
            if last.is_some_and(|at| at.elapsed() < PURGE_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let purged = self
            .pool
            .get()
            .map_err(|e| Error::Database(e.into()))
            .and_then(|mut conn| super::idempotency::purge_expired(&mut conn, Utc::now()));
        match purged {
            Ok(count) => tracing::debug!(count, "purged expired idempotency keys"),
            Err(error) => tracing::warn!(error = %error, "purging idempotency keys failed"),
        }
    }
}

/// An idempotency key being decided in this process.
struct InFlight<'a> {
    service: &'a BookingService,
    claim: (String, String),
}

impl<'a> InFlight<'a> {
    fn claim(
        service: &'a BookingService,
        claim: &super::idempotency::Claim,
    ) -> Result<Self, Error> {
        let claim = (claim.caller.clone(), claim.key.clone());
        if !lock(&service.keys_in_flight).insert(claim.clone()) {
            return Err(Error::KeyInFlight(claim.1));
        }
        Ok(InFlight { service, claim })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.service.keys_in_flight).remove(&self.claim);
    }
}

/// Removes an occurrence's queue when its drain panics.
struct DrainGuard<'a> {
    service: &'a BookingService,
    key: OccurrenceKey,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.service.queues).remove(&self.key);
        }
    }
}

fn claim_of(command: &Command) -> Option<&super::idempotency::Claim> {
    match command {
        Command::Book(request) => request.idempotency.as_ref(),
        Command::Confirm { idempotency, .. } => idempotency.as_ref(),
        Command::Cancel { .. } | Command::SetCapacity { .. } => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these mutexes stays consistent across a panic: each critical section
    // is a single insert, remove or drain.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
