//! Reminders: one queue job per (occurrence, person, channel, offset), kept in step with the
//! occurrence.
//!
//! The booking code calls [`schedule`] in its transaction when a booking becomes live and
//! [`cancel`] when it stops being live. The calendar store calls [`event_changed`] and
//! [`event_deleted`], so a moved occurrence moves its reminders' run-at and deadline and a
//! cancelled or removed one drops them. The `reminder` job checks again at send time.

use chrono::{DateTime, Duration, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;

use super::{Channel, Error, check_person_id, people};
use crate::calendar::event::{EventStatus, NewEvent};
use crate::calendar::occurrence::{Occurrence, occurrences};
use crate::calendar::recurrence::MAX_INSTANCES;
use crate::calendar::store;
use crate::calendar::time::Window;
use crate::db::schema::reminders;
use crate::db::{AnyConnection, write_transaction};
use crate::delivery::queue::{self, JobState, NewJob};

/// Job kind of reminders.
pub const KIND: &str = "reminder";
/// Attempts of a reminder job (it only fans out; the sends retry on their own).
const MAX_ATTEMPTS: i32 = 5;

/// One occurrence: the event and the occurrence's recurrence id (its original start, stable
/// when an override moves it), `None` for a one-off event. The event is one of ours, or a
/// remote event that one of our people joined (`remote`, and `event_id` is then the remote
/// event's id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OccurrenceRef {
    /// The event.
    pub event_id: i64,
    /// The recurrence id, or `None` for a one-off event.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// Whether `event_id` names a remote event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
}

/// Prefix of the stored keys of remote occurrences, which keeps them apart from local
/// events with the same id.
const REMOTE_PREFIX: &str = "remote:";

impl OccurrenceRef {
    /// Returns the stored key: the recurrence id in RFC 3339 UTC, or `single`, after
    /// `remote:` for a remote event.
    pub fn key(&self) -> String {
        let local = match self.recurrence_id {
            Some(rid) => rid.to_rfc3339_opts(SecondsFormat::Secs, true),
            None => "single".to_owned(),
        };
        if self.remote {
            format!("{REMOTE_PREFIX}{local}")
        } else {
            local
        }
    }

    /// Reads a stored key.
    pub fn from_key(event_id: i64, key: &str) -> Option<OccurrenceRef> {
        let (remote, key) = match key.strip_prefix(REMOTE_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, key),
        };
        let recurrence_id = if key == "single" {
            None
        } else {
            Some(DateTime::parse_from_rfc3339(key).ok()?.with_timezone(&Utc))
        };
        Some(OccurrenceRef {
            event_id,
            recurrence_id,
            remote,
        })
    }
}

/// When an occurrence takes place, as reminders need it.
struct Timing {
    start: DateTime<Utc>,
    cancelled: bool,
}

/// Finds when `occurrence` takes place now, or `None` when it no longer exists.
fn timing(conn: &mut AnyConnection, occurrence: OccurrenceRef) -> Result<Option<Timing>, Error> {
    if occurrence.remote {
        let found = crate::federation::rsvp::remote_occurrence(
            conn,
            occurrence.event_id,
            occurrence.recurrence_id,
        )
        .map_err(|e| Error::Corrupt(e.to_string()))?;
        return Ok(found.map(|o| Timing {
            start: o.start,
            cancelled: o.cancelled,
        }));
    }
    let Some(event) = store::find_event(conn, occurrence.event_id)? else {
        return Ok(None);
    };
    Ok(
        find_occurrence(&event.event, occurrence.recurrence_id)?.map(|o| Timing {
            start: o.start,
            cancelled: o.details.status == EventStatus::Cancelled,
        }),
    )
}

/// The payload of a `reminder` job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReminderJob {
    /// The occurrence.
    pub occurrence: OccurrenceRef,
    /// Person to remind.
    pub person: String,
    /// How.
    pub channel: Channel,
    /// Minutes before the start.
    pub offset_minutes: i32,
}

impl ReminderJob {
    /// Returns the job's dedup key. Its parts are separated by `/`, which person ids cannot
    /// contain, so it is also a safe prefix for the jobs the reminder fans out into.
    pub fn dedup_key(&self) -> String {
        format!(
            "{KIND}/{}/{}/{}/{}/{}",
            self.occurrence.event_id,
            self.occurrence.key(),
            self.person,
            self.channel.as_str(),
            self.offset_minutes
        )
    }
}

#[derive(Queryable)]
struct ReminderRow {
    id: i64,
    event_id: i64,
    occurrence_key: String,
    person: String,
    channel: String,
    offset_minutes: i32,
    job_id: i64,
    _created_at: NaiveDateTime,
}

/// Schedules the person's reminders for one occurrence, one per channel and offset of their
/// preferences, and returns how many it created. Offsets whose time has passed are skipped,
/// and an occurrence that is cancelled or already started gets none. Scheduling again
/// creates nothing new. Joins the caller's transaction.
pub fn schedule(
    conn: &mut AnyConnection,
    occurrence: OccurrenceRef,
    person: &str,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    check_person_id("person", person)?;
    write_transaction(conn, |conn| {
        if !occurrence.remote && store::find_event(conn, occurrence.event_id)?.is_none() {
            return Err(Error::EventNotFound(occurrence.event_id));
        }
        let found = timing(conn, occurrence)?.ok_or_else(|| Error::OccurrenceNotFound {
            event_id: occurrence.event_id,
            occurrence: occurrence.key(),
        })?;
        if found.cancelled || found.start <= now {
            return Ok(0);
        }
        let prefs = people::find_or_default(conn, person)?;
        let mut created = 0;
        for &channel in &prefs.channels {
            for &offset_minutes in &prefs.reminder_offsets {
                let job = ReminderJob {
                    occurrence,
                    person: person.to_owned(),
                    channel,
                    offset_minutes,
                };
                let run_at = found.start - Duration::minutes(i64::from(offset_minutes));
                if run_at < now {
                    continue;
                }
                if insert_reminder(conn, &job, run_at, found.start, now)? {
                    created += 1;
                }
            }
        }
        Ok(created)
    })
}

fn insert_reminder(
    conn: &mut AnyConnection,
    job: &ReminderJob,
    run_at: DateTime<Utc>,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let exists = reminders::table
        .filter(reminders::event_id.eq(job.occurrence.event_id))
        .filter(reminders::occurrence_key.eq(job.occurrence.key()))
        .filter(reminders::person.eq(&job.person))
        .filter(reminders::channel.eq(job.channel.as_str()))
        .filter(reminders::offset_minutes.eq(job.offset_minutes))
        .count()
        .get_result::<i64>(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    let payload = serde_json::to_value(job).map_err(|e| Error::Corrupt(e.to_string()))?;
    let enqueued = queue::enqueue(
        conn,
        &NewJob {
            kind: KIND.to_owned(),
            dedup_key: job.dedup_key(),
            payload,
            run_at,
            deadline: Some(start),
            max_attempts: MAX_ATTEMPTS,
        },
        now,
    )?;
    diesel::insert_into(reminders::table)
        .values((
            reminders::event_id.eq(job.occurrence.event_id),
            reminders::occurrence_key.eq(job.occurrence.key()),
            reminders::person.eq(&job.person),
            reminders::channel.eq(job.channel.as_str()),
            reminders::offset_minutes.eq(job.offset_minutes),
            reminders::job_id.eq(enqueued.id()),
            reminders::created_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Removes the person's reminders for one occurrence, with their pending jobs and the pending
/// sends they fanned out into, and returns how many reminders it removed. Joins the
/// caller's transaction.
pub fn cancel(
    conn: &mut AnyConnection,
    occurrence: OccurrenceRef,
    person: &str,
) -> Result<usize, Error> {
    write_transaction(conn, |conn| {
        let rows = reminders::table
            .filter(reminders::event_id.eq(occurrence.event_id))
            .filter(reminders::occurrence_key.eq(occurrence.key()))
            .filter(reminders::person.eq(person))
            .load::<ReminderRow>(conn)?;
        remove_rows(conn, &rows)
    })
}

fn remove_rows(conn: &mut AnyConnection, rows: &[ReminderRow]) -> Result<usize, Error> {
    for row in rows {
        let job = row_job(row)?;
        let key = job.dedup_key();
        queue::delete_pending(conn, row.job_id)?;
        for child in super::jobs::child_prefixes(&key) {
            queue::delete_pending_with_prefix(conn, &child)?;
        }
        diesel::delete(reminders::table.find(row.id)).execute(conn)?;
    }
    Ok(rows.len())
}

fn row_job(row: &ReminderRow) -> Result<ReminderJob, Error> {
    let corrupt = || Error::Corrupt(format!("reminder {}", row.id));
    Ok(ReminderJob {
        occurrence: OccurrenceRef::from_key(row.event_id, &row.occurrence_key)
            .ok_or_else(corrupt)?,
        person: row.person.clone(),
        channel: Channel::parse(&row.channel).ok_or_else(corrupt)?,
        offset_minutes: row.offset_minutes,
    })
}

/// Brings an event's reminders in line with its stored schedule. Each pending reminder job of
/// an occurrence that still takes place moves to `start − offset` (or `now` when that has
/// passed), with the new start as its deadline. The reminders of occurrences that are gone or
/// cancelled are removed. Joins the caller's transaction.
///
/// NOTE: a reminder that was already sent is not sent again when its occurrence moves later.
/// Moving a whole series (a new DTSTART) changes every recurrence id, so its reminders are
/// removed as gone rather than moved; only overrides and one-off events keep their identity.
pub fn event_changed(
    conn: &mut AnyConnection,
    event_id: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        let rows = reminders::table
            .filter(reminders::event_id.eq(event_id))
            .filter(reminders::occurrence_key.not_like(format!("{REMOTE_PREFIX}%")))
            .order(reminders::id.asc())
            .load::<ReminderRow>(conn)?;
        if rows.is_empty() {
            return Ok(());
        }
        let Some(event) = store::find_event(conn, event_id)? else {
            remove_rows(conn, &rows)?;
            return Ok(());
        };
        let mut gone = Vec::new();
        for row in rows {
            let job = row_job(&row)?;
            let found = find_occurrence(&event.event, job.occurrence.recurrence_id)?;
            match found {
                Some(o) if o.details.status != EventStatus::Cancelled => {
                    let run_at = o.start - Duration::minutes(i64::from(row.offset_minutes));
                    queue::move_pending(conn, row.job_id, run_at.max(now), Some(o.start), now)?;
                }
                _ => gone.push(row),
            }
        }
        remove_rows(conn, &gone)?;
        Ok(())
    })
}

/// Removes every reminder of a deleted event. Joins the caller's transaction.
pub fn event_deleted(conn: &mut AnyConnection, event_id: i64) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        let rows = reminders::table
            .filter(reminders::event_id.eq(event_id))
            .filter(reminders::occurrence_key.not_like(format!("{REMOTE_PREFIX}%")))
            .load::<ReminderRow>(conn)?;
        remove_rows(conn, &rows)?;
        Ok(())
    })
}

/// Brings the reminders of a remote event in line with what its origin last sent: a moved
/// occurrence moves its reminders, and those of an occurrence that is gone, cancelled or
/// deleted are removed. Joins the caller's transaction.
pub fn remote_event_changed(
    conn: &mut AnyConnection,
    remote_event_id: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        let rows = reminders::table
            .filter(reminders::event_id.eq(remote_event_id))
            .filter(reminders::occurrence_key.like(format!("{REMOTE_PREFIX}%")))
            .order(reminders::id.asc())
            .load::<ReminderRow>(conn)?;
        let mut gone = Vec::new();
        for row in rows {
            let job = row_job(&row)?;
            match timing(conn, job.occurrence)? {
                Some(found) if !found.cancelled => {
                    let run_at = found.start - Duration::minutes(i64::from(row.offset_minutes));
                    queue::move_pending(conn, row.job_id, run_at.max(now), Some(found.start), now)?;
                }
                _ => gone.push(row),
            }
        }
        remove_rows(conn, &gone)?;
        Ok(())
    })
}

/// Checks whether the reminder still exists (it is removed when cancelled).
pub fn exists(conn: &mut AnyConnection, job: &ReminderJob) -> Result<bool, Error> {
    let count = reminders::table
        .filter(reminders::event_id.eq(job.occurrence.event_id))
        .filter(reminders::occurrence_key.eq(job.occurrence.key()))
        .filter(reminders::person.eq(&job.person))
        .filter(reminders::channel.eq(job.channel.as_str()))
        .filter(reminders::offset_minutes.eq(job.offset_minutes))
        .count()
        .get_result::<i64>(conn)?;
    Ok(count > 0)
}

/// Lists the distinct occurrences a person has reminders for.
pub fn occurrences_of(conn: &mut AnyConnection, person: &str) -> Result<Vec<OccurrenceRef>, Error> {
    let keys: Vec<(i64, String)> = reminders::table
        .filter(reminders::person.eq(person))
        .select((reminders::event_id, reminders::occurrence_key))
        .distinct()
        .order((reminders::event_id.asc(), reminders::occurrence_key.asc()))
        .load(conn)?;
    Ok(keys
        .iter()
        .filter_map(|(event_id, key)| OccurrenceRef::from_key(*event_id, key))
        .collect())
}

/// One reminder with the state of its job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReminderStatus {
    /// Channel.
    pub channel: String,
    /// Minutes before the start.
    pub offset_minutes: i32,
    /// When the job runs (or ran).
    pub run_at: DateTime<Utc>,
    /// The occurrence's start, after which the job dies.
    pub deadline: Option<DateTime<Utc>>,
    /// The job's state.
    pub state: JobState,
}

/// Lists a person's reminders for an occurrence with their jobs' state, by channel and
/// offset.
pub fn jobs_of(
    conn: &mut AnyConnection,
    occurrence: OccurrenceRef,
    person: &str,
) -> Result<Vec<ReminderStatus>, Error> {
    let rows = reminders::table
        .filter(reminders::event_id.eq(occurrence.event_id))
        .filter(reminders::occurrence_key.eq(occurrence.key()))
        .filter(reminders::person.eq(person))
        .order((reminders::channel.asc(), reminders::offset_minutes.desc()))
        .load::<ReminderRow>(conn)?;
    let mut out = Vec::new();
    for row in rows {
        let Some(job) = queue::find(conn, row.job_id)? else {
            continue;
        };
        let state = job
            .job_state()
            .ok_or_else(|| Error::Corrupt(format!("job {} state", job.id)))?;
        out.push(ReminderStatus {
            channel: row.channel,
            offset_minutes: row.offset_minutes,
            run_at: job.run_at.and_utc(),
            deadline: job.deadline.map(|d| d.and_utc()),
            state,
        });
    }
    Ok(out)
}

/// Finds one occurrence of `event` by recurrence id (`None` for a one-off event), wherever
/// an override moved it.
pub fn find_occurrence(
    event: &NewEvent,
    recurrence_id: Option<DateTime<Utc>>,
) -> Result<Option<Occurrence>, Error> {
    let basis = event.schedule.basis;
    let original = recurrence_id.unwrap_or_else(|| basis.to_utc(event.schedule.start));
    // An override can move the occurrence anywhere, so the window spans the original start
    // and the override's new one. Two days of margin cover every zone offset of pinned
    // floating and all-day starts.
    let mut points = vec![original];
    for change in &event.overrides {
        if Some(change.recurrence_id.to_utc(basis)) == recurrence_id
            && let Some(start) = change.start
        {
            points.push(change.basis.unwrap_or(basis).to_utc(start));
        }
    }
    let margin = Duration::days(2);
    let window = Window {
        from: points.iter().min().copied().unwrap_or(original) - margin,
        to: points.iter().max().copied().unwrap_or(original) + margin,
    };
    let expanded = occurrences(event, window, MAX_INSTANCES)
        .map_err(|e| Error::Corrupt(format!("cannot expand event {}: {e}", event.uid)))?;
    Ok(expanded
        .occurrences
        .into_iter()
        .find(|o| o.recurrence_id == recurrence_id))
}
