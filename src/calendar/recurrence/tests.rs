//! Behaviour of the expansion, including each place where it departs from the rrule crate.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc, Weekday};
use chrono_tz::Tz;

use super::{Expansion, MAX_INSTANCES, Recurrence, RecurrenceError};
use crate::calendar::time::{Moment, TimeBasis, Window};

fn wall(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").expect("test wall time is valid")
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant is valid")
        .with_timezone(&Utc)
}

fn zoned(name: &str) -> TimeBasis {
    TimeBasis::Zoned(name.parse::<Tz>().expect("test zone exists"))
}

fn recurrence(start: &str, basis: TimeBasis, rule: &str) -> Recurrence {
    Recurrence {
        start: wall(start),
        basis,
        rrule: Some(rule.to_owned()),
        rdates: vec![],
        exdates: vec![],
    }
}

fn expand_all(recurrence: &Recurrence) -> Expansion {
    recurrence
        .expand(None, MAX_INSTANCES)
        .expect("rule expands")
}

fn instants(expansion: &Expansion) -> Vec<String> {
    expansion
        .instances
        .iter()
        .map(|instance| instance.utc.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect()
}

fn rule_error(rule: &str) -> RecurrenceError {
    recurrence("20260101T090000", zoned("America/New_York"), rule)
        .expand(None, 10)
        .expect_err("rule is rejected")
}

#[test]
fn daily_rule_keeps_instance_inside_spring_gap() {
    let expansion = expand_all(&recurrence(
        "20240329T013000",
        zoned("Europe/London"),
        "FREQ=DAILY;COUNT=5",
    ));

    assert_eq!(
        instants(&expansion),
        [
            "2024-03-29T01:30:00Z",
            "2024-03-30T01:30:00Z",
            "2024-03-31T01:30:00Z",
            "2024-04-01T00:30:00Z",
            "2024-04-02T00:30:00Z"
        ]
    );
    assert_eq!(expansion.instances[2].wall, wall("20240331T023000"));
}

#[test]
fn daily_rule_takes_first_of_repeated_time() {
    let expansion = expand_all(&recurrence(
        "20241025T013000",
        zoned("Europe/London"),
        "FREQ=DAILY;COUNT=4",
    ));

    assert_eq!(
        instants(&expansion),
        [
            "2024-10-25T00:30:00Z",
            "2024-10-26T00:30:00Z",
            "2024-10-27T00:30:00Z",
            "2024-10-28T01:30:00Z"
        ]
    );
}

fn half_hourly_grid_on(day: &str) -> Vec<String> {
    let grid = recurrence(
        "20240301T000000",
        zoned("Europe/London"),
        "FREQ=DAILY;BYHOUR=0,1,2,3;BYMINUTE=0,30",
    );
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("test date is valid");
    let window = Window {
        from: crate::calendar::time::resolve_local(
            chrono_tz::Europe::London,
            date.and_hms_opt(0, 0, 0).expect("midnight"),
        ),
        to: crate::calendar::time::resolve_local(
            chrono_tz::Europe::London,
            date.and_hms_opt(23, 59, 59).expect("late"),
        ),
    };
    instants(&grid.expand(Some(window), 100).expect("rule expands"))
}

#[test]
fn half_hourly_grid_collapses_gap_duplicates() {
    assert_eq!(
        half_hourly_grid_on("2024-03-31"),
        [
            "2024-03-31T00:00:00Z",
            "2024-03-31T00:30:00Z",
            "2024-03-31T01:00:00Z",
            "2024-03-31T01:30:00Z",
            "2024-03-31T02:00:00Z",
            "2024-03-31T02:30:00Z"
        ]
    );
}

#[test]
fn half_hourly_grid_keeps_eight_instants_on_overlap_day() {
    assert_eq!(
        half_hourly_grid_on("2024-10-27"),
        [
            "2024-10-26T23:00:00Z",
            "2024-10-26T23:30:00Z",
            "2024-10-27T00:00:00Z",
            "2024-10-27T00:30:00Z",
            "2024-10-27T02:00:00Z",
            "2024-10-27T02:30:00Z",
            "2024-10-27T03:00:00Z",
            "2024-10-27T03:30:00Z"
        ]
    );
}

#[test]
fn dtstart_inside_spring_gap_is_accepted() {
    let expansion = expand_all(&recurrence(
        "20260329T023000",
        zoned("Europe/Berlin"),
        "FREQ=DAILY;COUNT=2",
    ));

    assert_eq!(
        instants(&expansion),
        ["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"]
    );
}

#[test]
fn dtstart_inside_fall_overlap_is_accepted() {
    let expansion = expand_all(&recurrence(
        "20261025T023000",
        zoned("Europe/Berlin"),
        "FREQ=DAILY;COUNT=2",
    ));

    assert_eq!(
        instants(&expansion),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
}

#[test]
fn exdate_inside_spring_gap_removes_shifted_instance() {
    let mut series = recurrence(
        "20260327T023000",
        zoned("Europe/Berlin"),
        "FREQ=DAILY;COUNT=4",
    );
    series.exdates = vec![Moment::Wall(wall("20260329T023000"))];

    assert_eq!(
        instants(&expand_all(&series)),
        [
            "2026-03-27T01:30:00Z",
            "2026-03-28T01:30:00Z",
            "2026-03-30T00:30:00Z"
        ]
    );
}

#[test]
fn hourly_rule_has_no_duplicate_through_gap() {
    let expansion = expand_all(&recurrence(
        "20260308T000000",
        zoned("America/New_York"),
        "FREQ=HOURLY;UNTIL=20260308T090000Z",
    ));

    assert_eq!(
        instants(&expansion),
        [
            "2026-03-08T05:00:00Z",
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z",
            "2026-03-08T09:00:00Z"
        ]
    );
}

#[test]
fn rdate_equal_to_rule_instance_counts_once() {
    let mut series = recurrence(
        "20260601T090000",
        zoned("America/New_York"),
        "FREQ=DAILY;COUNT=2",
    );
    series.rdates = vec![
        Moment::Utc(utc("2026-06-02T13:00:00Z")),
        Moment::Wall(wall("20260602T090000")),
    ];

    assert_eq!(
        instants(&expand_all(&series)),
        ["2026-06-01T13:00:00Z", "2026-06-02T13:00:00Z"]
    );
}

#[test]
fn minutely_grid_survives_byhour_skip() {
    let series = recurrence(
        "20260101T090000",
        TimeBasis::Floating,
        "FREQ=MINUTELY;INTERVAL=7;BYHOUR=9",
    );
    let got: Vec<NaiveDateTime> = series
        .expand(None, 40)
        .expect("rule expands")
        .instances
        .iter()
        .map(|i| i.wall)
        .collect();
    let expected: Vec<NaiveDateTime> = (0..)
        .map(|step| wall("20260101T090000") + Duration::minutes(7 * step))
        .filter(|candidate: &NaiveDateTime| candidate.format("%H").to_string() == "09")
        .take(40)
        .collect();

    assert_eq!(got, expected);
}

#[test]
fn secondly_grid_survives_byminute_skip() {
    let series = recurrence(
        "20260101T000000",
        TimeBasis::Utc,
        "FREQ=SECONDLY;INTERVAL=7;BYMINUTE=0",
    );
    let got: Vec<NaiveDateTime> = series
        .expand(None, 30)
        .expect("rule expands")
        .instances
        .iter()
        .map(|i| i.wall)
        .collect();
    let expected: Vec<NaiveDateTime> = (0..)
        .map(|step| wall("20260101T000000") + Duration::seconds(7 * step))
        .filter(|candidate: &NaiveDateTime| candidate.format("%M").to_string() == "00")
        .take(30)
        .collect();

    assert_eq!(got, expected);
}

#[test]
fn set_ends_at_year_9999() {
    let expansion = expand_all(&recurrence(
        "99991230T000000",
        TimeBasis::Floating,
        "FREQ=DAILY",
    ));

    assert_eq!(
        instants(&expansion),
        ["9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z"]
    );
    assert!(!expansion.truncated);
}

#[test]
fn interval_zero_is_rejected() {
    assert!(
        matches!(rule_error("FREQ=DAILY;INTERVAL=0"), RecurrenceError::InvalidValue { name, .. } if name == "INTERVAL")
    );
}

#[test]
fn count_with_until_is_rejected() {
    assert_eq!(
        rule_error("FREQ=DAILY;COUNT=3;UNTIL=20260110T000000Z"),
        RecurrenceError::CountWithUntil
    );
}

#[test]
fn missing_freq_is_rejected() {
    assert_eq!(rule_error("COUNT=3;BYDAY=MO"), RecurrenceError::MissingFreq);
}

#[test]
fn unknown_byday_is_rejected() {
    assert!(
        matches!(rule_error("FREQ=WEEKLY;BYDAY=XX"), RecurrenceError::InvalidValue { name, .. } if name == "BYDAY")
    );
}

#[test]
fn out_of_range_value_is_rejected() {
    let error = rule_error("FREQ=MONTHLY;BYMONTHDAY=32");

    assert!(
        error.to_string().contains("BYMONTHDAY value \"32\""),
        "{error}"
    );
}

#[test]
fn oversized_rule_is_rejected() {
    let rule = format!("FREQ=DAILY;BYSECOND={}", vec!["0"; 2_000].join(","));

    assert!(matches!(
        rule_error(&rule),
        RecurrenceError::RuleTooLong { .. }
    ));
}

#[test]
fn window_end_is_exclusive() {
    let series = recurrence("20260101T000000", TimeBasis::Utc, "FREQ=DAILY");
    let window = Window {
        from: utc("2026-01-02T00:00:00Z"),
        to: utc("2026-01-04T00:00:00Z"),
    };

    assert_eq!(
        instants(&series.expand(Some(window), 10).expect("rule expands")),
        ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]
    );
}

#[test]
fn unbounded_rule_without_window_stops_at_limit() {
    let expansion = recurrence("20260101T000000", TimeBasis::Utc, "FREQ=SECONDLY")
        .expand(None, 3)
        .expect("rule expands");

    assert_eq!(expansion.instances.len(), 3);
    assert!(expansion.truncated);
}

#[test]
fn never_matching_daily_rule_reports_truncation() {
    let mut series = recurrence(
        "20260201T090000",
        TimeBasis::Floating,
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
    );
    series.exdates = vec![Moment::Wall(wall("20260201T090000"))];
    let expansion = expand_all(&series);

    assert!(expansion.instances.is_empty());
    assert!(
        expansion.truncated,
        "the crate's give-up must not read as the end of the set"
    );
}

#[test]
fn count_rule_with_far_window_is_an_error() {
    let series = recurrence(
        "20260101T000000",
        TimeBasis::Utc,
        "FREQ=SECONDLY;COUNT=1000000000",
    );
    let window = Window {
        from: utc("2100-01-01T00:00:00Z"),
        to: utc("2100-01-02T00:00:00Z"),
    };

    assert!(matches!(
        series.expand(Some(window), 10),
        Err(RecurrenceError::TooManySteps { .. })
    ));
}

#[test]
fn far_window_on_secondly_rule_jumps_ahead() {
    let series = recurrence("20260101T000000", TimeBasis::Utc, "FREQ=SECONDLY");
    let window = Window {
        from: utc("2125-12-31T23:59:58Z"),
        to: utc("2126-01-01T00:00:00Z"),
    };

    assert_eq!(
        instants(&series.expand(Some(window), 10).expect("rule expands")),
        ["2125-12-31T23:59:58Z", "2125-12-31T23:59:59Z"]
    );
}

#[test]
fn until_is_compared_with_shifted_instant() {
    let series = recurrence(
        "20260306T023000",
        zoned("America/New_York"),
        "FREQ=DAILY;UNTIL=20260308T063000Z",
    );

    assert_eq!(
        instants(&expand_all(&series)),
        ["2026-03-06T07:30:00Z", "2026-03-07T07:30:00Z"]
    );
}

#[test]
fn exdate_with_zone_and_utc_spelling_removes_matching_instants() {
    let mut series = recurrence(
        "20241021T183000",
        zoned("Europe/Paris"),
        "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6",
    );
    series.exdates = vec![
        Moment::Wall(wall("20241030T183000")),
        Moment::Utc(utc("2024-11-04T17:30:00Z")),
        Moment::Wall(wall("20241023T180000")),
    ];

    assert_eq!(
        instants(&expand_all(&series)),
        [
            "2024-10-21T16:30:00Z",
            "2024-10-23T16:30:00Z",
            "2024-10-28T17:30:00Z",
            "2024-11-06T17:30:00Z"
        ]
    );
}

#[test]
fn exdate_matching_no_instance_removes_nothing() {
    let mut series = recurrence(
        "20260601T090000",
        zoned("America/New_York"),
        "FREQ=DAILY;COUNT=3",
    );
    series.exdates = vec![
        Moment::Wall(wall("20260602T080000")),
        Moment::Utc(utc("2026-06-02T09:00:00Z")),
    ];

    assert_eq!(expand_all(&series).instances.len(), 3);
}

#[test]
fn weekly_all_day_rule_stays_on_wednesdays() {
    let series = recurrence("20250212T000000", TimeBasis::AllDay, "FREQ=WEEKLY;COUNT=8");
    let expansion = expand_all(&series);
    let dates: Vec<String> = expansion
        .instances
        .iter()
        .map(|instance| instance.wall.format("%Y-%m-%d").to_string())
        .collect();

    assert_eq!(
        dates,
        [
            "2025-02-12",
            "2025-02-19",
            "2025-02-26",
            "2025-03-05",
            "2025-03-12",
            "2025-03-19",
            "2025-03-26",
            "2025-04-02"
        ]
    );
    for instance in &expansion.instances {
        assert_eq!(instance.wall.weekday(), Weekday::Wed);
        assert_eq!(
            instance.utc,
            instance.wall.and_utc(),
            "all-day values are pinned, not zoned"
        );
    }
}

#[test]
fn floating_rule_has_no_dst_gap() {
    let series = recurrence("20260307T023000", TimeBasis::Floating, "FREQ=DAILY;COUNT=3");

    assert_eq!(
        instants(&expand_all(&series)),
        [
            "2026-03-07T02:30:00Z",
            "2026-03-08T02:30:00Z",
            "2026-03-09T02:30:00Z"
        ]
    );
}

#[test]
fn byweekno_53_skips_years_with_52_weeks() {
    let series = recurrence(
        "20260103T100000",
        TimeBasis::Floating,
        "FREQ=YEARLY;BYWEEKNO=53;BYDAY=SA;WKST=SU;COUNT=3",
    );

    assert_eq!(
        instants(&expand_all(&series)),
        [
            "2026-01-03T10:00:00Z",
            "2032-01-03T10:00:00Z",
            "2037-01-03T10:00:00Z"
        ]
    );
}

/// Rules for the jump-ahead comparison, each with the step between windows in seconds.
const JUMP_RULES: [(&str, i64); 24] = [
    ("FREQ=YEARLY", 86_400 * 500),
    (
        "FREQ=YEARLY;INTERVAL=3;BYMONTH=1,7;BYDAY=1MO,-1FR",
        86_400 * 400,
    ),
    ("FREQ=YEARLY;BYWEEKNO=20,-1;BYDAY=TU", 86_400 * 300),
    ("FREQ=YEARLY;INTERVAL=2;BYYEARDAY=1,-1,100", 86_400 * 450),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", 86_400 * 700),
    ("FREQ=MONTHLY", 86_400 * 90),
    ("FREQ=MONTHLY;INTERVAL=5", 86_400 * 200),
    ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", 86_400 * 95),
    ("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=1,-1", 86_400 * 130),
    ("FREQ=MONTHLY;BYDAY=2SU;BYHOUR=8,20", 86_400 * 75),
    ("FREQ=WEEKLY", 86_400 * 40),
    ("FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,FR", 86_400 * 50),
    ("FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=TU,SU", 86_400 * 33),
    ("FREQ=WEEKLY;BYDAY=SA,SU;BYSETPOS=1", 86_400 * 45),
    ("FREQ=DAILY", 86_400 * 20),
    ("FREQ=DAILY;INTERVAL=9", 86_400 * 31),
    ("FREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=0,30", 86_400 * 6),
    ("FREQ=DAILY;INTERVAL=4;BYMONTH=3,10", 86_400 * 60),
    ("FREQ=HOURLY;INTERVAL=5", 86_400 * 3),
    ("FREQ=HOURLY;BYHOUR=1,2;BYMINUTE=15,45", 86_400 * 5),
    ("FREQ=MINUTELY;INTERVAL=7;BYHOUR=9", 86_400 * 2),
    ("FREQ=MINUTELY;INTERVAL=90", 86_400),
    ("FREQ=SECONDLY;INTERVAL=13;BYSECOND=0,13,26", 600),
    (
        "FREQ=HOURLY;INTERVAL=3;BYDAY=SA,SU;BYMONTHDAY=1,2,3,4,5,6,7",
        86_400 * 9,
    ),
];

#[test]
fn jumped_expansion_matches_walk_from_start() {
    let starts = [
        ("20210130T013000", zoned("Europe/London")),
        ("20200315T023000", zoned("America/New_York")),
        ("20190101T120000", TimeBasis::Floating),
    ];
    for (rule, stride) in JUMP_RULES {
        for (start, basis) in starts {
            let series = recurrence(start, basis, rule);
            let walked = expand_all(&series);
            let last = walked.instances.last().expect("rule has instances").utc;
            let first = walked.instances[0].utc;
            let mut compared = 0;
            for step in 1..6 {
                let from = first + Duration::seconds(stride * step * step);
                let window = Window {
                    from,
                    to: from + Duration::seconds(stride),
                };
                if window.to > last {
                    break;
                }
                let expected: Vec<_> = walked
                    .instances
                    .iter()
                    .filter(|instance| window.contains(instance.utc))
                    .copied()
                    .collect();
                let jumped = series
                    .expand(Some(window), MAX_INSTANCES)
                    .expect("rule expands");

                assert_eq!(
                    jumped.instances, expected,
                    "{rule} from {start} in {window:?}"
                );
                compared += 1;
            }
            assert!(
                compared >= 2,
                "{rule} from {start}: only {compared} windows compared"
            );
        }
    }
}
