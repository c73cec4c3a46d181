//! Jobs that keep peers' copies of our events current without any change through the API:
//!
//! - `federation-horizon` runs every hour and publishes the occurrences that time brought
//!   within the horizon (see [`super::series`]). Its dedup key names the hour it runs at, so
//!   one is pending however often it is scheduled;
//! - `federation-seats` runs after a booking changed an occurrence's seats left (enqueued by
//!   [`crate::booking::announce`]) and sends an Update of that occurrence's object, or of a
//!   one-off event's object, with the seats left when it runs.

use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{Error, publish, published, series};
use crate::booking::announce::{self, SeatsChanged};
use crate::calendar::store::{self, StoredEvent};
use crate::db::schema::{calendars, events};
use crate::db::{AnyConnection, DbPool, write_transaction};
use crate::delivery::Outcome;
use crate::delivery::queue::{self, Job, NewJob};
use crate::delivery::worker::{BoxFuture, JobHandler, run_blocking};

/// Job kind of the hourly horizon run.
pub const HORIZON_KIND: &str = "federation-horizon";
/// Time between horizon runs.
pub const HORIZON_EVERY: Duration = Duration::hours(1);

/// Enqueues the next horizon run, at the start of the hour after `now`, unless it is queued.
pub fn schedule_horizon(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
) -> Result<(), crate::delivery::Error> {
    let hour = now.duration_trunc(HORIZON_EVERY).unwrap_or(now) + HORIZON_EVERY;
    queue::enqueue(
        conn,
        &NewJob {
            kind: HORIZON_KIND.to_owned(),
            dedup_key: format!("{HORIZON_KIND}/{}", hour.format("%Y-%m-%dT%H")),
            payload: serde_json::json!({}),
            run_at: hour,
            deadline: None,
            max_attempts: 3,
        },
        now,
    )?;
    Ok(())
}

/// Publishes newly upcoming occurrences of every recurring event, then plans the next run.
pub struct HorizonHandler {
    pool: DbPool,
    public_url: String,
}

impl HorizonHandler {
    /// A handler publishing under `public_url`.
    pub fn new(pool: DbPool, public_url: String) -> Self {
        HorizonHandler { pool, public_url }
    }
}

impl JobHandler for HorizonHandler {
    fn run<'a>(&'a self, _job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        let pool = self.pool.clone();
        let public_url = self.public_url.clone();
        Box::pin(async move {
            let result = run_blocking(pool, move |conn| Ok(roll_horizon(conn, &public_url, now)))
                .await
                .map_err(Error::from)
                .and_then(|inner| inner);
            match result {
                Ok(sent) => {
                    tracing::info!(
                        created = sent.created,
                        updated = sent.updated,
                        deleted = sent.deleted,
                        "occurrence horizon rolled forward"
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

/// Runs [`series::sync`] for every published recurring event whose series has not ended by
/// `now`, one transaction per event, and schedules the next run. Returns what was sent in
/// total.
pub fn roll_horizon(
    conn: &mut AnyConnection,
    public_url: &str,
    now: DateTime<Utc>,
) -> Result<series::Sent, Error> {
    schedule_horizon(conn, now)?;
    let mut total = series::Sent::default();
    for (event_id, slug) in recurring_events(conn, now)? {
        let sent = write_transaction(conn, |conn| -> Result<series::Sent, Error> {
            let Some(stored) = store::find_event(conn, event_id)? else {
                return Ok(series::Sent::default());
            };
            if !was_announced(conn, public_url, &stored)? {
                return Ok(series::Sent::default());
            }
            let publisher = publish::publisher(conn, public_url, &stored, &slug)?;
            series::sync(conn, &publisher, &stored, now)
        })?;
        total.created += sent.created;
        total.updated += sent.updated;
        total.deleted += sent.deleted;
    }
    Ok(total)
}

/// Lists the ids and calendar slugs of recurring events that may still have occurrences after
/// `now`.
fn recurring_events(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, String)>, Error> {
    let now: NaiveDateTime = now.naive_utc();
    Ok(events::table
        .inner_join(calendars::table)
        .filter(events::rrule.is_not_null().or(events::rdates_json.ne("[]")))
        .filter(events::span_end.is_null().or(events::span_end.gt(now)))
        .order(events::id)
        .select((events::id, calendars::slug))
        .load(conn)?)
}

/// Sends the Update a booking's change of seats left calls for.
pub struct SeatsHandler {
    pool: DbPool,
    public_url: String,
}

impl SeatsHandler {
    /// A handler publishing under `public_url`.
    pub fn new(pool: DbPool, public_url: String) -> Self {
        SeatsHandler { pool, public_url }
    }
}

impl JobHandler for SeatsHandler {
    fn run<'a>(&'a self, job: &'a Job, now: DateTime<Utc>) -> BoxFuture<'a, Outcome> {
        let pool = self.pool.clone();
        let public_url = self.public_url.clone();
        Box::pin(async move {
            let changed: SeatsChanged = match job.payload_as() {
                Ok(changed) => changed,
                Err(error) => return Outcome::Failed(error.to_string()),
            };
            let result = run_blocking(pool, move |conn| {
                Ok(write_transaction(conn, |conn| {
                    seats_changed(conn, &public_url, changed, now)
                }))
            })
            .await
            .map_err(Error::from)
            .and_then(|inner| inner);
            match result {
                Ok(sent) => {
                    tracing::debug!(event = changed.event_id, sent, "seats left published");
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

/// Publishes the seats left of the event in `changed` as they are at `now`: a series through
/// [`series::sync`], a one-off event as an Update of its object. Returns how many activities
/// were sent. None are sent when the event is gone or was never published, or when peers
/// already have the current count.
pub fn seats_changed(
    conn: &mut AnyConnection,
    public_url: &str,
    changed: SeatsChanged,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let Some(stored) = store::find_event(conn, changed.event_id)? else {
        return Ok(0);
    };
    if !was_announced(conn, public_url, &stored)? {
        return Ok(0);
    }
    let Some(calendar) = store::find_calendar_by_id(conn, stored.calendar_id)? else {
        return Ok(0);
    };
    let publisher = publish::publisher(conn, public_url, &stored, &calendar.slug)?;
    if is_recurring(&stored) {
        Ok(series::sync(conn, &publisher, &stored, now)?.total())
    } else {
        Ok(usize::from(publish::event_object_refreshed(
            conn, &publisher, &stored, now,
        )?))
    }
}

/// Returns whether the event's own object was published. Only the event routes of the API
/// publish, so events from an iCalendar import stay unannounced here too.
///
/// NOTE: an event published before occurrence objects existed has no record until its next
/// change through the API, so until then neither job sends anything about it.
fn was_announced(
    conn: &mut AnyConnection,
    public_url: &str,
    stored: &StoredEvent,
) -> Result<bool, Error> {
    let object_id = format!("{public_url}/events/{}", stored.id);
    Ok(published::find(conn, &object_id)?.is_some_and(|record| !record.deleted))
}

fn is_recurring(stored: &StoredEvent) -> bool {
    let schedule = &stored.event.schedule;
    schedule.rrule.is_some() || !schedule.rdates.is_empty()
}

/// The job kind [`SeatsHandler`] runs, as the booking module names it.
pub const SEATS_KIND: &str = announce::KIND;
