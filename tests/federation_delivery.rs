#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! ActivityPub deliveries and the health of their domains, on SQLite and PostgreSQL: a worker
//! with a fixed clock signs and POSTs to an inbox on 127.0.0.1 that responds as scripted.
//!
//! A failing domain holds back its other deliveries until its next attempt time. A domain
//! failing past the dead threshold parks its deliveries until a probe gets through. An inbox
//! that responds 410 does not make its domain fail. Two workers on one PostgreSQL database try
//! a failing domain once per round.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::inbox::TestInbox;
use common::{Backend, TestDb};
use rose_events::db::DbPool;
use rose_events::delivery::domains::{self, DomainHealth, DomainPolicy, DomainState};
use rose_events::delivery::queue::{self, Job};
use rose_events::delivery::{Clock, FixedClock, Handlers, Worker, WorkerSettings};
use rose_events::federation::deliver::{self, DeliveryHandler};
use rose_events::federation::follows::{self, FollowTarget};
use rose_events::federation::{Settings, TrustPolicy, actors};

const PUBLIC_URL: &str = "https://events.example";

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A database, a fixed clock and a worker that delivers with it.
struct Rig {
    _db: TestDb,
    pool: DbPool,
    clock: Arc<FixedClock>,
    worker: Worker,
}

impl Rig {
    fn new(backend: Backend, now: DateTime<Utc>) -> anyhow::Result<Self> {
        let db = TestDb::new(backend)?;
        drop(db.connect()?);
        let pool = rose_events::db::create_pool(&db.url, 4)?;
        let clock = Arc::new(FixedClock::new(now));
        let worker = worker(&pool, &clock);
        Ok(Rig {
            _db: db,
            pool,
            clock,
            worker,
        })
    }

    /// Enqueues the delivery of activity `name` to each of `inboxes`, enqueued at `now`.
    fn enqueue(&self, name: &str, inboxes: &[String], now: DateTime<Utc>) -> anyhow::Result<()> {
        let actor = actors::instance_id(PUBLIC_URL);
        let id = format!("{PUBLIC_URL}/activities/{name}");
        let activity = serde_json::json!({"id": id, "type": "Create", "actor": actor});
        let mut conn = self.pool.get()?;
        deliver::enqueue(&mut conn, &actor, &id, &activity, inboxes, now)?;
        Ok(())
    }

    /// Runs one batch at `now`.
    fn run_at(
        &self,
        runtime: &tokio::runtime::Runtime,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        self.clock.set(now);
        Ok(runtime.block_on(self.worker.run_once())?)
    }

    fn jobs(&self) -> anyhow::Result<Vec<Job>> {
        let mut jobs = queue::list(&mut *self.pool.get()?, None, 10_000)?;
        jobs.retain(|job| job.kind == deliver::KIND);
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    fn health(&self, domain: &str) -> anyhow::Result<Option<DomainHealth>> {
        Ok(domains::find(&mut *self.pool.get()?, domain)?)
    }
}

/// A worker with its own delivery handler, as another process would have.
fn worker(pool: &DbPool, clock: &Arc<FixedClock>) -> Worker {
    let settings = Settings {
        public_url: PUBLIC_URL.to_owned(),
        policy: TrustPolicy::AllowList,
        allow_localhost: true,
        clock: rose_events::federation::Clock::System,
    };
    let shared: Arc<dyn Clock> = clock.clone();
    let mut handlers = Handlers::default();
    handlers.insert(
        deliver::KIND,
        Arc::new(DeliveryHandler::new(
            pool.clone(),
            settings,
            DomainPolicy::default(),
            shared.clone(),
        )),
    );
    let settings = WorkerSettings {
        batch: 16,
        ..WorkerSettings::default()
    };
    Worker::new(pool.clone(), handlers, shared, settings)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn states(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|job| job.state.as_str()).collect()
}

fn failing_domain_holds_back_its_other_deliveries(backend: Backend) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(backend, t0)?;
    let inbox = TestInbox::start()?;
    inbox.answer_next(503, None);
    let (first, second) = (inbox.url("/users/ana/inbox"), inbox.url("/users/bo/inbox"));
    rig.enqueue("1", std::slice::from_ref(&first), t0)?;
    rig.enqueue(
        "2",
        std::slice::from_ref(&second),
        t0 + Duration::seconds(1),
    )?;

    // The first delivery meets a 503: the domain backs off for 30 s.
    assert_eq!(rig.run_at(&runtime, t0)?, 1);
    assert_eq!(inbox.count(), 1);
    let health = rig
        .health(&inbox.domain)?
        .expect("a row for the failing domain");
    assert_eq!(health.state, DomainState::BackingOff);
    assert_eq!(health.consecutive_failures, 1);
    assert_eq!(health.next_attempt_at, Some(t0 + Duration::seconds(30)));

    // The second one is due a second later but is not sent before the domain's time, and
    // waiting does not spend one of its attempts.
    assert_eq!(rig.run_at(&runtime, t0 + Duration::seconds(1))?, 1);
    assert_eq!(inbox.count(), 1, "nothing sent while the domain backs off");
    let jobs = rig.jobs()?;
    assert_eq!(states(&jobs), ["pending", "pending"]);
    assert_eq!(jobs[1].run_at.and_utc(), t0 + Duration::seconds(30));
    assert_eq!(jobs[1].attempts, 0);
    let note = jobs[1].last_error.clone().unwrap_or_default();
    assert!(note.contains(&inbox.domain), "{note}");
    assert_eq!(jobs[0].run_at.and_utc(), t0 + Duration::seconds(30));
    assert_eq!(jobs[0].attempts, 1);

    // At the domain's time one delivery takes the trial and gets through. The other goes
    // once it sees the domain healthy: at once if the trial was already recorded, else when
    // the trial's hold ends.
    let trial_at = t0 + Duration::seconds(30);
    assert_eq!(rig.run_at(&runtime, trial_at)?, 2);
    assert!((2..=3).contains(&inbox.count()), "{}", inbox.count());
    let health = rig.health(&inbox.domain)?.expect("row kept");
    assert_eq!(health.state, DomainState::Healthy);
    assert_eq!(rig.run_at(&runtime, trial_at + Duration::seconds(29))?, 0);
    rig.run_at(&runtime, trial_at + Duration::seconds(30))?;
    assert_eq!(inbox.count(), 3);
    assert_eq!(states(&rig.jobs()?), ["done", "done"]);
    let paths: Vec<String> = inbox.received().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/users/bo/inbox".to_owned()), "{paths:?}");
    assert!(inbox.received().iter().all(|r| r.signed));
    Ok(())
}

fn retry_after_sets_the_domains_next_attempt(backend: Backend) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(backend, t0)?;
    let inbox = TestInbox::start()?;
    inbox.answer_next(429, Some(600));
    rig.enqueue("1", &[inbox.url("/inbox")], t0)?;
    rig.enqueue(
        "2",
        &[inbox.url("/users/ana/inbox")],
        t0 + Duration::seconds(1),
    )?;

    rig.run_at(&runtime, t0)?;
    let health = rig.health(&inbox.domain)?.expect("row");
    assert_eq!(health.next_attempt_at, Some(t0 + Duration::minutes(10)));
    rig.run_at(&runtime, t0 + Duration::minutes(5))?;
    assert_eq!(inbox.count(), 1, "nothing before the server's Retry-After");
    rig.run_at(&runtime, t0 + Duration::minutes(10))?;
    assert!(inbox.count() >= 2);
    Ok(())
}

fn dead_domain_parks_deliveries_until_a_probe_succeeds(backend: Backend) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(backend, t0)?;
    let inbox = TestInbox::start()?;
    inbox.answer_always(503);
    rig.enqueue("early", &[inbox.url("/users/ana/inbox")], t0)?;
    rig.run_at(&runtime, t0)?;
    assert_eq!(inbox.count(), 1);

    // Three days and a minute later the trial fails again: the domain is dead, probed again in
    // six hours.
    let dead_at = t0 + Duration::days(3) + Duration::minutes(1);
    rig.run_at(&runtime, dead_at)?;
    assert_eq!(inbox.count(), 2);
    let health = rig.health(&inbox.domain)?.expect("row");
    assert_eq!(health.state, DomainState::Dead);
    assert_eq!(health.first_failure_at, Some(t0));
    let probe_at = dead_at + Duration::hours(6);
    assert_eq!(health.next_attempt_at, Some(probe_at));

    // A new delivery is parked, not sent. One enqueued long ago whose deadline comes before
    // the next probe dies, and its error names the domain.
    rig.enqueue("new", &[inbox.url("/users/bo/inbox")], dead_at)?;
    let old = dead_at - Duration::days(7) + Duration::hours(1);
    rig.enqueue("old", &[inbox.url("/users/cy/inbox")], old)?;
    rig.run_at(&runtime, dead_at + Duration::seconds(1))?;
    assert_eq!(inbox.count(), 2, "parked deliveries are not sent");
    let jobs = rig.jobs()?;
    assert_eq!(states(&jobs), ["pending", "pending", "dead"]);
    assert_eq!(jobs[1].run_at.and_utc(), probe_at);
    assert_eq!(jobs[1].attempts, 0);
    let parked = jobs[1].last_error.clone().unwrap_or_default();
    assert!(
        parked.contains("parked") && parked.contains(&inbox.domain),
        "{parked}"
    );
    let died = jobs[2].last_error.clone().unwrap_or_default();
    assert!(
        died.contains(&inbox.domain) && died.contains("deadline"),
        "{died}"
    );

    // The server is back. The probe gets through, the domain is healthy again and the parked
    // delivery goes out when the probe's hold ends.
    inbox.answer_always(202);
    rig.run_at(&runtime, probe_at)?;
    assert!((3..=4).contains(&inbox.count()), "{}", inbox.count());
    assert_eq!(
        rig.health(&inbox.domain)?.map(|h| h.state),
        Some(DomainState::Healthy)
    );
    rig.run_at(&runtime, probe_at + Duration::seconds(30))?;
    assert_eq!(inbox.count(), 4);
    assert_eq!(states(&rig.jobs()?), ["done", "done", "dead"]);
    Ok(())
}

fn deleted_inbox_keeps_domain_healthy(backend: Backend) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(backend, t0)?;
    let inbox = TestInbox::start()?;
    inbox.answer_path("/users/gone/inbox", 410);
    let deleted = inbox.url("/users/gone/inbox");

    // 410 for days: each of those deliveries dies at once, and the domain is never failing.
    for day in 0..5 {
        let now = t0 + Duration::days(day);
        rig.enqueue(&format!("gone-{day}"), std::slice::from_ref(&deleted), now)?;
        rig.run_at(&runtime, now)?;
    }
    assert!(rig.health(&inbox.domain)?.is_none(), "no failure recorded");
    let later = t0 + Duration::days(5);
    rig.enqueue("live", &[inbox.url("/users/ana/inbox")], later)?;
    rig.run_at(&runtime, later)?;
    let jobs = rig.jobs()?;
    assert_eq!(
        states(&jobs),
        ["dead", "dead", "dead", "dead", "dead", "done"]
    );
    let error = jobs[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("410"), "{error}");

    // A failing domain that answers 410 at its trial has answered: it is healthy again. The
    // delivery that met the 503 is so close to its deadline that it dies instead of waiting,
    // so the 410 is the trial.
    inbox.answer_next(503, None);
    let failing_at = later + Duration::hours(1);
    let enqueued = failing_at - Duration::days(7) + Duration::seconds(10);
    rig.enqueue("busy", &[inbox.url("/users/bo/inbox")], enqueued)?;
    rig.run_at(&runtime, failing_at)?;
    assert_eq!(
        rig.health(&inbox.domain)?.map(|h| h.state),
        Some(DomainState::BackingOff)
    );
    let trial_at = failing_at + Duration::seconds(30);
    rig.enqueue("gone-again", std::slice::from_ref(&deleted), trial_at)?;
    assert_eq!(rig.run_at(&runtime, trial_at)?, 1);
    assert_eq!(
        rig.health(&inbox.domain)?.map(|h| h.state),
        Some(DomainState::Healthy)
    );
    let last = rig.jobs()?.pop().expect("the last delivery");
    assert_eq!(last.state, "dead");
    assert!(last.last_error.unwrap_or_default().contains("410"));
    Ok(())
}

fn inbox_spellings_share_one_delivery(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend)?;
    let mut conn = db.connect()?;
    let calendar = rose_events::calendar::store::insert_calendar(
        &mut conn,
        &rose_events::calendar::NewCalendar {
            slug: "club".to_owned(),
            name: "Club".to_owned(),
            default_zone: chrono_tz::Europe::Berlin,
            visibility: rose_events::calendar::Visibility::Public,
        },
    )?;
    let calendar_actor = actors::calendar_id(PUBLIC_URL, "club");
    let target = FollowTarget {
        calendar_id: Some(calendar.id),
        calendar_actor: &calendar_actor,
    };

    // Two servers' actors each name their shared inbox in another spelling: the host's case,
    // a default port, an IPv6 literal written out in full.
    let spellings = [
        (
            "https://peer.example/users/ana",
            "https://peer.example/inbox",
        ),
        (
            "https://peer.example/users/ben",
            "https://PEER.Example:443/inbox",
        ),
        (
            "https://[2001:db8::7]/users/cy",
            "https://[2001:db8::7]/inbox",
        ),
        (
            "https://[2001:db8::7]/users/dee",
            "https://[2001:DB8:0:0::7]:443/inbox",
        ),
    ];
    for (follower, inbox) in spellings {
        let follow = serde_json::json!({
            "id": format!("{follower}/follows/1"),
            "type": "Follow",
            "actor": follower,
            "object": calendar_actor,
        });
        follows::follow(&mut conn, &target, follower, inbox, &follow)?;
    }

    let inboxes = follows::audience_inboxes(&mut conn, calendar.id)?;
    assert_eq!(
        inboxes,
        ["https://[2001:db8::7]/inbox", "https://peer.example/inbox"]
    );
    Ok(())
}

fn temporary_redirect_is_retried(backend: Backend) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(backend, t0)?;
    let inbox = TestInbox::start()?;

    // A 307 is a temporary response from a server that is up, so the job waits and tries
    // again, and the domain is not failing. The redirect is not followed, because the POST
    // would go to a host whose address was never checked.
    inbox.answer_next(307, None);
    rig.enqueue("moved-for-now", &[inbox.url("/users/ana/inbox")], t0)?;
    rig.run_at(&runtime, t0)?;
    let jobs = rig.jobs()?;
    assert_eq!(states(&jobs), ["pending"]);
    let error = jobs[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("307"), "{error}");
    assert!(rig.health(&inbox.domain)?.is_none(), "no failure recorded");

    let later = t0 + Duration::hours(2);
    rig.run_at(&runtime, later)?;
    assert_eq!(states(&rig.jobs()?), ["done"]);
    assert_eq!(inbox.count(), 2);

    // A 308 means the inbox moved for good, so the job dies with the status.
    inbox.answer_next(308, None);
    rig.enqueue("moved-for-good", &[inbox.url("/users/ben/inbox")], later)?;
    rig.run_at(&runtime, later)?;
    let last = rig.jobs()?.pop().expect("the last delivery");
    assert_eq!(last.state, "dead");
    assert!(last.last_error.unwrap_or_default().contains("308"));
    Ok(())
}

fn zero_retry_after_still_backs_off(backend: Backend) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(backend, t0)?;
    let inbox = TestInbox::start()?;
    for _ in 0..40 {
        inbox.answer_next(429, Some(0));
    }
    rig.enqueue("1", &[inbox.url("/inbox")], t0)?;

    // A server that asks to be retried at once, every time, gets one attempt per backoff
    // instead of a burst that uses up every attempt of the job within a second.
    for _ in 0..30 {
        rig.run_at(&runtime, t0)?;
    }
    assert_eq!(inbox.count(), 1);
    assert_eq!(states(&rig.jobs()?), ["pending"]);
    let health = rig.health(&inbox.domain)?.expect("row");
    assert_eq!(health.next_attempt_at, Some(t0 + Duration::seconds(30)));
    Ok(())
}

on_both_backends!(
    failing_domain_holds_back_its_other_deliveries,
    retry_after_sets_the_domains_next_attempt,
    dead_domain_parks_deliveries_until_a_probe_succeeds,
    deleted_inbox_keeps_domain_healthy,
    inbox_spellings_share_one_delivery,
    temporary_redirect_is_retried,
    zero_retry_after_still_backs_off,
);

/// Runs one batch on each worker at the same time at `now`; returns the jobs claimed.
fn run_both(
    runtime: &tokio::runtime::Runtime,
    rig: &Rig,
    other: &Worker,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    rig.clock.set(now);
    let (a, b) = runtime.block_on(async { tokio::join!(rig.worker.run_once(), other.run_once()) });
    Ok(a? + b?)
}

/// Runs both workers at `now` until neither claims a job.
fn drain_both(
    runtime: &tokio::runtime::Runtime,
    rig: &Rig,
    other: &Worker,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for _ in 0..10 {
        if run_both(runtime, rig, other, now)? == 0 {
            return Ok(());
        }
    }
    anyhow::bail!("jobs were still due after ten rounds at {now}")
}

#[test]
fn two_workers_one_trial_per_round() -> anyhow::Result<()> {
    let runtime = runtime()?;
    let t0 = at("2030-01-01T00:00:00Z");
    let rig = Rig::new(Backend::Postgres, t0)?;
    let other = worker(&rig.pool, &rig.clock);
    let inbox = TestInbox::start()?;
    inbox.answer_always(503);
    let inboxes: Vec<String> = (0..20)
        .map(|n| inbox.url(&format!("/users/{n}/inbox")))
        .collect();
    rig.enqueue("fan-out", &inboxes, t0)?;

    // Both workers send what they claim and fail; the domain counts one failure. How the
    // twenty split between the two claims depends on timing, so the counts below are
    // relative to what this first round sent.
    run_both(&runtime, &rig, &other, t0)?;
    let first_round = inbox.count();
    assert!(first_round >= 1, "the first round sends");
    let health = rig.health(&inbox.domain)?.expect("row");
    assert_eq!(health.consecutive_failures, 1);

    // At the domain's time exactly one delivery is tried, however the workers split the jobs.
    let first_trial = t0 + Duration::seconds(30);
    drain_both(&runtime, &rig, &other, first_trial)?;
    assert_eq!(inbox.count(), first_round + 1);
    let health = rig.health(&inbox.domain)?.expect("row");
    assert_eq!(health.consecutive_failures, 2);
    let next = first_trial + Duration::seconds(60);
    assert_eq!(health.next_attempt_at, Some(next));

    // The others come back after the hold and wait again; then the server recovers.
    drain_both(&runtime, &rig, &other, first_trial + Duration::seconds(30))?;
    assert_eq!(inbox.count(), first_round + 1);
    inbox.answer_always(202);
    drain_both(&runtime, &rig, &other, next)?;
    assert!(inbox.count() > first_round + 1, "the trial gets through");
    drain_both(&runtime, &rig, &other, next + Duration::seconds(30))?;
    assert_eq!(inbox.count(), first_round + 1 + 20);
    let jobs = rig.jobs()?;
    assert!(
        jobs.iter().all(|job| job.state == "done"),
        "{:?}",
        states(&jobs)
    );
    assert!(
        jobs.iter().all(|job| job.attempts <= 2),
        "waiting spent no attempt"
    );
    Ok(())
}
