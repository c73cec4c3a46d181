#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! The jobs table on SQLite and PostgreSQL: enqueue in the caller's transaction, dedup keys,
//! leases, retry of dead jobs, retention, and the `jobs` command.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, TestDb};
use rose_events::db::{AnyConnection, write_transaction};
use rose_events::delivery::queue::{self, Enqueued, NewJob};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn job(key: &str, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: "test".to_owned(),
        dedup_key: key.to_owned(),
        payload: serde_json::json!({ "key": key }),
        run_at,
        deadline: None,
        max_attempts: 3,
    }
}

fn enqueue_joins_caller_transaction(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let now = at("2030-01-01T00:00:00Z");

    let rolled_back: Result<(), rose_events::delivery::Error> =
        write_transaction(&mut conn, |conn| {
            queue::enqueue(conn, &job("a", now), now)?;
            Err(rose_events::delivery::Error::NotFound(0))
        });
    assert!(rolled_back.is_err());
    assert!(
        queue::find_by_key(&mut conn, "a")?.is_none(),
        "the rollback took the job with it"
    );

    let first = queue::enqueue(&mut conn, &job("a", now), now)?;
    assert!(matches!(first, Enqueued::Created(_)));
    let again = queue::enqueue(&mut conn, &job("a", now + Duration::hours(1)), now)?;
    assert_eq!(
        again,
        Enqueued::Exists(first.id()),
        "a dedup key enqueues once"
    );
    let stored = queue::find(&mut conn, first.id())?.expect("stored");
    assert_eq!(
        stored.run_at.and_utc(),
        now,
        "the duplicate changed nothing"
    );

    // Inside an open PostgreSQL transaction a duplicate must not abort it.
    write_transaction(&mut conn, |conn| {
        queue::enqueue(conn, &job("a", now), now)?;
        queue::enqueue(conn, &job("b", now), now)?;
        Ok::<_, rose_events::delivery::Error>(())
    })?;
    assert!(queue::find_by_key(&mut conn, "b")?.is_some());
    Ok(())
}

fn lease_expiry_makes_job_claimable(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let now = at("2030-01-01T00:00:00Z");
    queue::enqueue(&mut conn, &job("due", now), now)?;
    queue::enqueue(&mut conn, &job("later", now + Duration::minutes(5)), now)?;

    let lease = Duration::seconds(60);
    let claimed = queue::claim(&mut conn, "w1", now, lease, 10)?;
    assert_eq!(claimed.len(), 1, "only the due job");
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].state, "running");
    assert!(queue::claim(&mut conn, "w2", now + Duration::seconds(30), lease, 10)?.is_empty());

    // w1 crashed: after its lease another worker takes the job, and w1 can no longer finish it.
    let retaken = queue::claim(&mut conn, "w2", now + Duration::seconds(61), lease, 10)?;
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].id, claimed[0].id);
    assert_eq!(retaken[0].attempts, 2);
    assert!(!queue::complete(&mut conn, claimed[0].id, "w1", None, now)?);
    assert!(queue::complete(
        &mut conn,
        claimed[0].id,
        "w2",
        None,
        now + Duration::seconds(62)
    )?);
    let done = queue::find(&mut conn, claimed[0].id)?.expect("stored");
    assert_eq!(done.state, "done");
    assert!(done.lease_owner.is_none());
    Ok(())
}

fn dead_job_can_be_retried(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let now = at("2030-01-01T00:00:00Z");
    let id = queue::enqueue(&mut conn, &job("x", now), now)?.id();
    assert!(
        queue::retry_dead(&mut conn, id, now).is_err(),
        "a pending job is not retried"
    );
    queue::claim(&mut conn, "w", now, Duration::seconds(60), 1)?;
    assert!(queue::kill(
        &mut conn,
        id,
        "w",
        "413 payload too large",
        now
    )?);
    let retried = queue::retry_dead(&mut conn, id, now + Duration::hours(1))?;
    assert_eq!(retried.state, "pending");
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.run_at.and_utc(), now + Duration::hours(1));
    assert_eq!(retried.last_error.as_deref(), Some("413 payload too large"));
    Ok(())
}

fn cleanup_keeps_recent_finished_jobs(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let old = at("2030-01-01T00:00:00Z");
    let recent = at("2030-02-20T00:00:00Z");
    for (key, when) in [("old", old), ("recent", recent)] {
        let id = queue::enqueue(&mut conn, &job(key, when), when)?.id();
        queue::claim(&mut conn, "w", when, Duration::seconds(60), 10)?;
        queue::complete(&mut conn, id, "w", None, when)?;
    }
    queue::enqueue(&mut conn, &job("pending", old), old)?;

    let now = at("2030-03-01T00:00:00Z");
    let deleted = queue::delete_finished_before(&mut conn, now - Duration::days(30))?;
    assert_eq!(deleted, 1);
    assert!(queue::find_by_key(&mut conn, "old")?.is_none());
    assert!(queue::find_by_key(&mut conn, "recent")?.is_some());
    assert!(
        queue::find_by_key(&mut conn, "pending")?.is_some(),
        "pending jobs are never cleaned"
    );
    let late = queue::enqueue(&mut conn, &job("recent", now), now)?;
    assert!(
        matches!(late, Enqueued::Exists(_)),
        "a kept job still holds its dedup key"
    );
    Ok(())
}

fn concurrent_claims_are_disjoint(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let now = at("2030-01-01T00:00:00Z");
    for n in 0..60 {
        queue::enqueue(&mut conn, &job(&format!("job-{n}"), now), now)?;
    }
    let claimers: Vec<_> = (0..4)
        .map(|w| {
            let url = db.url.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<i64>> {
                let mut conn: AnyConnection = rose_events::db::connect(&url)?;
                let mut mine = Vec::new();
                loop {
                    let batch =
                        queue::claim(&mut conn, &format!("w{w}"), now, Duration::seconds(60), 7)?;
                    if batch.is_empty() {
                        return Ok(mine);
                    }
                    mine.extend(batch.iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.join().expect("claimer thread")?);
    }
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count, "no job was claimed twice");
    assert_eq!(count, 60, "every job was claimed");
    Ok(())
}

on_both_backends!(
    enqueue_joins_caller_transaction,
    lease_expiry_makes_job_claimable,
    dead_job_can_be_retried,
    cleanup_keeps_recent_finished_jobs,
    concurrent_claims_are_disjoint,
);

#[test]
fn jobs_command_lists_shows_and_retries() -> anyhow::Result<()> {
    let db = TestDb::new(Backend::Sqlite)?;
    let mut conn = db.connect()?;
    let now = at("2030-01-01T00:00:00Z");
    let id = queue::enqueue(&mut conn, &job("push/x", now), now)?.id();
    queue::claim(&mut conn, "w", now, Duration::seconds(60), 1)?;
    queue::kill(&mut conn, id, "w", "push service answered 413", now)?;
    drop(conn);

    let listed = common::run_cli(&db, &["jobs", "list", "--state", "dead"])?;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8(listed.stdout)?;
    assert!(
        text.starts_with("pending 0, running 0, done 0, dead 1\n"),
        "{text}"
    );
    assert!(text.contains(&format!("{id}\tdead\ttest\t")), "{text}");
    assert!(text.contains("push service answered 413"), "{text}");

    let shown = common::run_cli(&db, &["jobs", "show", &id.to_string()])?;
    let job: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(job["dedup_key"], "push/x");
    assert_eq!(job["state"], "dead");

    let retried = common::run_cli(&db, &["jobs", "retry", &id.to_string()])?;
    assert!(retried.status.success());
    let again = common::run_cli(&db, &["jobs", "retry", &id.to_string()])?;
    assert!(!again.status.success(), "only dead jobs are retried");
    let message = String::from_utf8(again.stderr)?;
    assert!(
        message.contains("only dead jobs can be retried"),
        "{message}"
    );

    let bad = common::run_cli(&db, &["jobs", "list", "--state", "stuck"])?;
    assert!(!bad.status.success());
    assert!(String::from_utf8(bad.stderr)?.contains("\"stuck\""));
    Ok(())
}

#[test]
fn vapid_generate_writes_key_once() -> anyhow::Result<()> {
    let db = TestDb::new(Backend::Sqlite)?;
    let first = common::run_cli(&db, &["vapid", "generate"])?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = String::from_utf8(first.stdout)?;
    assert_eq!(key.trim().len(), 87);
    let second = common::run_cli(&db, &["vapid", "generate"])?;
    assert!(
        !second.status.success(),
        "an existing key is not replaced silently"
    );
    let shown = common::run_cli(&db, &["vapid", "public-key"])?;
    assert_eq!(String::from_utf8(shown.stdout)?, key);
    let replaced = common::run_cli(&db, &["vapid", "generate", "--force"])?;
    assert_ne!(String::from_utf8(replaced.stdout)?, key);
    Ok(())
}
