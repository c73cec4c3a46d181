//! Recurrence expansion against the raw rrule crate.
//!
//! Run: `cargo bench --bench recurrence -- --warm-up-time 1 --measurement-time 3`

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]
#![expect(
    clippy::expect_used,
    reason = "fixed inputs that are known to be valid; a failure should stop the benchmark"
)]

use std::hint::black_box;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use rose_events::calendar::recurrence::Recurrence;
use rose_events::calendar::time::{TimeBasis, Window};

const WEEKLY: &str = "FREQ=WEEKLY;BYDAY=MO,WE";
const INSTANCES: usize = 1_000;

fn berlin_wall(year: i32, month: u32, day: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|date| date.and_hms_opt(19, 0, 0))
        .expect("valid date")
}

fn ours(start_year: i32) -> Recurrence {
    Recurrence {
        start: berlin_wall(start_year, 1, 5),
        basis: TimeBasis::Zoned(chrono_tz::Europe::Berlin),
        rrule: Some(WEEKLY.to_owned()),
        rdates: vec![],
        exdates: vec![],
    }
}

fn raw(start_year: i32) -> rrule::RRuleSet {
    let tz = rrule::Tz::Europe__Berlin;
    let start = tz
        .from_local_datetime(&berlin_wall(start_year, 1, 5))
        .single()
        .expect("no DST edge");
    let rule: rrule::RRule<rrule::Unvalidated> = WEEKLY.parse().expect("rule parses");
    rrule::RRuleSet::new(start).rrule(rule.validate(start).expect("rule is valid"))
}

fn expand_many(c: &mut Criterion) {
    let mut group = c.benchmark_group("weekly_1000_instances");
    let series = ours(2026);
    let set = raw(2026);
    group.bench_function("ours", |b| {
        b.iter(|| {
            black_box(
                series
                    .expand(None, INSTANCES)
                    .expect("expands")
                    .instances
                    .len(),
            );
        });
    });
    group.bench_function("rrule_crate", |b| {
        b.iter(|| black_box(set.clone().all(INSTANCES as u16).dates.len()));
    });
    group.finish();
}

fn next_ten(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_10_after_ten_years");
    let now: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .expect("valid instant");
    let window = Window {
        from: now,
        to: now + chrono::Duration::days(366),
    };
    let series = ours(2016);
    let set = raw(2016);
    let after = now.with_timezone(&rrule::Tz::UTC);
    group.bench_function("ours_jump_ahead", |b| {
        b.iter(|| {
            black_box(
                series
                    .expand(Some(window), 10)
                    .expect("expands")
                    .instances
                    .len(),
            );
        });
    });
    group.bench_function("rrule_crate_walk", |b| {
        b.iter(|| black_box(set.clone().after(after).all(10).dates.len()));
    });
    group.finish();
}

criterion_group!(benches, expand_many, next_ten);
criterion_main!(benches);
