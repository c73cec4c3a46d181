#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! A `rose-events work` process killed with SIGKILL in the middle of a batch loses nothing.
//! A second process takes over the jobs whose lease ran out, and every job ends done. No
//! message is shown twice under one dedup key, because resends carry the same Topic, which a
//! push service uses to replace the earlier copy.
//!
//! The same holds for a federation fan-out: a `rose-events serve` process killed while it
//! delivers an event's Create to many follower inboxes delivers every one of them after a
//! restart.

mod common;
#[path = "oracle/delivery_support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::inbox::TestInbox;
use common::{Backend, TestDb, TestServer};
use diesel::prelude::*;
use rose_events::db::schema::{followers, jobs};
use rose_events::delivery::queue::{self, NewJob};
use rose_events::delivery::transport::PushUrgency;
use rose_events::delivery::transport::web_push::topic_for;
use rose_events::notify::jobs::PushJob;
use rose_events::notify::subscriptions::{self, BrowserSubscription};
use support::{PushService, RoseProcess};

const JOBS: usize = 200;
const SUBSCRIPTIONS: usize = 4;

/// Push jobs per state: pending, running, done, dead. The workers also plan a cleanup job,
/// which is left out.
fn counts(pool: &rose_events::db::DbPool) -> anyhow::Result<[i64; 4]> {
    let jobs = queue::list(&mut *pool.get()?, None, 10_000)?;
    let mut counts = [0; 4];
    for job in jobs.iter().filter(|j| j.kind == "push") {
        let slot = ["pending", "running", "done", "dead"]
            .iter()
            .position(|s| *s == job.state);
        counts[slot.expect("known state")] += 1;
    }
    Ok(counts)
}

fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !check()? {
        anyhow::ensure!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

type Endpoints = Vec<(i64, String)>;

/// Subscribes four slow endpoints and enqueues the push jobs; returns the endpoints and the
/// payload each topic must show.
fn enqueue_jobs(
    pool: &rose_events::db::DbPool,
    service: &PushService,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<(Endpoints, BTreeMap<String, String>)> {
    let mut conn = pool.get()?;
    let mut endpoints = Vec::new();
    for _ in 0..SUBSCRIPTIONS {
        let created = ureq::post(&format!("{}/subscriptions", service.base))
            .send_json(serde_json::json!({ "default": "slow" }))?
            .into_json::<serde_json::Value>()?;
        let browser: BrowserSubscription = serde_json::from_value(created)?;
        let stored = subscriptions::subscribe(&mut conn, "vera", &browser, true, now)?;
        endpoints.push((stored.id, browser.endpoint));
    }
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for n in 0..JOBS {
        let (subscription_id, endpoint) = endpoints[n % SUBSCRIPTIONS].clone();
        let dedup_key = format!("push/crash/{n}");
        let payload = serde_json::json!({ "n": n }).to_string();
        expected.insert(topic_for(&dedup_key), payload.clone());
        let job = PushJob {
            subscription_id,
            endpoint,
            payload,
            ttl: 3600,
            urgency: PushUrgency::Normal,
            topic: topic_for(&dedup_key),
        };
        queue::enqueue(
            &mut conn,
            &NewJob {
                kind: "push".to_owned(),
                dedup_key,
                payload: serde_json::to_value(&job)?,
                run_at: now,
                deadline: None,
                max_attempts: 8,
            },
            now,
        )?;
    }

    Ok((endpoints, expected))
}

#[test]
fn killed_worker_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let db = TestDb::new(Backend::Postgres)?;
    let pool = support::pool(&db.url)?;
    let service = PushService::start()?;
    let now = Utc::now();

    let (endpoints, expected) = enqueue_jobs(&pool, &service, now)?;

    let env = [
        ("ROSE_EVENTS_WORKERS", "2"),
        ("ROSE_EVENTS_JOB_LEASE_SECONDS", "2"),
        ("ROSE_EVENTS_VAPID_SUBJECT", "mailto:ops@events.example"),
        ("ROSE_EVENTS_ALLOW_LOOPBACK_PUSH", "true"),
    ];
    let first = RoseProcess::start("work", &db.url, db.dir.path(), &env, "worker started")?;
    let mut running_at_kill = 0;
    wait_for("a batch in flight", Duration::from_secs(60), || {
        let [_, running, done, _] = counts(&pool)?;
        running_at_kill = running;
        Ok(done >= 30 && running > 0)
    })?;
    first.kill()?;
    let [pending, running, done, _] = counts(&pool)?;
    assert!(running > 0, "the kill left leased jobs behind");
    assert!(
        pending + running > 0 && done < JOBS as i64,
        "killed mid-run"
    );

    let second = RoseProcess::start("work", &db.url, db.dir.path(), &env, "worker started")?;
    wait_for("the queue to drain", Duration::from_secs(60), || {
        let [pending, running, _, _] = counts(&pool)?;
        Ok(pending + running == 0)
    })?;
    second.kill()?;

    let [pending, running, done, dead] = counts(&pool)?;
    assert_eq!((pending, running, dead), (0, 0, 0));
    assert_eq!(done, JOBS as i64, "every job ended done");

    let mut shown_topics = BTreeSet::new();
    let mut requests = 0;
    for (_, endpoint) in &endpoints {
        let log = service.log(endpoint)?;
        requests += log["requests"].as_array().map_or(0, Vec::len);
        let shown = log["shown"].as_object().cloned().unwrap_or_default();
        for (topic, payload) in shown {
            assert_eq!(
                expected.get(&topic),
                payload.as_str().map(str::to_owned).as_ref(),
                "topic {topic}"
            );
            assert!(
                shown_topics.insert(topic),
                "a topic is shown on one subscription only"
            );
        }
    }
    assert_eq!(
        shown_topics.len(),
        JOBS,
        "each dedup key shown exactly once"
    );
    let resent = requests - JOBS;
    eprintln!(
        "{requests} push requests for {JOBS} jobs; {running_at_kill} jobs were leased at the kill"
    );
    assert!(
        resent as i64 <= running_at_kill.max(running),
        "only jobs in flight at the kill were sent again: {resent} resent, {running_at_kill} in flight"
    );
    Ok(())
}

const FOLLOWERS: usize = 200;

/// Adds `FOLLOWERS` accepted followers of calendar `slug`, each with its own inbox on `inbox`.
fn add_followers(server: &TestServer, slug: &str, inbox: &TestInbox) -> anyhow::Result<()> {
    let mut conn = server.db.connect()?;
    let calendar =
        rose_events::calendar::store::find_calendar(&mut conn, slug)?.expect("the calendar exists");
    for n in 0..FOLLOWERS {
        let actor = inbox.url(&format!("/users/{n}"));
        diesel::insert_into(followers::table)
            .values((
                followers::calendar_id.eq(Some(calendar.id)),
                followers::actor_id.eq(&actor),
                followers::inbox.eq(format!("{actor}/inbox")),
                followers::follow_activity_id.eq(format!("{actor}#follow")),
                followers::follow_json.eq("{}"),
                followers::state.eq("accepted"),
                followers::created_at.eq(Utc::now().naive_utc()),
            ))
            .execute(&mut conn)?;
    }
    Ok(())
}

/// ActivityPub jobs per state: pending, running, done, dead.
fn delivery_counts(server: &TestServer) -> anyhow::Result<[usize; 4]> {
    let mut conn = server.db.connect()?;
    let states: Vec<String> = jobs::table
        .filter(jobs::kind.eq("activitypub"))
        .select(jobs::state)
        .load(&mut conn)?;
    let mut counts = [0; 4];
    for state in states {
        let slot = ["pending", "running", "done", "dead"]
            .iter()
            .position(|s| *s == state);
        counts[slot.expect("known state")] += 1;
    }
    Ok(counts)
}

fn killed_server_loses_no_federation_delivery(backend: Backend) -> anyhow::Result<()> {
    let inbox = TestInbox::start()?;
    inbox.set_delay(Duration::from_millis(300));
    let mut server = TestServer::start_with_env(
        backend,
        &[
            ("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true"),
            ("ROSE_EVENTS_JOB_LEASE_SECONDS", "2"),
            ("ROSE_EVENTS_WORKERS", "2"),
        ],
    )?;
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &serde_json::json!({"slug": "choir", "name": "Choir", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    add_followers(&server, "choir", &inbox)?;

    // Scheduling an event publishes its Create to every follower's inbox.
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/choir/events",
        &serde_json::json!({
            "title": "Rehearsal",
            "start": "2030-05-06T19:00:00",
            "zone": "Europe/Berlin",
            "duration": "PT2H",
        }),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    wait_for("deliveries under way", Duration::from_secs(60), || {
        Ok(inbox.count() >= 20)
    })?;
    server.crash()?;
    let [_, running, done, _] = delivery_counts(&server)?;
    assert!(done < FOLLOWERS, "killed before the fan-out finished");
    eprintln!(
        "at the kill: {} requests received, {done} deliveries done, {running} leased",
        inbox.count()
    );
    server.restart()?;

    wait_for("every delivery to finish", Duration::from_secs(120), || {
        let [pending, running, _, _] = delivery_counts(&server)?;
        Ok(pending + running == 0)
    })?;
    assert_eq!(delivery_counts(&server)?, [0, 0, FOLLOWERS, 0]);
    let received = inbox.received();
    let inboxes: BTreeSet<String> = received.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        inboxes.len(),
        FOLLOWERS,
        "every follower inbox got the Create"
    );
    assert!(
        received
            .iter()
            .all(|r| r.signed && r.body.contains("\"Create\"")),
        "only signed Creates"
    );
    eprintln!(
        "{} requests for {FOLLOWERS} inboxes: {} sent again after the restart",
        received.len(),
        received.len() - FOLLOWERS
    );
    assert!(
        received.len() - FOLLOWERS <= running,
        "only deliveries leased at the kill were sent again"
    );
    Ok(())
}

on_both_backends!(killed_server_loses_no_federation_delivery);
