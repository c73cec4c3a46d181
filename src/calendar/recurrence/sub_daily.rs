//! HOURLY, MINUTELY and SECONDLY rules, generated here rather than by the rrule crate.
//!
//! rrule 0.14 skips hours that BYHOUR excludes by whole hours, so a MINUTELY or SECONDLY rule
//! whose INTERVAL does not divide 60 leaves its grid (every 7 minutes from 09:00 continues at
//! 09:03 the next day instead of on the 7-minute grid). Here every *period* is
//! `base + n * INTERVAL` units, where `base` is DTSTART cut to the unit, so the grid never moves.
//! Periods whose day, hour or minute no `BYxxx` part allows are skipped in one step each.

use std::collections::VecDeque;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use rrule::Frequency;

use super::rule::Rule;

/// A running walk over the periods of a sub-daily rule.
pub(super) struct SubDailyWalk {
    rule: Rule,
    start: NaiveDateTime,
    /// DTSTART cut to the rule's unit.
    base: NaiveDateTime,
    /// Length of one period in seconds.
    step: i64,
    /// Index of the next period to look at.
    period: i64,
    /// Instances of the current period not yet returned, in order.
    pending: VecDeque<NaiveDateTime>,
}

impl SubDailyWalk {
    /// Starts at DTSTART's period, or at the last period that starts before `target` when that is
    /// later and the rule has no COUNT.
    pub fn new(rule: &Rule, start: NaiveDateTime, target: Option<NaiveDateTime>) -> Self {
        let unit = match rule.freq {
            Frequency::Hourly => 3600,
            Frequency::Minutely => 60,
            _ => 1,
        };
        let base = truncate(start, unit);
        let step = unit * i64::from(rule.interval);
        let period = match target {
            Some(target) if rule.count.is_none() && target > base => {
                (target - base).num_seconds() / step
            }
            _ => 0,
        };
        SubDailyWalk {
            rule: rule.clone(),
            start,
            base,
            step,
            period,
            pending: VecDeque::default(),
        }
    }

    /// Returns the next wall time, counting each period looked at in `steps`; `None` after year 9999.
    pub fn next_wall(&mut self, steps: &mut u64) -> Option<NaiveDateTime> {
        loop {
            if let Some(wall) = self.pending.pop_front() {
                return Some(wall);
            }

            *steps += 1;
            let period_start = self.period_start()?;
            if let Some(next) = self.skip_to(period_start) {
                self.period = next.max(self.period + 1);
            } else {
                self.expand(period_start);
                self.period += 1;
            }
        }
    }

    fn period_start(&self) -> Option<NaiveDateTime> {
        let offset = Duration::try_seconds(self.period.checked_mul(self.step)?)?;
        let wall = self.base.checked_add_signed(offset)?;
        (wall.year() <= 9999).then_some(wall)
    }

    /// Returns the first period after a day, hour or minute that the rule excludes, or `None` when the
    /// period at `at` is allowed.
    fn skip_to(&self, at: NaiveDateTime) -> Option<i64> {
        let by = &self.rule.by;
        let date = at.date();
        let next_boundary = if !date_matches(&self.rule, date) {
            date.and_time(chrono::NaiveTime::MIN) + Duration::days(1)
        } else if !allows(&by.hour, at.hour()) {
            truncate(at, 3600) + Duration::hours(1)
        } else if self.rule.freq != Frequency::Hourly && !allows(&by.minute, at.minute()) {
            truncate(at, 60) + Duration::minutes(1)
        } else if self.rule.freq == Frequency::Secondly && !allows(&by.second, at.second()) {
            at + Duration::seconds(1)
        } else {
            return None;
        };

        // Ceiling division: the first period starting at or after the boundary.
        let seconds = (next_boundary - self.base).num_seconds();
        Some((seconds + self.step - 1) / self.step)
    }

    /// Queues the instances of the period starting at `at`, after BYSETPOS.
    fn expand(&mut self, at: NaiveDateTime) {
        let by = &self.rule.by;
        let seconds = or_default(&by.second, self.start.second());
        let set: Vec<NaiveDateTime> = match self.rule.freq {
            Frequency::Hourly => {
                let minutes = or_default(&by.minute, self.start.minute());
                let mut set = Vec::with_capacity(minutes.len() * seconds.len());
                for minute in &minutes {
                    for second in &seconds {
                        set.push(at + Duration::seconds(i64::from(minute * 60 + second)));
                    }
                }
                set
            }
            Frequency::Minutely => seconds
                .iter()
                .map(|second| at + Duration::seconds(i64::from(*second)))
                .collect(),
            _ => vec![at],
        };

        let chosen = select_positions(set, &by.set_pos);
        self.pending
            .extend(chosen.into_iter().filter(|wall| *wall >= self.start));
    }
}

/// Cuts a wall time down to a multiple of `unit` seconds within its day.
fn truncate(wall: NaiveDateTime, unit: i64) -> NaiveDateTime {
    let seconds = i64::from(wall.num_seconds_from_midnight());
    wall.date().and_time(chrono::NaiveTime::MIN) + Duration::seconds(seconds / unit * unit)
}

fn allows(list: &[u32], value: u32) -> bool {
    list.is_empty() || list.contains(&value)
}

/// Returns the list sorted without repeats, or the default alone when the list is empty.
fn or_default(list: &[u32], default: u32) -> Vec<u32> {
    let mut values = if list.is_empty() {
        vec![default]
    } else {
        list.to_vec()
    };
    values.sort_unstable();
    values.dedup();
    values
}

/// Applies BYSETPOS (1-based, negative from the end) to a sorted set.
pub(super) fn select_positions(set: Vec<NaiveDateTime>, positions: &[i32]) -> Vec<NaiveDateTime> {
    if positions.is_empty() {
        return set;
    }
    let length = set.len() as i64;
    let mut chosen: Vec<NaiveDateTime> = positions
        .iter()
        .filter_map(|position| {
            let index = if *position > 0 {
                i64::from(*position) - 1
            } else {
                length + i64::from(*position)
            };
            usize::try_from(index)
                .ok()
                .and_then(|index| set.get(index).copied())
        })
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// Checks whether BYMONTH, BYMONTHDAY, BYYEARDAY and BYDAY allow `date` (BYWEEKNO and numbered BYDAY
/// are rejected for sub-daily rules when the rule is parsed).
fn date_matches(rule: &Rule, date: NaiveDate) -> bool {
    let by = &rule.by;
    let month_days = days_in_month(date);
    let year_days: i32 = if date.leap_year() { 366 } else { 365 };
    let day = date.day() as i32;
    let ordinal = date.ordinal() as i32;

    allows(&by.month, date.month())
        && (by.month_day.is_empty()
            || by
                .month_day
                .iter()
                .any(|md| *md == day || month_days + md + 1 == day))
        && (by.year_day.is_empty()
            || by
                .year_day
                .iter()
                .any(|yd| *yd == ordinal || year_days + yd + 1 == ordinal))
        && (by.day.is_empty() || by.day.iter().any(|(_, weekday)| *weekday == date.weekday()))
}

fn days_in_month(date: NaiveDate) -> i32 {
    let first = date.with_day(1).unwrap_or(date);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (next - first).num_days() as i32
}
