//! Occurrences: the concrete starts and ends of an event in a window, after recurrence and
//! overrides.
//!
//! An *occurrence* is one instance of an event with its effective details. An override (matched
//! by RECURRENCE-ID as an instant, whatever its spelling) replaces the instance it names: that
//! instance disappears, and the override appears at its own start, which can lie outside the
//! window of the original. So overrides are placed in the window on their own start, apart from
//! the series. Cancelled occurrences are included; callers filter on `details.status`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use super::event::{EventDetails, NewEvent, NewOverride};
use super::recurrence::{MAX_INSTANCES, Recurrence, RecurrenceError};
use super::time::{EventLength, TimeBasis, Window};

/// One occurrence of an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Occurrence {
    /// The event's UID.
    pub uid: String,
    /// Original start (pinned for floating and all-day) of a recurring event's instance, or
    /// `None` for a one-off event.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// Start instant (pinned for floating and all-day).
    pub start: DateTime<Utc>,
    /// End instant (pinned likewise).
    pub end: DateTime<Utc>,
    /// Start as the wall clock shows it on `basis`.
    pub start_wall: NaiveDateTime,
    /// Basis that maps `start_wall` to `start`.
    pub basis: TimeBasis,
    /// Effective details: the override's when it has them, else the series'.
    pub details: EventDetails,
    /// Whether an override produced this occurrence.
    pub overridden: bool,
}

/// The occurrences in one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expanded {
    /// Occurrences sorted by start, then UID, then recurrence id.
    pub occurrences: Vec<Occurrence>,
    /// Whether occurrences in the window were left out because of the limit or a search bound.
    pub truncated: bool,
}

/// Lists the occurrences of `event` that start inside `window`, at most `limit` of them.
pub fn occurrences(
    event: &NewEvent,
    window: Window,
    limit: usize,
) -> Result<Expanded, RecurrenceError> {
    let schedule = &event.schedule;
    let recurrence = Recurrence {
        start: schedule.start,
        basis: schedule.basis,
        rrule: schedule.rrule.clone(),
        rdates: schedule.rdates.iter().map(|extra| extra.at).collect(),
        exdates: schedule.exdates.clone(),
    };
    let recurring = recurrence.rrule.is_some() || !recurrence.rdates.is_empty();
    let limit = limit.min(MAX_INSTANCES);

    let overrides = matched_overrides(event, &recurrence, recurring)?;
    let series = recurrence.expand(Some(window), limit + overrides.len() + 1)?;
    let period_lengths: HashMap<DateTime<Utc>, EventLength> = schedule
        .rdates
        .iter()
        .filter_map(|extra| Some((extra.at.to_utc(schedule.basis), extra.length?)))
        .collect();

    let mut list: Vec<Occurrence> = series
        .instances
        .iter()
        .filter(|instance| !overrides.contains_key(&instance.utc))
        .map(|instance| {
            let length = period_lengths
                .get(&instance.utc)
                .copied()
                .unwrap_or(schedule.length);
            Occurrence {
                uid: event.uid.clone(),
                recurrence_id: recurring.then_some(instance.utc),
                start: instance.utc,
                end: length.end_after(schedule.basis, instance.wall),
                start_wall: instance.wall,
                basis: schedule.basis,
                details: event.details.clone(),
                overridden: false,
            }
        })
        .collect();
    list.extend(
        overrides
            .iter()
            .map(|(original, change)| override_occurrence(event, *original, change))
            .filter(|occurrence| window.contains(occurrence.start)),
    );

    list.sort_by(|a, b| {
        (a.start, &a.uid, a.recurrence_id).cmp(&(b.start, &b.uid, b.recurrence_id))
    });
    let mut truncated = series.truncated;
    if list.len() > limit {
        list.truncate(limit);
        truncated = true;
    }
    Ok(Expanded {
        occurrences: list,
        truncated,
    })
}

/// Finds the overrides whose RECURRENCE-ID is an instance of the series, keyed by that instant.
///
/// An override that names no instance (for example one removed by EXDATE) has nothing to replace
/// and is left out.
fn matched_overrides<'a>(
    event: &'a NewEvent,
    recurrence: &Recurrence,
    recurring: bool,
) -> Result<HashMap<DateTime<Utc>, &'a NewOverride>, RecurrenceError> {
    let mut matched = HashMap::new();
    if !recurring {
        return Ok(matched);
    }
    for change in &event.overrides {
        let original = change.recurrence_id.to_utc(recurrence.basis);
        let probe = Window {
            from: original,
            to: original + Duration::seconds(1),
        };
        if !recurrence.expand(Some(probe), 1)?.instances.is_empty() {
            matched.insert(original, change);
        }
    }
    Ok(matched)
}

/// Builds the occurrence that an override puts in place of the instance that started at `original`.
fn override_occurrence(
    event: &NewEvent,
    original: DateTime<Utc>,
    change: &NewOverride,
) -> Occurrence {
    let schedule = &event.schedule;
    let basis = change.basis.unwrap_or(schedule.basis);
    let start = change.start.map_or(original, |wall| basis.to_utc(wall));
    let start_wall = basis.to_wall(start);
    let length = change.length.unwrap_or(schedule.length);
    Occurrence {
        uid: event.uid.clone(),
        recurrence_id: Some(original),
        start,
        end: length.end_after(basis, start_wall),
        start_wall,
        basis,
        details: change
            .details
            .clone()
            .unwrap_or_else(|| event.details.clone()),
        overridden: true,
    }
}

/// Lists at most `limit` occurrences of `event` that have not ended at `now` and start before
/// `to`, the earliest first.
///
/// The ones still running at `now` are looked for one event length (plus a day for all-day
/// and DST slack) back, in an expansion of their own. A frequent series (a slot every 15
/// minutes) has more ended occurrences there than `limit`, and they must not push out the
/// later ones.
pub fn not_ended(
    event: &NewEvent,
    now: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Occurrence>, RecurrenceError> {
    let length = event.schedule.length;
    let look_back =
        Duration::days(length.days.saturating_add(1)) + Duration::seconds(length.seconds);
    let running = Window {
        from: now
            .checked_sub_signed(look_back)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        to: now.min(to),
    };
    // NOTE: a series with more than MAX_INSTANCES starts in the look-back (one every few
    // seconds) is cut to its earliest ones there, so an occurrence still running may be missed.
    let mut list: Vec<Occurrence> = occurrences(event, running, MAX_INSTANCES)?
        .occurrences
        .into_iter()
        .filter(|o| o.end > now)
        .collect();
    if now < to {
        let ahead = Window { from: now, to };
        list.extend(occurrences(event, ahead, limit)?.occurrences);
    }
    list.truncate(limit);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;
    use crate::calendar::event::{EventStatus, ExtraDate, Schedule};
    use crate::calendar::time::Moment;

    fn wall(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").expect("test wall time is valid")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instant is valid")
            .with_timezone(&Utc)
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: utc(from),
            to: utc(to),
        }
    }

    /// Weekly on Mondays 10:00 Berlin from 2026-06-01, one hour long.
    fn weekly_event() -> NewEvent {
        NewEvent {
            uid: "weekly@example.org".to_owned(),
            details: EventDetails {
                title: "Choir".to_owned(),
                ..EventDetails::default()
            },
            schedule: Schedule {
                start: wall("20260601T100000"),
                basis: TimeBasis::Zoned(chrono_tz::Europe::Berlin),
                length: EventLength {
                    days: 0,
                    seconds: 3600,
                },
                rrule: Some("FREQ=WEEKLY;COUNT=10".to_owned()),
                rdates: vec![],
                exdates: vec![],
            },
            capacity: None,
            overrides: vec![],
        }
    }

    fn moved(original: &str, new_start: &str) -> NewOverride {
        NewOverride {
            recurrence_id: Moment::Wall(wall(original)),
            start: Some(wall(new_start)),
            basis: None,
            length: None,
            details: None,
        }
    }

    fn starts(expanded: &Expanded) -> Vec<String> {
        expanded
            .occurrences
            .iter()
            .map(|o| o.start.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn override_moved_out_of_window_leaves_gap() {
        let mut event = weekly_event();
        event.overrides = vec![moved("20260608T100000", "20260616T100000")];
        let first_weeks = occurrences(
            &event,
            window("2026-06-01T00:00:00Z", "2026-06-15T00:00:00Z"),
            10,
        )
        .expect("expands");
        let third_week = occurrences(
            &event,
            window("2026-06-15T00:00:00Z", "2026-06-21T00:00:00Z"),
            10,
        )
        .expect("expands");

        assert_eq!(starts(&first_weeks), ["2026-06-01T08:00:00Z"]);
        assert_eq!(
            starts(&third_week),
            ["2026-06-15T08:00:00Z", "2026-06-16T08:00:00Z"]
        );
        assert_eq!(
            third_week.occurrences[1].recurrence_id,
            Some(utc("2026-06-08T08:00:00Z"))
        );
        assert!(third_week.occurrences[1].overridden);
    }

    #[test]
    fn override_moved_before_series_start_is_listed() {
        let mut event = weekly_event();
        event.overrides = vec![moved("20260601T100000", "20260520T180000")];
        let expanded = occurrences(
            &event,
            window("2026-05-01T00:00:00Z", "2026-06-02T00:00:00Z"),
            10,
        )
        .expect("expands");

        assert_eq!(starts(&expanded), ["2026-05-20T16:00:00Z"]);
        assert_eq!(expanded.occurrences[0].end, utc("2026-05-20T17:00:00Z"));
    }

    #[test]
    fn override_with_utc_recurrence_id_replaces_zoned_instance() {
        let mut event = weekly_event();
        let mut change = moved("20260608T100000", "20260608T120000");
        change.recurrence_id = Moment::Utc(utc("2026-06-08T08:00:00Z"));
        event.overrides = vec![change];
        let expanded = occurrences(
            &event,
            window("2026-06-08T00:00:00Z", "2026-06-09T00:00:00Z"),
            10,
        )
        .expect("expands");

        assert_eq!(starts(&expanded), ["2026-06-08T10:00:00Z"]);
    }

    #[test]
    fn cancelled_override_is_included_with_its_status() {
        let mut event = weekly_event();
        event.overrides = vec![NewOverride {
            recurrence_id: Moment::Wall(wall("20260608T100000")),
            start: None,
            basis: None,
            length: None,
            details: Some(EventDetails {
                status: EventStatus::Cancelled,
                ..event.details.clone()
            }),
        }];
        let expanded = occurrences(
            &event,
            window("2026-06-01T00:00:00Z", "2026-06-15T00:00:00Z"),
            10,
        )
        .expect("expands");

        assert_eq!(expanded.occurrences.len(), 2);
        assert_eq!(
            expanded.occurrences[0].details.status,
            EventStatus::Confirmed
        );
        assert_eq!(
            expanded.occurrences[1].details.status,
            EventStatus::Cancelled
        );
    }

    #[test]
    fn rdate_period_uses_its_own_length() {
        let mut event = weekly_event();
        event.schedule.rdates = vec![ExtraDate {
            at: Moment::Wall(wall("20260603T140000")),
            length: Some(EventLength {
                days: 0,
                seconds: 5400,
            }),
        }];
        let expanded = occurrences(
            &event,
            window("2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z"),
            10,
        )
        .expect("expands");
        let ends: Vec<DateTime<Utc>> = expanded.occurrences.iter().map(|o| o.end).collect();

        assert_eq!(
            ends,
            [utc("2026-06-01T09:00:00Z"), utc("2026-06-03T13:30:00Z")]
        );
    }

    /// Daily at 12:00 New York across the 2026-03-08 spring-forward, with `length`.
    fn ends_across_spring_forward(length: EventLength) -> Vec<i64> {
        let mut event = weekly_event();
        event.schedule = Schedule {
            start: wall("20260307T120000"),
            basis: TimeBasis::Zoned(chrono_tz::America::New_York),
            length,
            rrule: Some("FREQ=DAILY;COUNT=2".to_owned()),
            rdates: vec![],
            exdates: vec![],
        };
        let expanded = occurrences(
            &event,
            window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
            10,
        )
        .expect("expands");
        expanded
            .occurrences
            .iter()
            .map(|o| (o.end - o.start).num_hours())
            .collect()
    }

    #[test]
    fn exact_length_is_kept_across_dst() {
        assert_eq!(
            ends_across_spring_forward(EventLength {
                days: 0,
                seconds: 7200
            }),
            [2, 2]
        );
    }

    #[test]
    fn nominal_day_differs_from_24_hours_across_dst() {
        let nominal = EventLength {
            days: 1,
            seconds: 0,
        };
        let exact = EventLength {
            days: 0,
            seconds: 86_400,
        };

        assert_eq!(ends_across_spring_forward(nominal), [23, 24]);
        assert_eq!(ends_across_spring_forward(exact), [24, 24]);
    }

    #[test]
    fn one_off_event_has_no_recurrence_id() {
        let mut event = weekly_event();
        event.schedule.rrule = None;
        let expanded = occurrences(
            &event,
            window("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"),
            10,
        )
        .expect("expands");

        assert_eq!(expanded.occurrences.len(), 1);
        assert_eq!(expanded.occurrences[0].recurrence_id, None);
    }

    #[test]
    fn limit_marks_result_truncated() {
        let expanded = occurrences(
            &weekly_event(),
            window("2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            3,
        )
        .expect("expands");

        assert_eq!(expanded.occurrences.len(), 3);
        assert!(expanded.truncated);
    }
}
