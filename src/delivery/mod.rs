//! The durable delivery queue: every outbound send is a *job* row, written in the same
//! transaction as the change that causes it, and run by workers that may crash at any point.
//!
//! ```text
//!  domain write ──► enqueue (same transaction, unique dedup key)
//!                        │
//!  worker loop ──► claim (lease; PostgreSQL FOR UPDATE SKIP LOCKED) ──► handler by kind
//!                        ▲                                                  │
//!                        └── pending again (backoff, Retry-After) ◄─ retry ─┤
//!                        ├── pending again, attempt not spent ◄─ defer ─────┤
//!                                                    done ◄─────────────────┤
//!                                                    dead ◄─ permanent, deadline, attempts
//! ```
//!
//! Vocabulary:
//! - A *job* has a kind, a unique *dedup key*, a JSON payload, a run-at time, attempts, a
//!   *lease* (owner and expiry while running), a state, an optional deadline and its last error.
//! - A *handler* runs the jobs of one kind. The transports (Web Push, email) are handlers, and
//!   so are the notification jobs that decide what to send.
//! - Delivery is at least once. A worker can be killed after the remote side accepted a
//!   message but before the worker recorded it. Its job becomes claimable when the lease runs
//!   out, and the message is sent again with the same Web Push `Topic` and the same email
//!   `Message-ID`, which receivers use to replace or drop the copy.

pub mod cleanup;
pub mod clock;
pub mod domains;
pub mod queue;
pub mod retry;
pub mod transport;
pub mod worker;

pub use clock::{Clock, FixedClock, SystemClock};
pub use queue::{Enqueued, Job, JobState, NewJob};
pub use retry::{Outcome, RetryPolicy};
pub use worker::{BoxFuture, Handlers, JobHandler, Worker, WorkerSettings};

/// Queue errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] crate::db::Error),
    /// A job's payload cannot be encoded or decoded.
    #[error("job {job} payload is invalid: {reason}")]
    Payload {
        /// Job id, or 0 before it is stored.
        job: i64,
        /// The problem.
        reason: String,
    },
    /// A blocking database task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
    /// No job has that id.
    #[error("job {0} not found")]
    NotFound(i64),
    /// The job is not in a state that allows the operation.
    #[error("job {id} is {state}, only dead jobs can be retried")]
    NotDead {
        /// Job id.
        id: i64,
        /// Its state.
        state: String,
    },
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(crate::db::Error::Query(error))
    }
}
