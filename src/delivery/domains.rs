//! Delivery health per remote domain, so that one server being down does not make each of
//! its queued deliveries retry on its own.
//!
//! Vocabulary:
//! - A *domain* is a host with its port when the port is not the default, as in
//!   [`crate::federation::domain_of`].
//! - A domain is *healthy* until a delivery to it fails in a way that shows the server is
//!   unreachable or overloaded (connection error, timeout, 408, 429, 5xx). It is then *backing
//!   off*: nothing is sent to it before its next attempt time, which doubles with each further
//!   failure up to a cap, or follows the server's `Retry-After`. A domain that keeps failing
//!   for longer than the dead threshold is *dead*: its deliveries are *parked* and one *probe*
//!   is tried at a slow cadence.
//! - When the next attempt time of a failing domain comes, one job takes the *trial*: it
//!   moves the next attempt time forward by a short hold, so that other workers defer their
//!   jobs, and sends. Its success makes the domain healthy again; its failure backs the domain
//!   off further. The deferred jobs come back when the hold runs out, so parked jobs are
//!   released within the hold after a successful probe.
//! - Any HTTP response other than 408, 429 and 5xx shows that the server is up, even a 410
//!   for one deleted inbox, so it resets the domain to healthy.
//!
//! ```text
//!  healthy ──failure──► backing off ──failing longer than the threshold──► dead
//!     ▲                    │   ▲ failure: next attempt = now + base·2^(n-1), capped     │
//!     └──── success ───────┘   └── or Retry-After                   probe fails: +probe │
//!     ▲                                                                                 │
//!     └──────────────────────────────── probe succeeds ─────────────────────────────────┘
//! ```
//!
//! Failures of attempts that were already under way when the first failure of a round was
//! recorded do not count again: a batch of 32 jobs failing together is one failure of the
//! domain, not 32.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::Error;
use crate::db::schema::delivery_domains;
use crate::db::{AnyConnection, write_transaction};

/// Longest `Retry-After` honoured. A longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::days(1);

/// Delivery health of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Deliveries go out as soon as they are due.
    Healthy,
    /// Failing: nothing is sent before the next attempt time.
    BackingOff,
    /// Failing for longer than the threshold: deliveries are parked between probes.
    Dead,
}

impl DomainState {
    /// Returns the stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainState::Healthy => "healthy",
            DomainState::BackingOff => "backing_off",
            DomainState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> DomainState {
        match text {
            "backing_off" => DomainState::BackingOff,
            "dead" => DomainState::Dead,
            _ => DomainState::Healthy,
        }
    }
}

/// The stored health of one domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DomainHealth {
    /// Host, with the port when it is not the default.
    pub domain: String,
    /// Health.
    pub state: DomainState,
    /// Failures since the last success, counting each failed round once.
    pub consecutive_failures: i32,
    /// Start of the current run of failures.
    pub first_failure_at: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Nothing is sent to the domain before this instant.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The error of the last failure.
    pub last_error: Option<String>,
    /// When the domain last responded to a delivery.
    pub last_success_at: Option<DateTime<Utc>>,
}

type Row = (
    String,
    String,
    i32,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
    Option<NaiveDateTime>,
);

const COLUMNS: (
    delivery_domains::domain,
    delivery_domains::state,
    delivery_domains::consecutive_failures,
    delivery_domains::first_failure_at,
    delivery_domains::last_failure_at,
    delivery_domains::next_attempt_at,
    delivery_domains::last_error,
    delivery_domains::last_success_at,
) = (
    delivery_domains::domain,
    delivery_domains::state,
    delivery_domains::consecutive_failures,
    delivery_domains::first_failure_at,
    delivery_domains::last_failure_at,
    delivery_domains::next_attempt_at,
    delivery_domains::last_error,
    delivery_domains::last_success_at,
);

fn from_row(row: Row) -> DomainHealth {
    let (domain, state, failures, first, last, next, error, success) = row;
    DomainHealth {
        domain,
        state: DomainState::parse(&state),
        consecutive_failures: failures,
        first_failure_at: first.map(|t| t.and_utc()),
        last_failure_at: last.map(|t| t.and_utc()),
        next_attempt_at: next.map(|t| t.and_utc()),
        last_error: error,
        last_success_at: success.map(|t| t.and_utc()),
    }
}

/// Backoff, dead threshold and probe cadence of domains.
#[derive(Clone, Copy, Debug)]
pub struct DomainPolicy {
    /// Wait after the first failure.
    pub base: Duration,
    /// Maximum wait between two attempts while backing off.
    pub cap: Duration,
    /// A domain failing for this long is dead.
    pub dead_after: Duration,
    /// Wait between two probes of a dead domain.
    pub probe_interval: Duration,
    /// How long the other jobs of a domain wait while one job takes the trial; longer than
    /// one send takes.
    pub trial_hold: Duration,
}

impl Default for DomainPolicy {
    fn default() -> Self {
        DomainPolicy {
            base: Duration::seconds(30),
            cap: Duration::hours(1),
            dead_after: Duration::days(3),
            probe_interval: Duration::hours(6),
            trial_hold: Duration::seconds(30),
        }
    }
}

impl DomainPolicy {
    /// Wait after `failures` consecutive failures: `base · 2^(failures-1)`, at most `cap`.
    pub fn backoff(&self, failures: i32) -> Duration {
        let doublings = failures.saturating_sub(1).clamp(0, 30) as u32;
        self.base
            .checked_mul(1_i32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

/// The decision for a job of a domain at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Send: the domain is healthy.
    Open,
    /// The domain's next attempt time has come: one job may take the trial.
    TrialDue,
    /// Wait until this instant; the text gives the reason and names the domain.
    Wait(DateTime<Utc>, String),
}

/// Decides from the stored health (`None`: never failed) what a job may do at `now`.
pub fn gate(health: Option<&DomainHealth>, now: DateTime<Utc>) -> Gate {
    let Some(health) = health else {
        return Gate::Open;
    };
    match (health.state, health.next_attempt_at) {
        (DomainState::Healthy, _) | (_, None) => Gate::Open,
        (_, Some(next)) if next > now => Gate::Wait(next, waiting_note(health)),
        _ => Gate::TrialDue,
    }
}

/// Returns the reason a job of a failing domain waits, naming the domain.
pub fn waiting_note(health: &DomainHealth) -> String {
    let error = health.last_error.as_deref().unwrap_or("no error recorded");
    let since = health
        .first_failure_at
        .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
    match health.state {
        DomainState::Dead => format!(
            "parked: domain {} is dead, failing since {since} (last error: {error})",
            health.domain
        ),
        _ => format!(
            "waiting for domain {}: backing off after {} failures (last error: {error})",
            health.domain, health.consecutive_failures
        ),
    }
}

/// Loads one domain's health.
pub fn find(conn: &mut AnyConnection, domain: &str) -> Result<Option<DomainHealth>, Error> {
    let row: Option<Row> = delivery_domains::table
        .find(domain)
        .select(COLUMNS)
        .first(conn)
        .optional()?;
    Ok(row.map(from_row))
}

/// Loads the health of each of `domains` that has a row.
pub fn find_many(conn: &mut AnyConnection, domains: &[String]) -> Result<Vec<DomainHealth>, Error> {
    let rows: Vec<Row> = delivery_domains::table
        .filter(delivery_domains::domain.eq_any(domains))
        .select(COLUMNS)
        .load(conn)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Lists every domain that ever failed, failing ones first, then by name.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<DomainHealth>, Error> {
    let rows: Vec<Row> = delivery_domains::table
        .order(delivery_domains::domain)
        .select(COLUMNS)
        .load(conn)?;
    let mut list: Vec<DomainHealth> = rows.into_iter().map(from_row).collect();
    list.sort_by_key(|h| h.state == DomainState::Healthy);
    Ok(list)
}

/// Takes the trial of a failing domain whose next attempt time has passed: moves that time to
/// `now + hold` and returns `true`, unless another job took it first. One UPDATE with the
/// condition in its WHERE clause, so of concurrent workers exactly one wins.
pub fn take_trial(
    conn: &mut AnyConnection,
    domain: &str,
    now: DateTime<Utc>,
    hold: Duration,
) -> Result<bool, Error> {
    let naive = now.naive_utc();
    let updated = diesel::update(
        delivery_domains::table
            .filter(delivery_domains::domain.eq(domain))
            .filter(delivery_domains::state.ne(DomainState::Healthy.as_str()))
            .filter(delivery_domains::next_attempt_at.le(naive)),
    )
    .set((
        delivery_domains::next_attempt_at.eq(naive + hold),
        delivery_domains::updated_at.eq(naive),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// A failed delivery to a domain, as the handler saw it.
#[derive(Clone, Debug)]
pub struct Failure<'a> {
    /// When the failed attempt began.
    pub started: DateTime<Utc>,
    /// When it failed.
    pub now: DateTime<Utc>,
    /// What failed.
    pub error: &'a str,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<StdDuration>,
}

/// Records a failed delivery and returns the domain's health afterwards.
///
/// An attempt that began before the last recorded failure belongs to that failure's round and
/// changes nothing. Otherwise the failure count rises, the next attempt time moves to the
/// backoff (or `Retry-After`), and a domain failing since longer than the dead threshold is
/// dead, next probed after the probe interval.
pub fn record_failure(
    conn: &mut AnyConnection,
    domain: &str,
    failure: &Failure<'_>,
    policy: &DomainPolicy,
) -> Result<DomainHealth, Error> {
    write_transaction(conn, |conn| {
        let current = find_for_update(conn, domain)?;
        if let Some(current) = &current
            && current
                .last_failure_at
                .is_some_and(|last| last >= failure.started)
        {
            return Ok(current.clone());
        }
        let next = escalate(current.as_ref(), domain, failure, policy);
        store(conn, &next, failure.now)?;
        log_failure(current.as_ref(), &next);
        Ok(next)
    })
}

/// Returns the health after a failure that counts, from the health before it.
fn escalate(
    current: Option<&DomainHealth>,
    domain: &str,
    failure: &Failure<'_>,
    policy: &DomainPolicy,
) -> DomainHealth {
    let failing = current.filter(|h| h.state != DomainState::Healthy);
    let failures = failing.map_or(0, |h| h.consecutive_failures) + 1;
    let first = failing
        .and_then(|h| h.first_failure_at)
        .unwrap_or(failure.now);
    // A Retry-After below the base wait is raised to it, so that a server that sends
    // "Retry-After: 0" with every response is not tried again in a tight loop.
    let requested = failure.retry_after.map(|after| {
        Duration::from_std(after)
            .unwrap_or(MAX_RETRY_AFTER)
            .clamp(policy.base, MAX_RETRY_AFTER)
    });
    let dead = failure.now - first >= policy.dead_after;
    let wait = if dead {
        policy.probe_interval.max(requested.unwrap_or_default())
    } else {
        requested.unwrap_or_else(|| policy.backoff(failures))
    };
    DomainHealth {
        domain: domain.to_owned(),
        state: if dead {
            DomainState::Dead
        } else {
            DomainState::BackingOff
        },
        consecutive_failures: failures,
        first_failure_at: Some(first),
        last_failure_at: Some(failure.now),
        next_attempt_at: Some(failure.now + wait),
        last_error: Some(failure.error.to_owned()),
        last_success_at: current.and_then(|h| h.last_success_at),
    }
}

/// Records that `domain` answered a delivery: a failing domain becomes healthy. Returns its
/// health before, when that changed it.
pub fn record_success(
    conn: &mut AnyConnection,
    domain: &str,
    now: DateTime<Utc>,
) -> Result<Option<DomainHealth>, Error> {
    write_transaction(conn, |conn| {
        let Some(before) = find_for_update(conn, domain)? else {
            return Ok(None);
        };
        if before.state == DomainState::Healthy {
            return Ok(None);
        }
        let naive = now.naive_utc();
        diesel::update(delivery_domains::table.find(domain))
            .set((
                delivery_domains::state.eq(DomainState::Healthy.as_str()),
                delivery_domains::consecutive_failures.eq(0),
                delivery_domains::first_failure_at.eq(None::<NaiveDateTime>),
                delivery_domains::next_attempt_at.eq(None::<NaiveDateTime>),
                delivery_domains::last_success_at.eq(Some(naive)),
                delivery_domains::updated_at.eq(naive),
            ))
            .execute(conn)?;
        tracing::info!(
            domain,
            was = before.state.as_str(),
            failures = before.consecutive_failures,
            "delivery domain answered again, now healthy"
        );
        Ok(Some(before))
    })
}

/// Loads a domain's row, locking it on PostgreSQL until the transaction ends. SQLite's
/// write transaction already holds the database's write lock.
fn find_for_update(conn: &mut AnyConnection, domain: &str) -> Result<Option<DomainHealth>, Error> {
    let query = delivery_domains::table.find(domain).select(COLUMNS);
    let row: Option<Row> = match conn {
        AnyConnection::Postgresql(pg) => query.for_update().first(pg).optional()?,
        AnyConnection::Sqlite(lite) => query.first(lite).optional()?,
    };
    Ok(row.map(from_row))
}

fn store(conn: &mut AnyConnection, health: &DomainHealth, now: DateTime<Utc>) -> Result<(), Error> {
    let naive = |t: Option<DateTime<Utc>>| t.map(|t| t.naive_utc());
    let values = (
        delivery_domains::domain.eq(&health.domain),
        delivery_domains::state.eq(health.state.as_str()),
        delivery_domains::consecutive_failures.eq(health.consecutive_failures),
        delivery_domains::first_failure_at.eq(naive(health.first_failure_at)),
        delivery_domains::last_failure_at.eq(naive(health.last_failure_at)),
        delivery_domains::next_attempt_at.eq(naive(health.next_attempt_at)),
        delivery_domains::last_error.eq(health.last_error.as_deref()),
        delivery_domains::last_success_at.eq(naive(health.last_success_at)),
        delivery_domains::updated_at.eq(now.naive_utc()),
    );
    // The row was locked when read. A new domain's row is inserted, and when two workers
    // insert the same new domain at once, the primary key keeps the first and the second
    // updates it.
    let updated = diesel::update(delivery_domains::table.find(&health.domain))
        .set(values)
        .execute(conn)?;
    if updated > 0 {
        return Ok(());
    }
    let insert = diesel::insert_into(delivery_domains::table).values(values);
    let inserted = match conn {
        AnyConnection::Postgresql(pg) => insert.on_conflict_do_nothing().execute(pg)?,
        AnyConnection::Sqlite(lite) => insert.on_conflict_do_nothing().execute(lite)?,
    };
    if inserted == 0 {
        diesel::update(delivery_domains::table.find(&health.domain))
            .set(values)
            .execute(conn)?;
    }
    Ok(())
}

fn log_failure(before: Option<&DomainHealth>, after: &DomainHealth) {
    let next = after
        .next_attempt_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let error = after.last_error.as_deref().unwrap_or_default();
    let was = before.map_or(DomainState::Healthy, |h| h.state);
    match (was, after.state) {
        (DomainState::Dead, DomainState::Dead) => tracing::info!(
            domain = %after.domain,
            next_probe = %next,
            error,
            "probe of dead delivery domain failed"
        ),
        (_, DomainState::Dead) => tracing::warn!(
            domain = %after.domain,
            failing_since = %after.first_failure_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            next_probe = %next,
            error,
            "delivery domain is dead: deliveries are parked and probed"
        ),
        (DomainState::Healthy, _) => tracing::warn!(
            domain = %after.domain,
            next_attempt = %next,
            error,
            "delivery domain failed, backing off"
        ),
        _ => tracing::warn!(
            domain = %after.domain,
            failures = after.consecutive_failures,
            next_attempt = %next,
            error,
            "delivery domain still failing, backing off further"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    fn failure(now: &str, retry_after: Option<u64>) -> Failure<'static> {
        Failure {
            started: at(now),
            now: at(now),
            error: "inbox answered 503",
            retry_after: retry_after.map(StdDuration::from_secs),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = DomainPolicy::default();
        assert_eq!(policy.backoff(1), Duration::seconds(30));
        assert_eq!(policy.backoff(2), Duration::seconds(60));
        assert_eq!(policy.backoff(7), Duration::minutes(32));
        assert_eq!(policy.backoff(8), Duration::hours(1));
        assert_eq!(policy.backoff(40), Duration::hours(1));
    }

    #[test]
    fn first_failure_backs_off_and_honours_retry_after() {
        let policy = DomainPolicy::default();
        let after = escalate(
            None,
            "a.example",
            &failure("2030-01-01T00:00:00Z", None),
            &policy,
        );
        assert_eq!(after.state, DomainState::BackingOff);
        assert_eq!(after.next_attempt_at, Some(at("2030-01-01T00:00:30Z")));
        let requested = escalate(
            None,
            "a.example",
            &failure("2030-01-01T00:00:00Z", Some(600)),
            &policy,
        );
        assert_eq!(requested.next_attempt_at, Some(at("2030-01-01T00:10:00Z")));
        let at_once = escalate(
            None,
            "a.example",
            &failure("2030-01-01T00:00:00Z", Some(0)),
            &policy,
        );
        assert_eq!(at_once.next_attempt_at, Some(at("2030-01-01T00:00:30Z")));
    }

    #[test]
    fn failing_past_the_threshold_is_dead() {
        let policy = DomainPolicy::default();
        let first = escalate(
            None,
            "a.example",
            &failure("2030-01-01T00:00:00Z", None),
            &policy,
        );
        let later = escalate(
            Some(&first),
            "a.example",
            &failure("2030-01-04T00:00:00Z", None),
            &policy,
        );
        assert_eq!(later.state, DomainState::Dead);
        assert_eq!(later.consecutive_failures, 2);
        assert_eq!(later.first_failure_at, Some(at("2030-01-01T00:00:00Z")));
        assert_eq!(later.next_attempt_at, Some(at("2030-01-04T06:00:00Z")));
    }

    #[test]
    fn gate_follows_the_next_attempt_time() {
        let now = at("2030-01-01T00:00:00Z");
        assert_eq!(gate(None, now), Gate::Open);
        let failing = escalate(
            None,
            "a.example",
            &failure("2030-01-01T00:00:00Z", None),
            &DomainPolicy::default(),
        );
        assert!(matches!(gate(Some(&failing), now), Gate::Wait(next, note)
            if next == at("2030-01-01T00:00:30Z") && note.contains("a.example")));
        assert_eq!(
            gate(Some(&failing), at("2030-01-01T00:00:30Z")),
            Gate::TrialDue
        );
    }
}
