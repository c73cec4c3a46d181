//! Retention: finished jobs are kept for a while so that a late duplicate of a dedup key
//! still finds its job and is ignored, then a daily `cleanup` job deletes them.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, Utc};

use super::queue::{self, Job, NewJob};
use super::worker::{BoxFuture, JobHandler, run_blocking};
use super::{Error, Outcome};
use crate::db::{AnyConnection, DbPool, write_transaction};

/// Job kind of the cleanup.
pub const KIND: &str = "cleanup";
/// How long done and dead jobs are kept by default: 30 days, longer than any retry schedule
/// or reminder offset, so a dedup key holds for as long as a duplicate can plausibly arrive.
pub const DEFAULT_RETENTION: Duration = Duration::days(30);
/// UTC time of day the cleanup runs.
const RUN_AT: NaiveTime = NaiveTime::from_hms_opt(3, 0, 0).expect("03:00 is a valid time");

/// Enqueues the next cleanup (03:00 UTC after `now`) unless it is already queued.
pub fn schedule_next(conn: &mut AnyConnection, now: DateTime<Utc>) -> Result<(), Error> {
    let mut date = now.date_naive();
    if now.time() >= RUN_AT {
        date = date.succ_opt().unwrap_or(date);
    }
    let at = date.and_time(RUN_AT).and_utc();
    queue::enqueue(
        conn,
        &NewJob {
            kind: KIND.to_owned(),
            dedup_key: format!("{KIND}/{date}"),
            payload: serde_json::json!({}),
            run_at: at,
            deadline: None,
            max_attempts: 3,
        },
        now,
    )?;
    Ok(())
}

/// Deletes finished jobs older than the retention and plans the next run.
pub struct CleanupHandler {
    pool: DbPool,
    retention: Duration,
}

impl CleanupHandler {
    /// A handler keeping finished jobs for `retention`.
    pub fn new(pool: DbPool, retention: Duration) -> Arc<Self> {
        Arc::new(CleanupHandler { pool, retention })
    }
}

impl JobHandler for CleanupHandler {
    fn run<'a>(&'a self, _job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        let retention = self.retention;
        let pool = self.pool.clone();
        Box::pin(async move {
            let result = run_blocking(pool, move |conn| {
                write_transaction(conn, |conn| {
                    let deleted = queue::delete_finished_before(conn, now - retention)?;
                    schedule_next(conn, now)?;
                    Ok(deleted)
                })
            })
            .await;
            match result {
                Ok(deleted) => {
                    tracing::info!(
                        deleted,
                        retention_days = retention.num_days(),
                        "deleted finished jobs"
                    );
                    Outcome::Done
                }
                Err(error) => Outcome::Retry {
                    error: error.to_string(),
                    after: None,
                },
            }
        })
    }
}
