//! Retry policy: the outcome a handler reports and the verdict the queue draws from it, with
//! exponential backoff, jitter and a cap, the deadline, the attempt limit and permanent
//! failures.

use chrono::{DateTime, Duration, Utc};

use super::domains::MAX_RETRY_AFTER;

/// The result of one attempt, as a handler reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent.
    Done,
    /// Nothing to send, for a reason no retry can change (the subscription is gone, the
    /// occurrence was cancelled). The job is done, and the note is kept as its last error.
    Dropped(String),
    /// A transient failure: try again, not before `after` when the remote side sent a delay.
    Retry {
        /// What failed.
        error: String,
        /// The remote side's own delay (HTTP `Retry-After`), if it gave one; it is raised to
        /// the policy's base delay and cut to [`MAX_RETRY_AFTER`].
        after: Option<std::time::Duration>,
    },
    /// A permanent failure: the job dies now.
    Failed(String),
    /// Not tried now, for a reason outside the job (its destination is backing off): run it
    /// again at `until` without counting this attempt.
    Defer {
        /// When to run it again.
        until: DateTime<Utc>,
        /// Reason for the wait, kept as the job's last error.
        note: String,
    },
}

/// Next state of a job after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Mark it done, with an optional note.
    Done(Option<String>),
    /// Make it pending again from this instant.
    RetryAt(DateTime<Utc>, String),
    /// Mark it dead with this reason.
    Dead(String),
    /// Make it pending again from this instant, giving back the attempt it was claimed with.
    Defer(DateTime<Utc>, String),
}

/// Backoff settings.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt, before jitter.
    pub base: Duration,
    /// Maximum delay between two attempts, before jitter.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::seconds(30),
            cap: Duration::hours(1),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1` after `attempts` failed ones: `base · 2^(attempts-1)`
    /// up to `cap`, scaled by `jitter` in `[0, 1)` to between 75 % and 100 % of that. The
    /// jitter spreads retries of many jobs that failed together, and keeps every delay longer
    /// than the one before until the cap.
    pub fn backoff(&self, attempts: i32, jitter: f64) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let nominal = self
            .base
            .checked_mul(1_i32 << doublings.min(30))
            .unwrap_or(self.cap)
            .min(self.cap);
        let scale = 0.75 + 0.25 * jitter.clamp(0.0, 1.0);
        #[expect(clippy::cast_precision_loss, reason = "delays are far below 2^52 ms")]
        let millis = (nominal.num_milliseconds() as f64 * scale) as i64;
        Duration::milliseconds(millis.max(1))
    }

    /// Decides what happens to a job after attempt number `attempts` ended with `outcome`.
    pub fn decide(
        &self,
        outcome: Outcome,
        attempts: i32,
        max_attempts: i32,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Verdict {
        match outcome {
            Outcome::Done => Verdict::Done(None),
            Outcome::Dropped(note) => Verdict::Done(Some(note)),
            Outcome::Failed(error) => Verdict::Dead(error),
            Outcome::Retry { error, after } => {
                if attempts >= max_attempts {
                    return Verdict::Dead(format!("gave up after {attempts} attempts: {error}"));
                }
                // A remote delay is honoured from the base delay up to a day. Below the base,
                // "Retry-After: 0" on every attempt would use up the attempts in a second.
                // Uncut, a delay of millions of years overflows the instant it is added to.
                let delay = match after {
                    Some(after) => Duration::from_std(after)
                        .unwrap_or(MAX_RETRY_AFTER)
                        .clamp(self.base, MAX_RETRY_AFTER),
                    None => self.backoff(attempts, jitter),
                };
                let at = now + delay;
                match deadline {
                    Some(deadline) if at >= deadline => Verdict::Dead(format!(
                        "next attempt at {} would pass the deadline {}: {error}",
                        at.to_rfc3339(),
                        deadline.to_rfc3339()
                    )),
                    _ => Verdict::RetryAt(at, error),
                }
            }
            Outcome::Defer { until, note } => match deadline {
                Some(deadline) if until >= deadline => Verdict::Dead(format!(
                    "{note}; the next try at {} would pass the deadline {}",
                    until.to_rfc3339(),
                    deadline.to_rfc3339()
                )),
                _ => Verdict::Defer(until, note),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn backoff_grows_until_the_cap() {
        let policy = RetryPolicy::default();
        let mut previous_max = Duration::zero();
        for attempts in 1..=7 {
            let low = policy.backoff(attempts, 0.0);
            let high = policy.backoff(attempts, 0.999);
            assert!(
                low > previous_max,
                "attempt {attempts}: {low} after {previous_max}"
            );
            previous_max = high;
        }
        assert_eq!(
            policy.backoff(20, 0.999_999),
            Duration::milliseconds(3_599_999)
        );
        assert_eq!(policy.backoff(20, 0.0), Duration::minutes(45));
    }

    #[test]
    fn first_retry_waits_the_base_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 1.0), Duration::seconds(30));
        assert_eq!(policy.backoff(1, 0.0), Duration::milliseconds(22_500));
    }

    #[test]
    fn retry_after_is_honoured() {
        let now = at("2026-05-02T08:00:00Z");
        let verdict = RetryPolicy::default().decide(
            Outcome::Retry {
                error: "429".into(),
                after: Some(std::time::Duration::from_secs(120)),
            },
            1,
            8,
            None,
            now,
            0.5,
        );
        assert_eq!(
            verdict,
            Verdict::RetryAt(at("2026-05-02T08:02:00Z"), "429".into())
        );
    }

    #[test]
    fn huge_retry_after_is_cut_to_a_day() {
        let now = at("2026-05-02T08:00:00Z");
        let huge = std::time::Duration::from_secs(1_000_000_000_000_000);
        let verdict = RetryPolicy::default().decide(
            Outcome::Retry {
                error: "429".into(),
                after: Some(huge),
            },
            1,
            8,
            None,
            now,
            0.5,
        );
        assert_eq!(
            verdict,
            Verdict::RetryAt(at("2026-05-03T08:00:00Z"), "429".into())
        );
    }

    #[test]
    fn zero_retry_after_waits_the_base_delay() {
        let now = at("2026-05-02T08:00:00Z");
        let verdict = RetryPolicy::default().decide(
            Outcome::Retry {
                error: "429".into(),
                after: Some(std::time::Duration::ZERO),
            },
            1,
            8,
            None,
            now,
            0.5,
        );
        assert_eq!(
            verdict,
            Verdict::RetryAt(at("2026-05-02T08:00:30Z"), "429".into())
        );
    }

    #[test]
    fn attempt_limit_kills() {
        let now = at("2026-05-02T08:00:00Z");
        let outcome = Outcome::Retry {
            error: "507".into(),
            after: None,
        };
        let verdict = RetryPolicy::default().decide(outcome, 8, 8, None, now, 0.5);
        assert!(matches!(verdict, Verdict::Dead(reason) if reason.contains("after 8 attempts")));
    }

    #[test]
    fn deadline_kills_a_late_retry() {
        let now = at("2026-05-02T08:00:00Z");
        let outcome = Outcome::Retry {
            error: "503".into(),
            after: Some(std::time::Duration::from_secs(3600)),
        };
        let deadline = Some(at("2026-05-02T08:30:00Z"));
        let verdict = RetryPolicy::default().decide(outcome, 1, 8, deadline, now, 0.5);
        assert!(matches!(verdict, Verdict::Dead(reason) if reason.contains("deadline")));
    }

    #[test]
    fn deferral_past_the_deadline_kills_with_its_reason() {
        let now = at("2026-05-02T08:00:00Z");
        let defer = |hours| Outcome::Defer {
            until: now + Duration::hours(hours),
            note: "parked: domain a.example is dead".into(),
        };
        let deadline = Some(at("2026-05-02T12:00:00Z"));
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(defer(1), 3, 8, deadline, now, 0.5),
            Verdict::Defer(
                now + Duration::hours(1),
                "parked: domain a.example is dead".into()
            )
        );
        let late = policy.decide(defer(6), 3, 8, deadline, now, 0.5);
        assert!(
            matches!(&late, Verdict::Dead(reason) if reason.contains("a.example") && reason.contains("deadline")),
            "{late:?}"
        );
    }

    #[test]
    fn permanent_failure_kills_at_once() {
        let now = at("2026-05-02T08:00:00Z");
        let verdict =
            RetryPolicy::default().decide(Outcome::Failed("413".into()), 1, 8, None, now, 0.5);
        assert_eq!(verdict, Verdict::Dead("413".into()));
    }
}
