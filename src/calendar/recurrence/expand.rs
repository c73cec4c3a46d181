//! The expansion pipeline: rule instances, DTSTART and RDATEs, minus EXDATEs, in a window.

use std::collections::HashSet;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc,
};

use super::offsets::ZoneClock;
use super::rule::Rule;
use super::sub_daily::SubDailyWalk;
use super::walk::{self, CrateWalk, WalkEnd};
use super::{
    Expansion, Instance, MAX_DATES, MAX_INSTANCES, MAX_STEPS, Recurrence, RecurrenceError,
};
use crate::calendar::time::{Moment, TimeBasis, Window, resolve_local};

/// Largest UTC offset in tzdb (Pacific/Kiritimati, +14:00). A zoned wall time's instant is never
/// earlier than the wall time read as UTC minus this, gap shifts included, because a gap time is
/// read with the offset before the gap.
const MAX_OFFSET: Duration = Duration::hours(14);

/// Keeps the smallest `capacity` distinct instants offered inside the window, minus EXDATEs.
///
/// Offers are appended and compacted (sorted, deduplicated, cut to `capacity`) only when the
/// list grows, because rule instances arrive almost in order and a tree insert per instance
/// costs more than the expansion itself.
struct Collector {
    kept: Vec<Instance>,
    capacity: usize,
    /// Largest instant kept once `capacity` distinct instants are known.
    full_at: Option<DateTime<Utc>>,
    dropped: bool,
    window: Option<Window>,
    exdates: HashSet<DateTime<Utc>>,
}

impl Collector {
    fn offer(&mut self, instance: Instance) {
        let outside = self
            .window
            .is_some_and(|window| !window.contains(instance.utc));
        let excluded = !self.exdates.is_empty() && self.exdates.contains(&instance.utc);
        if outside || excluded {
            return;
        }
        if self.full_at.is_some_and(|last| instance.utc > last) {
            self.dropped = true;
            return;
        }

        self.kept.push(instance);
        if self.kept.len() >= 2 * self.capacity {
            self.compact();
        }
    }

    /// Returns whether an instant at or after `earliest` could still be kept.
    fn wants_from(&mut self, earliest: DateTime<Utc>) -> bool {
        if self.window.is_some_and(|window| earliest >= window.to) {
            return false;
        }
        if self.full_at.is_none() && self.kept.len() >= self.capacity {
            self.compact();
        }
        self.full_at.is_none_or(|last| earliest <= last)
    }

    fn compact(&mut self) {
        self.kept.sort_unstable_by_key(|instance| instance.utc);
        self.kept.dedup_by_key(|instance| instance.utc);
        if self.kept.len() > self.capacity {
            self.kept.truncate(self.capacity);
            self.dropped = true;
        }
        if self.kept.len() == self.capacity {
            self.full_at = self.kept.last().map(|instance| instance.utc);
        }
    }

    /// The kept instances in order.
    fn finish(mut self) -> (Vec<Instance>, bool) {
        self.compact();
        (self.kept, self.dropped)
    }
}

/// Places a wall time on `basis`: its instant, and the wall time that the clock shows then.
///
/// One zone lookup serves both unless the wall time lies in a gap, which is rare.
fn place(wall: NaiveDateTime, basis: TimeBasis) -> Instance {
    let TimeBasis::Zoned(tz) = basis else {
        return Instance {
            wall,
            utc: wall.and_utc(),
        };
    };
    // Asking for the offset alone and subtracting it skips building a zoned DateTime, which
    // made up a good part of the cost per instance.
    match tz.offset_from_local_datetime(&wall) {
        LocalResult::Single(offset) => Instance {
            wall,
            utc: wall.and_utc() - Duration::seconds(i64::from(offset.fix().local_minus_utc())),
        },
        LocalResult::Ambiguous(first, second) => {
            let larger = first
                .fix()
                .local_minus_utc()
                .max(second.fix().local_minus_utc());
            Instance {
                wall,
                utc: wall.and_utc() - Duration::seconds(i64::from(larger)),
            }
        }
        LocalResult::None => {
            let utc = resolve_local(tz, wall);
            Instance {
                wall: basis.to_wall(utc),
                utc,
            }
        }
    }
}

fn place_moment(moment: Moment, basis: TimeBasis) -> Instance {
    match moment {
        Moment::Wall(wall) => place(wall, basis),
        Moment::Utc(utc) => Instance {
            wall: basis.to_wall(utc),
            utc,
        },
    }
}

/// Expands `recurrence`; see [`Recurrence::expand`].
pub(super) fn expand(
    recurrence: &Recurrence,
    window: Option<Window>,
    limit: usize,
) -> Result<Expansion, RecurrenceError> {
    check_date_counts(recurrence)?;

    let basis = recurrence.basis;
    let limit = limit.min(MAX_INSTANCES);
    let mut collector = Collector {
        // Reserving up front saves most of the copying while the list grows; the cap keeps a
        // call that finds few instances from allocating for the worst case.
        kept: Vec::with_capacity((2 * (limit + 1)).min(4_096)),
        capacity: limit + 1,
        full_at: None,
        dropped: false,
        window,
        exdates: recurrence
            .exdates
            .iter()
            .map(|moment| moment.to_utc(basis))
            .collect(),
    };

    // DTSTART always belongs to the set (RFC 5545 3.8.5.3), also when the rule does not match it.
    collector.offer(place(recurrence.start, basis));
    for rdate in &recurrence.rdates {
        collector.offer(place_moment(*rdate, basis));
    }

    let mut search_stopped = false;
    if let Some(text) = &recurrence.rrule {
        let rule = Rule::parse(text)?;
        search_stopped = walk_rule(recurrence, &rule, text, &mut collector)?;
    }

    let (mut instances, dropped) = collector.finish();
    let mut truncated = dropped || search_stopped;
    if instances.len() > limit {
        instances.truncate(limit);
        truncated = true;
    }
    Ok(Expansion {
        instances,
        truncated,
    })
}

fn check_date_counts(recurrence: &Recurrence) -> Result<(), RecurrenceError> {
    for (field, count) in [
        ("rdate", recurrence.rdates.len()),
        ("exdate", recurrence.exdates.len()),
    ] {
        if count > MAX_DATES {
            return Err(RecurrenceError::TooManyDates {
                field,
                count,
                limit: MAX_DATES,
            });
        }
    }
    Ok(())
}

/// A source of rule wall times in increasing order.
enum Walker {
    Crate(CrateWalk),
    SubDaily(SubDailyWalk),
}

/// Next item from a walker.
enum Step {
    Wall(NaiveDateTime),
    End,
    /// The crate found nothing up to this wall time and stopped looking.
    GaveUp(NaiveDateTime),
}

impl Walker {
    fn next(&mut self, steps: &mut u64) -> Step {
        match self {
            Walker::Crate(walk) => {
                *steps += 1;
                match walk.next_wall() {
                    Ok(found) => Step::Wall(found),
                    Err(WalkEnd::Finished) => Step::End,
                    Err(WalkEnd::GaveUp { searched_to }) => Step::GaveUp(searched_to),
                }
            }
            Walker::SubDaily(walk) => walk.next_wall(steps).map_or(Step::End, Step::Wall),
        }
    }
}

/// Offers the rule's instances to `collector`; returns whether the search stopped before the
/// rule, the window or the collector was done.
fn walk_rule(
    recurrence: &Recurrence,
    rule: &Rule,
    text: &str,
    collector: &mut Collector,
) -> Result<bool, RecurrenceError> {
    let basis = recurrence.basis;
    let until = rule
        .until
        .as_deref()
        .map(|value| read_until(value, basis))
        .transpose()?;
    let target = collector.window.and_then(|window| {
        window
            .from
            .naive_utc()
            .checked_sub_signed(Duration::days(1))
    });
    let mut walker = if rule.is_sub_daily() {
        walk::check_with_crate(rule, recurrence.start)?;
        Walker::SubDaily(SubDailyWalk::new(rule, recurrence.start, target))
    } else {
        Walker::Crate(CrateWalk::new(rule, recurrence.start, target)?)
    };

    let mut zone_clock = match basis {
        TimeBasis::Zoned(tz) => Some(ZoneClock::new(tz)),
        _ => None,
    };
    let mut steps = 0;
    let mut produced: u64 = 0;
    loop {
        let wall = match walker.next(&mut steps) {
            Step::Wall(wall) => wall,
            Step::End => return Ok(false),
            Step::GaveUp(searched_to) => {
                let earliest = earliest_instant(searched_to, basis);
                let covered =
                    until.is_some_and(|until| earliest > until) || !collector.wants_from(earliest);
                return Ok(!covered);
            }
        };
        if steps > MAX_STEPS {
            return Err(RecurrenceError::TooManySteps {
                rule: text.to_owned(),
                limit: MAX_STEPS,
            });
        }
        if wall.year() > 9999 {
            return Ok(false);
        }

        if !rule.week_matches(wall.date()) {
            continue;
        }

        let wall = if basis == TimeBasis::AllDay {
            wall.date().and_time(NaiveTime::MIN)
        } else {
            wall
        };
        let earliest = earliest_instant(wall, basis);
        if until.is_some_and(|until| earliest > until) || !collector.wants_from(earliest) {
            return Ok(false);
        }

        let instance = match zone_clock.as_mut().and_then(|clock| clock.instant(wall)) {
            Some(utc) => Instance { wall, utc },
            None => place(wall, basis),
        };
        if until.is_none_or(|until| instance.utc <= until) {
            collector.offer(instance);
        }
        produced += 1;
        if rule.count.is_some_and(|count| produced >= u64::from(count)) {
            return Ok(false);
        }
    }
}

/// Returns a lower bound on the instant of `wall` and of every later wall time on `basis`.
fn earliest_instant(wall: NaiveDateTime, basis: TimeBasis) -> DateTime<Utc> {
    match basis {
        TimeBasis::Zoned(_) => (wall - MAX_OFFSET).and_utc(),
        _ => wall.and_utc(),
    }
}

/// Reads UNTIL as an instant (pinned for floating and all-day) for a start on `basis`.
///
/// RFC 5545 requires UTC with a zoned start, a floating time with a floating start and a DATE
/// with a DATE start. Other spellings seen in exported files are read leniently: a time without
/// `Z` on a zoned start is local time, and a DATE on a timed start includes that whole day.
fn read_until(value: &str, basis: TimeBasis) -> Result<DateTime<Utc>, RecurrenceError> {
    let invalid = || RecurrenceError::InvalidValue {
        name: "UNTIL".to_owned(),
        value: value.to_owned(),
        reason: "expected YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ".to_owned(),
    };
    let (text, is_utc) = match value.strip_suffix('Z') {
        Some(text) => (text, true),
        None => (value, false),
    };

    if text.len() == 8 {
        let date = NaiveDate::parse_from_str(text, "%Y%m%d").map_err(|_| invalid())?;
        let wall = match basis {
            TimeBasis::AllDay => date.and_time(NaiveTime::MIN),
            _ => date.and_hms_opt(23, 59, 59).ok_or_else(invalid)?,
        };
        return Ok(basis.to_utc(wall));
    }

    let wall = NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").map_err(|_| invalid())?;
    Ok(match basis {
        TimeBasis::Zoned(tz) if !is_utc => resolve_local(tz, wall),
        TimeBasis::AllDay => wall.date().and_time(NaiveTime::MIN).and_utc(),
        _ => wall.and_utc(),
    })
}
