//! The worker loop: claim a batch, run each job's handler concurrently, record each verdict.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tracing::Instrument;

use super::queue::{self, Job};
use super::retry::{Outcome, RetryPolicy, Verdict};
use super::{Clock, Error};
use crate::db::{AnyConnection, DbPool, write_transaction};

/// A boxed future, so handlers can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs the jobs of one kind. Transports implement it for the sends they make, and notify
/// implements it for the jobs that decide what to send.
///
/// A handler may be called again for a job it already ran, because a worker can die between
/// the send and recording it: it should make repeats harmless (same Topic, same Message-ID,
/// dedup keys for what it enqueues).
pub trait JobHandler: Send + Sync {
    /// Runs one attempt of `job`; `now` is the worker clock's time.
    fn run<'a>(&'a self, job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome>;

    /// Prepares a batch of this handler's jobs before they run, for example by loading what
    /// they all need in one query. Does nothing unless a handler overrides it.
    fn prepare<'a>(&'a self, _jobs: &'a [Job]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Handlers by job kind, given to the worker when the app is built.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<String, Arc<dyn JobHandler>>);

impl Handlers {
    /// Registers `handler` for jobs of `kind`, replacing any earlier one.
    pub fn insert(&mut self, kind: &str, handler: Arc<dyn JobHandler>) {
        self.0.insert(kind.to_owned(), handler);
    }

    /// The handler for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn JobHandler>> {
        self.0.get(kind)
    }
}

/// Claim and retry settings of a worker.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    /// How long a claimed job stays leased; after that another worker may take it. Longer
    /// than any handler's own timeout.
    pub lease: Duration,
    /// Jobs claimed at once and run concurrently.
    pub batch: usize,
    /// Pause after finding nothing due.
    pub idle_poll: std::time::Duration,
    /// Backoff for transient failures.
    pub policy: RetryPolicy,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            lease: Duration::seconds(60),
            batch: 32,
            idle_poll: std::time::Duration::from_millis(500),
            policy: RetryPolicy::default(),
        }
    }
}

/// One worker loop. Cloning shares it.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DbPool,
    handlers: Handlers,
    clock: Arc<dyn Clock>,
    settings: WorkerSettings,
    owner: String,
}

impl Worker {
    /// Creates a worker with a unique lease owner name (process id plus a random suffix).
    pub fn new(
        pool: DbPool,
        handlers: Handlers,
        clock: Arc<dyn Clock>,
        settings: WorkerSettings,
    ) -> Self {
        let owner = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Worker {
            inner: Arc::new(Inner {
                pool,
                handlers,
                clock,
                settings,
                owner,
            }),
        }
    }

    /// Returns the name this worker leases jobs under.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Claims one batch of due jobs, runs them concurrently and records their results in one
    /// transaction. Returns how many jobs it claimed.
    pub async fn run_once(&self) -> Result<usize, Error> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let owner = inner.owner.clone();
        let (lease, batch) = (inner.settings.lease, inner.settings.batch);
        let claimed = self
            .with_conn(move |conn| queue::claim(conn, &owner, now, lease, batch))
            .await?;
        let count = claimed.len();
        self.prepare(&claimed).await;

        let mut running = tokio::task::JoinSet::new();
        for job in claimed {
            let worker = self.clone();
            let span = tracing::info_span!("job", job_id = job.id, kind = %job.kind, attempt = job.attempts);
            running.spawn(async move { worker.run_job(job).await }.instrument(span));
        }
        let mut verdicts = Vec::with_capacity(count);
        while let Some(result) = running.join_next().await {
            match result {
                Ok(verdict) => verdicts.push(verdict),
                // The job stays leased and is retried when its lease runs out.
                Err(error) => tracing::error!(error = %error, "job task failed"),
            }
        }
        self.record(verdicts).await?;
        Ok(count)
    }

    /// Runs batches until `shutdown` turns true, pausing when nothing is due. The batch in
    /// progress is finished before it returns.
    pub async fn run_until(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(owner = %self.inner.owner, "worker started");
        while !*shutdown.borrow() {
            let pause = match self.run_once().await {
                Ok(0) => self.inner.settings.idle_poll,
                Ok(_) => continue,
                Err(error) => {
                    tracing::error!(error = %error, "cannot claim jobs");
                    self.inner.settings.idle_poll * 4
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(owner = %self.inner.owner, "worker stopped");
    }

    /// Lets each handler prepare its share of the batch.
    async fn prepare(&self, claimed: &[Job]) {
        let mut kinds: Vec<&str> = claimed.iter().map(|j| j.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            if let Some(handler) = self.inner.handlers.get(kind) {
                let jobs: Vec<Job> = claimed.iter().filter(|j| j.kind == kind).cloned().collect();
                handler.prepare(&jobs).await;
            }
        }
    }

    async fn run_job(&self, job: Job) -> (i64, Verdict, DateTime<Utc>) {
        let inner = &self.inner;
        let started = inner.clock.now();
        let deadline = job.deadline.map(|d| d.and_utc());
        let outcome = match (deadline, inner.handlers.get(&job.kind)) {
            (Some(deadline), _) if started >= deadline => Outcome::Failed(format!(
                "deadline {} passed before attempt {}",
                deadline.to_rfc3339(),
                job.attempts
            )),
            (_, None) => Outcome::Failed(format!("no handler for job kind {:?}", job.kind)),
            (_, Some(handler)) => handler.run(&job, started).await,
        };

        let now = inner.clock.now();
        let verdict = inner.settings.policy.decide(
            outcome,
            job.attempts,
            job.max_attempts,
            deadline,
            now,
            rand::random::<f64>(),
        );
        log_verdict(&job, &verdict);
        (job.id, verdict, now)
    }

    /// Writes the verdicts of one batch in one transaction: one commit per batch instead of
    /// one per job.
    async fn record(&self, verdicts: Vec<(i64, Verdict, DateTime<Utc>)>) -> Result<(), Error> {
        if verdicts.is_empty() {
            return Ok(());
        }
        let owner = self.inner.owner.clone();
        let finished = self.inner.clock.now();
        let lost = self
            .with_conn(move |conn| {
                write_transaction(conn, |conn| {
                    queue::relax_commit(conn)?;
                    let mut lost = 0;
                    let mut done = Vec::new();
                    for (id, verdict, now) in verdicts {
                        let recorded = match verdict {
                            Verdict::Done(None) => {
                                done.push(id);
                                true
                            }
                            Verdict::Done(Some(note)) => {
                                queue::complete(conn, id, &owner, Some(&note), now)?
                            }
                            Verdict::RetryAt(at, error) => {
                                queue::reschedule(conn, id, &owner, at, &error, now)?
                            }
                            Verdict::Dead(error) => queue::kill(conn, id, &owner, &error, now)?,
                            Verdict::Defer(at, note) => {
                                queue::defer(conn, id, &owner, at, &note, now)?
                            }
                        };
                        if !recorded {
                            lost += 1;
                        }
                    }
                    if !done.is_empty() {
                        lost += done.len() - queue::complete_all(conn, &done, &owner, finished)?;
                    }
                    Ok(lost)
                })
            })
            .await?;
        if lost > 0 {
            tracing::warn!(
                jobs = lost,
                "leases ran out before the results were recorded; other workers own those jobs"
            );
        }
        Ok(())
    }

    async fn with_conn<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, Error> + Send + 'static,
    {
        run_blocking(self.inner.pool.clone(), work).await
    }
}

/// Runs blocking database work with a pooled connection off the async threads.
pub async fn run_blocking<T, F>(pool: DbPool, work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&mut AnyConnection) -> Result<T, Error> + Send + 'static,
{
    let joined = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(crate::db::Error::from)?;
        work(&mut conn)
    })
    .await;
    match joined {
        Ok(result) => result,
        Err(error) => Err(Error::Task(error.to_string())),
    }
}

fn log_verdict(job: &Job, verdict: &Verdict) {
    match verdict {
        Verdict::Done(None) => tracing::debug!(job_id = job.id, kind = %job.kind, "job done"),
        Verdict::Done(Some(note)) => {
            tracing::info!(job_id = job.id, kind = %job.kind, note = %note, "job dropped");
        }
        Verdict::RetryAt(at, error) => tracing::warn!(
            job_id = job.id,
            kind = %job.kind,
            attempt = job.attempts,
            retry_at = %at.to_rfc3339(),
            error = %error,
            "job failed, will retry"
        ),
        Verdict::Defer(at, note) => tracing::debug!(
            job_id = job.id,
            kind = %job.kind,
            until = %at.to_rfc3339(),
            note = %note,
            "job deferred"
        ),
        Verdict::Dead(error) => tracing::error!(
            job_id = job.id,
            kind = %job.kind,
            attempt = job.attempts,
            error = %error,
            "job is dead"
        ),
    }
}
