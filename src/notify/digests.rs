//! Digests: a daily or weekly summary at the person's local hour of their upcoming reminded
//! occurrences and of the new events in calendars they follow.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Utc, Weekday};
use diesel::prelude::*;

use super::messages::{Notice, local_time};
use super::people::{DigestFrequency, Person};
use super::{Error, people, reminders};
use crate::calendar::event::EventStatus;
use crate::calendar::store;
use crate::db::AnyConnection;
use crate::db::schema::{calendars, events};
use crate::delivery::queue::{self, NewJob};

/// Job kind of digests.
pub const KIND: &str = "digest";
/// Most items listed in one digest; the rest are counted in a last line.
pub const MAX_ITEMS: usize = 20;
/// A digest that could not go out within this long after its hour is dropped.
const LATENESS: Duration = Duration::hours(6);

/// The payload of a `digest` job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestJob {
    /// Recipient.
    pub person: String,
}

/// Replaces the person's pending digest with one at their next digest time, or removes it
/// when digests are off. Joins the caller's transaction.
pub fn plan_next(
    conn: &mut AnyConnection,
    person: &Person,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let prefix = format!("{KIND}/{}/", person.id);
    queue::delete_pending_with_prefix(conn, &prefix)?;
    let Some(at) = next_time(person, now) else {
        return Ok(());
    };
    let local_date = at.with_timezone(&person.zone).date_naive();
    let payload = serde_json::to_value(DigestJob {
        person: person.id.clone(),
    })
    .map_err(|e| Error::Corrupt(e.to_string()))?;
    queue::enqueue(
        conn,
        &NewJob {
            kind: KIND.to_owned(),
            dedup_key: format!("{prefix}{local_date}"),
            payload,
            run_at: at,
            deadline: Some(at + LATENESS),
            max_attempts: 5,
        },
        now,
    )?;
    Ok(())
}

/// Computes the next digest time after `now`: the person's hour on their clock, every day or
/// every Monday. `None` when digests are off or no channel is on. An hour skipped by a DST change
/// moves to the first valid minute after it.
pub fn next_time(person: &Person, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if person.digest == DigestFrequency::Off || person.channels.is_empty() {
        return None;
    }
    let local_today = now.with_timezone(&person.zone).date_naive();
    for days in 0..=8 {
        let date = local_today + Duration::days(days);
        if person.digest == DigestFrequency::Weekly && date.weekday() != Weekday::Mon {
            continue;
        }
        let wall = date.and_hms_opt(person.digest_hour, 0, 0)?;
        let at = resolve(person, wall);
        if at > now {
            return Some(at);
        }
    }
    None
}

fn resolve(person: &Person, wall: NaiveDateTime) -> DateTime<Utc> {
    let mut wall = wall;
    for _ in 0..180 {
        if let Some(at) = person.zone.from_local_datetime(&wall).earliest() {
            return at.with_timezone(&Utc);
        }
        wall += Duration::minutes(1);
    }
    wall.and_utc()
}

/// Writes the person's digest as of `now`, or `None` when there is nothing to report.
pub fn compose(
    conn: &mut AnyConnection,
    person: &Person,
    now: DateTime<Utc>,
    public_url: &str,
) -> Result<Option<Notice>, Error> {
    let horizon = match person.digest {
        DigestFrequency::Weekly => Duration::days(7),
        DigestFrequency::Daily | DigestFrequency::Off => Duration::days(1),
    };
    let upcoming = upcoming_lines(conn, person, now, now + horizon)?;
    let new_events = new_event_lines(conn, &person.id, now - horizon, now)?;
    let total = upcoming.len() + new_events.len();
    if total == 0 {
        return Ok(None);
    }

    let mut lines = Vec::new();
    if !upcoming.is_empty() {
        lines.push("Coming up:".to_owned());
        lines.extend(upcoming);
    }
    if !new_events.is_empty() {
        lines.push("New in calendars you follow:".to_owned());
        lines.extend(new_events);
    }
    let headers = lines.len() - total;
    if total > MAX_ITEMS {
        lines.truncate(MAX_ITEMS + headers);
        lines.push(format!("…and {} more", total - MAX_ITEMS));
    }
    let period = match person.digest {
        DigestFrequency::Weekly => "this week",
        _ => "today",
    };
    Ok(Some(Notice {
        title: format!("Your events {period}"),
        lines,
        url: format!("{public_url}/api/v1/agenda"),
    }))
}

fn upcoming_lines(
    conn: &mut AnyConnection,
    person: &Person,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    let mut cache = HashMap::new();
    for occurrence in reminders::occurrences_of(conn, &person.id)? {
        let event = match cache.entry(occurrence.event_id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(store::find_event(conn, occurrence.event_id)?)
            }
        };
        let Some(event) = event else {
            continue;
        };
        let Some(o) = reminders::find_occurrence(&event.event, occurrence.recurrence_id)? else {
            continue;
        };
        if o.details.status != EventStatus::Cancelled && o.start >= from && o.start < to {
            found.push((o.start, o.details.title.clone()));
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(start, title)| format!("• {} — {title}", local_time(start, person.zone)))
        .collect())
}

fn new_event_lines(
    conn: &mut AnyConnection,
    person: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    let follows = people::follows(conn, person)?;
    if follows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = follows.iter().map(|(id, _)| *id).collect();
    let rows: Vec<(String, String)> = events::table
        .inner_join(calendars::table)
        .filter(events::calendar_id.eq_any(&ids))
        .filter(events::created_at.ge(since.naive_utc()))
        .filter(events::created_at.lt(until.naive_utc()))
        .filter(events::status.ne(EventStatus::Cancelled.as_str()))
        .order((
            calendars::slug.asc(),
            events::created_at.asc(),
            events::id.asc(),
        ))
        .select((calendars::slug, events::title))
        .limit((MAX_ITEMS + 1) as i64 * 50)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(slug, title)| format!("• {title} ({slug})"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(digest: DigestFrequency, hour: u32, zone: &str) -> Person {
        let mut p = Person::defaults("ana");
        p.digest = digest;
        p.digest_hour = hour;
        p.zone = zone.parse().unwrap();
        p
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn daily_digest_at_local_hour() {
        let p = person(DigestFrequency::Daily, 8, "Europe/Berlin");
        assert_eq!(
            next_time(&p, at("2026-01-10T06:00:00Z")),
            Some(at("2026-01-10T07:00:00Z"))
        );
        assert_eq!(
            next_time(&p, at("2026-01-10T07:00:00Z")),
            Some(at("2026-01-11T07:00:00Z"))
        );
        assert_eq!(
            next_time(&p, at("2026-07-10T07:00:00Z")),
            Some(at("2026-07-11T06:00:00Z"))
        );
    }

    #[test]
    fn weekly_digest_on_monday() {
        let p = person(DigestFrequency::Weekly, 18, "America/New_York");
        // Saturday 10 January 2026.
        assert_eq!(
            next_time(&p, at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-12T23:00:00Z"))
        );
    }

    #[test]
    fn digest_hour_in_a_dst_gap_moves_forward() {
        let p = person(DigestFrequency::Daily, 2, "Europe/Berlin");
        // 29 March 2026 02:00 does not exist in Berlin; 03:00 CEST is 01:00Z.
        assert_eq!(
            next_time(&p, at("2026-03-29T00:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn no_digest_when_off() {
        let p = person(DigestFrequency::Off, 8, "UTC");
        assert_eq!(next_time(&p, at("2026-01-10T06:00:00Z")), None);
    }
}
