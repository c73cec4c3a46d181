//! The jobs table: enqueue, claim with a lease, finish, and the operator's list, show and retry.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::Error;
use crate::db::schema::jobs;
use crate::db::{AnyConnection, write_transaction};

/// Job state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its run-at time.
    Pending,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// Finished: sent, or dropped for a reason that no retry can change.
    Done,
    /// Given up: a permanent failure, the deadline or the attempt limit.
    Dead,
}

impl JobState {
    /// Returns the stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<JobState> {
        match text {
            "pending" => Some(JobState::Pending),
            "running" => Some(JobState::Running),
            "done" => Some(JobState::Done),
            "dead" => Some(JobState::Dead),
            _ => None,
        }
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Kind, which selects the handler.
    pub kind: String,
    /// Unique key: enqueueing a second job with the same key does nothing while the first is
    /// kept (finished jobs are kept for the retention period).
    pub dedup_key: String,
    /// Handler input.
    pub payload: serde_json::Value,
    /// Earliest start.
    pub run_at: DateTime<Utc>,
    /// After this instant the job is useless and dies instead of running.
    pub deadline: Option<DateTime<Utc>>,
    /// Attempts before it dies.
    pub max_attempts: i32,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = jobs)]
pub struct Job {
    /// Database id.
    pub id: i64,
    /// Kind, which selects the handler.
    pub kind: String,
    /// Unique key.
    pub dedup_key: String,
    /// Handler input as JSON text.
    pub payload: String,
    /// Stored state; see [`JobState`].
    pub state: String,
    /// Earliest next start (naive UTC).
    pub run_at: NaiveDateTime,
    /// Attempts started so far, counted when claimed.
    pub attempts: i32,
    /// Attempts before it dies.
    pub max_attempts: i32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease runs out.
    pub lease_until: Option<NaiveDateTime>,
    /// After this the job dies instead of running.
    pub deadline: Option<NaiveDateTime>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: NaiveDateTime,
    /// When it last changed.
    pub updated_at: NaiveDateTime,
    /// When it became done or dead.
    pub finished_at: Option<NaiveDateTime>,
}

impl Job {
    /// Decodes the payload as `T`.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.payload).map_err(|e| Error::Payload {
            job: self.id,
            reason: e.to_string(),
        })
    }

    /// Returns the state as an enum, or `None` for a hand-edited row.
    pub fn job_state(&self) -> Option<JobState> {
        JobState::parse(&self.state)
    }
}

/// Result of [`enqueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job with this id.
    Created(i64),
    /// A job with the same dedup key already exists, with this id.
    Exists(i64),
}

impl Enqueued {
    /// Returns the job id either way.
    pub fn id(self) -> i64 {
        match self {
            Enqueued::Created(id) | Enqueued::Exists(id) => id,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = jobs)]
struct JobValues<'a> {
    kind: &'a str,
    dedup_key: &'a str,
    payload: String,
    state: &'static str,
    run_at: NaiveDateTime,
    attempts: i32,
    max_attempts: i32,
    deadline: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// Enqueues a job unless one with the same dedup key exists. Call it inside the transaction
/// of the change that causes the job: it joins that transaction.
pub fn enqueue(
    conn: &mut AnyConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Enqueued, Error> {
    let values = JobValues {
        kind: &job.kind,
        dedup_key: &job.dedup_key,
        payload: job.payload.to_string(),
        state: JobState::Pending.as_str(),
        run_at: job.run_at.naive_utc(),
        attempts: 0,
        max_attempts: job.max_attempts.max(1),
        deadline: job.deadline.map(|d| d.naive_utc()),
        created_at: now.naive_utc(),
        updated_at: now.naive_utc(),
    };
    write_transaction(conn, |conn| {
        // ON CONFLICT DO NOTHING keeps a concurrent duplicate from aborting the caller's
        // PostgreSQL transaction, which a unique-violation error would do.
        let inserted = match conn {
            AnyConnection::Postgresql(pg) => diesel::insert_into(jobs::table)
                .values(&values)
                .on_conflict(jobs::dedup_key)
                .do_nothing()
                .returning(jobs::id)
                .get_result::<i64>(pg)
                .optional()?,
            AnyConnection::Sqlite(lite) => diesel::insert_into(jobs::table)
                .values(&values)
                .on_conflict(jobs::dedup_key)
                .do_nothing()
                .returning(jobs::id)
                .get_result::<i64>(lite)
                .optional()?,
        };
        if let Some(id) = inserted {
            return Ok(Enqueued::Created(id));
        }
        let existing = jobs::table
            .filter(jobs::dedup_key.eq(&job.dedup_key))
            .select(jobs::id)
            .first::<i64>(conn)?;
        Ok(Enqueued::Exists(existing))
    })
}

/// Claims up to `limit` jobs that are due (pending with run-at passed) or whose lease ran out,
/// counting one attempt each, and leases them to `owner` until `now + lease`.
///
/// PostgreSQL skips rows that another worker is claiming (`FOR UPDATE SKIP LOCKED`), so several
/// processes share the table without waiting on each other. SQLite serialises writers, and the
/// server runs one worker on it.
///
/// NOTE: when two workers claim at the same moment on PostgreSQL, one of them often gets no
/// rows although due jobs remain; they are claimed in the next round. The cause is not known.
pub fn claim(
    conn: &mut AnyConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: usize,
) -> Result<Vec<Job>, Error> {
    let now = now.naive_utc();
    let limit = limit as i64;
    write_transaction(conn, |conn| {
        relax_commit(conn)?;
        let ids: Vec<i64> = match conn {
            AnyConnection::Postgresql(pg) => jobs::table
                .filter(due(now))
                .order((jobs::run_at.asc(), jobs::id.asc()))
                .limit(limit)
                .select(jobs::id)
                .for_update()
                .skip_locked()
                .load(pg)?,
            AnyConnection::Sqlite(lite) => jobs::table
                .filter(due(now))
                .order((jobs::run_at.asc(), jobs::id.asc()))
                .limit(limit)
                .select(jobs::id)
                .load(lite)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(jobs::table.filter(jobs::id.eq_any(&ids)))
            .set((
                jobs::state.eq(JobState::Running.as_str()),
                jobs::attempts.eq(jobs::attempts + 1),
                jobs::lease_owner.eq(owner),
                jobs::lease_until.eq(now + lease),
                jobs::updated_at.eq(now),
            ))
            .execute(conn)?;
        let claimed = jobs::table
            .filter(jobs::id.eq_any(&ids))
            .order((jobs::run_at.asc(), jobs::id.asc()))
            .select(Job::as_select())
            .load(conn)?;
        Ok(claimed)
    })
}

/// Lets PostgreSQL acknowledge the current transaction before its WAL reaches the disk
/// (`SET LOCAL synchronous_commit = off`), which saves one disk flush per claim and per
/// batch of results. Only the queue's own bookkeeping uses it: a database crash can then
/// forget the last claims or results of a fraction of a second, so those jobs run again and
/// their messages are resent with the same Topic or Message-ID. Enqueueing stays in the
/// caller's transaction and keeps its durability. SQLite has no such setting.
pub fn relax_commit(conn: &mut AnyConnection) -> Result<(), Error> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(pg)?;
    }
    Ok(())
}

type DueFilter = diesel::dsl::Or<
    diesel::dsl::And<
        diesel::dsl::Eq<jobs::state, &'static str>,
        diesel::dsl::LtEq<jobs::run_at, NaiveDateTime>,
    >,
    diesel::dsl::And<
        diesel::dsl::Eq<jobs::state, &'static str>,
        diesel::dsl::Lt<jobs::lease_until, NaiveDateTime>,
    >,
>;

fn due(now: NaiveDateTime) -> DueFilter {
    jobs::state
        .eq(JobState::Pending.as_str())
        .and(jobs::run_at.le(now))
        .or(jobs::state
            .eq(JobState::Running.as_str())
            .and(jobs::lease_until.lt(now)))
}

/// Marks a leased job done; `last_error` keeps a note when it was dropped rather than sent.
/// Returns `false` when `owner` no longer holds the lease (it ran out and another worker took
/// the job), in which case nothing changes.
pub fn complete(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let now = now.naive_utc();
    let updated = diesel::update(leased(id, owner))
        .set((
            jobs::state.eq(JobState::Done.as_str()),
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_until.eq(None::<NaiveDateTime>),
            jobs::last_error.eq(note),
            jobs::updated_at.eq(now),
            jobs::finished_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// Marks the leased jobs `ids` done at once and returns how many it changed; the others'
/// leases ran out and another worker owns them.
pub fn complete_all(
    conn: &mut AnyConnection,
    ids: &[i64],
    owner: &str,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let now = now.naive_utc();
    let updated = diesel::update(
        jobs::table
            .filter(jobs::id.eq_any(ids))
            .filter(jobs::state.eq(JobState::Running.as_str()))
            .filter(jobs::lease_owner.eq(owner)),
    )
    .set((
        jobs::state.eq(JobState::Done.as_str()),
        jobs::lease_owner.eq(None::<String>),
        jobs::lease_until.eq(None::<NaiveDateTime>),
        jobs::last_error.eq(None::<String>),
        jobs::updated_at.eq(now),
        jobs::finished_at.eq(Some(now)),
    ))
    .execute(conn)?;
    Ok(updated)
}

/// Puts a leased job back to pending until `run_at`, with the error of this attempt.
pub fn reschedule(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    run_at: DateTime<Utc>,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let updated = diesel::update(leased(id, owner))
        .set((
            jobs::state.eq(JobState::Pending.as_str()),
            jobs::run_at.eq(run_at.naive_utc()),
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_until.eq(None::<NaiveDateTime>),
            jobs::last_error.eq(error),
            jobs::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// Puts a leased job back to pending until `run_at` without counting the attempt it was
/// claimed with, and keeps `note` as its last error. For jobs that were not tried because
/// their destination is waiting.
pub fn defer(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    run_at: DateTime<Utc>,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let updated = diesel::update(leased(id, owner))
        .set((
            jobs::state.eq(JobState::Pending.as_str()),
            jobs::run_at.eq(run_at.naive_utc()),
            jobs::attempts.eq(jobs::attempts - 1),
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_until.eq(None::<NaiveDateTime>),
            jobs::last_error.eq(note),
            jobs::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// Marks a leased job dead with the reason.
pub fn kill(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let now = now.naive_utc();
    let updated = diesel::update(leased(id, owner))
        .set((
            jobs::state.eq(JobState::Dead.as_str()),
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_until.eq(None::<NaiveDateTime>),
            jobs::last_error.eq(error),
            jobs::updated_at.eq(now),
            jobs::finished_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

type Leased<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Filter<jobs::table, diesel::dsl::Eq<jobs::id, i64>>,
        diesel::dsl::Eq<jobs::state, &'static str>,
    >,
    diesel::dsl::Eq<jobs::lease_owner, &'a str>,
>;

fn leased(id: i64, owner: &str) -> Leased<'_> {
    jobs::table
        .filter(jobs::id.eq(id))
        .filter(jobs::state.eq(JobState::Running.as_str()))
        .filter(jobs::lease_owner.eq(owner))
}

/// Loads one job.
pub fn find(conn: &mut AnyConnection, id: i64) -> Result<Option<Job>, Error> {
    Ok(jobs::table
        .find(id)
        .select(Job::as_select())
        .first(conn)
        .optional()?)
}

/// Loads one job by its dedup key.
pub fn find_by_key(conn: &mut AnyConnection, dedup_key: &str) -> Result<Option<Job>, Error> {
    Ok(jobs::table
        .filter(jobs::dedup_key.eq(dedup_key))
        .select(Job::as_select())
        .first(conn)
        .optional()?)
}

/// Lists jobs, newest first, optionally only those in `state`.
pub fn list(
    conn: &mut AnyConnection,
    state: Option<JobState>,
    limit: usize,
) -> Result<Vec<Job>, Error> {
    let mut query = jobs::table
        .select(Job::as_select())
        .order(jobs::id.desc())
        .limit(limit as i64)
        .into_boxed();
    if let Some(state) = state {
        query = query.filter(jobs::state.eq(state.as_str()));
    }
    Ok(query.load(conn)?)
}

/// Counts jobs per state, in the order pending, running, done, dead.
pub fn count_by_state(conn: &mut AnyConnection) -> Result<[i64; 4], Error> {
    let mut counts = [0; 4];
    for (slot, state) in [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Dead,
    ]
    .into_iter()
    .enumerate()
    {
        counts[slot] = jobs::table
            .filter(jobs::state.eq(state.as_str()))
            .count()
            .get_result(conn)?;
    }
    Ok(counts)
}

/// Gives a dead job a fresh start: pending now, attempts reset. Its deadline stays, so a job
/// that died of its deadline dies again when claimed.
pub fn retry_dead(conn: &mut AnyConnection, id: i64, now: DateTime<Utc>) -> Result<Job, Error> {
    write_transaction(conn, |conn| {
        let job = find(conn, id)?.ok_or(Error::NotFound(id))?;
        if job.job_state() != Some(JobState::Dead) {
            return Err(Error::NotDead {
                id,
                state: job.state,
            });
        }
        diesel::update(jobs::table.find(id))
            .set((
                jobs::state.eq(JobState::Pending.as_str()),
                jobs::attempts.eq(0),
                jobs::run_at.eq(now.naive_utc()),
                jobs::updated_at.eq(now.naive_utc()),
                jobs::finished_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        find(conn, id)?.ok_or(Error::NotFound(id))
    })
}

/// Moves a pending job to a new run-at time and deadline; `false` when it is not pending.
pub fn move_pending(
    conn: &mut AnyConnection,
    id: i64,
    run_at: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let updated = diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::state.eq(JobState::Pending.as_str())),
    )
    .set((
        jobs::run_at.eq(run_at.naive_utc()),
        jobs::deadline.eq(deadline.map(|d| d.naive_utc())),
        jobs::updated_at.eq(now.naive_utc()),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Deletes job `id` if it is pending; `false` otherwise.
pub fn delete_pending(conn: &mut AnyConnection, id: i64) -> Result<bool, Error> {
    let deleted = diesel::delete(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::state.eq(JobState::Pending.as_str())),
    )
    .execute(conn)?;
    Ok(deleted == 1)
}

/// Deletes the pending jobs whose dedup key starts with `prefix` and returns how many.
/// Running jobs are left to finish: their handlers check at send time that they are still
/// wanted.
pub fn delete_pending_with_prefix(conn: &mut AnyConnection, prefix: &str) -> Result<usize, Error> {
    let pattern = format!("{}%", escape_like(prefix));
    let deleted = diesel::delete(
        jobs::table
            .filter(jobs::state.eq(JobState::Pending.as_str()))
            .filter(jobs::dedup_key.like(pattern).escape('\\')),
    )
    .execute(conn)?;
    Ok(deleted)
}

/// Returns whether a pending job's dedup key starts with `prefix`.
pub fn has_pending_with_prefix(conn: &mut AnyConnection, prefix: &str) -> Result<bool, Error> {
    let pattern = format!("{}%", escape_like(prefix));
    let found = jobs::table
        .filter(jobs::state.eq(JobState::Pending.as_str()))
        .filter(jobs::dedup_key.like(pattern).escape('\\'))
        .select(jobs::id)
        .first::<i64>(conn)
        .optional()?;
    Ok(found.is_some())
}

/// Deletes done and dead jobs that finished before `before` and returns how many.
pub fn delete_finished_before(
    conn: &mut AnyConnection,
    before: DateTime<Utc>,
) -> Result<usize, Error> {
    let deleted = diesel::delete(
        jobs::table
            .filter(jobs::state.eq_any([JobState::Done.as_str(), JobState::Dead.as_str()]))
            .filter(jobs::finished_at.lt(before.naive_utc())),
    )
    .execute(conn)?;
    Ok(deleted)
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
