#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers in tests stop at the first broken expectation"
)]
//! Runs the RRULE conformance cases in `tests/data/rrule/cases.jsonl` through the `expand` line
//! format and scores the output with `tests/data/rrule/check.py` (needs `python3`).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rose_events::calendar::recurrence::expand_corpus_line;

const CASES: &str = "tests/data/rrule/cases.jsonl";
const CHECKER: &str = "tests/data/rrule/check.py";

/// Hostile cases must finish well inside this; it guards against hangs, not for speed.
const HOSTILE_TIME_BOUND: Duration = Duration::from_secs(10);

fn case_lines() -> std::io::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(CASES))?;
    let lines = data
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty());
    Ok(lines.map(<[u8]>::to_vec).collect())
}

#[test]
fn conformance_cases_all_pass_the_checker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut output = tempfile::NamedTempFile::new().expect("temp file can be created");
    let lines = case_lines().expect("cases file is readable");
    for line in &lines {
        writeln!(output, "{}", expand_corpus_line(line)).expect("temp file is writable");
    }
    output.flush().expect("temp file is writable");

    let result = Command::new("python3")
        .arg(root.join(CHECKER))
        .arg(output.path())
        .arg("--cases")
        .arg(root.join(CASES))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let summary = format!("{} passed, 0 failed", lines.len());

    assert!(
        result.status.success(),
        "checker failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout.trim_end().ends_with(&summary),
        "checker summary is not {summary:?}:\n{stdout}"
    );
}

#[test]
fn hostile_cases_finish_within_time_bound() {
    for line in case_lines()
        .expect("cases file is readable")
        .iter()
        .filter(|line| line.windows(16).any(|w| w == b"\"source\": \"host"))
    {
        let started = Instant::now();
        let result = expand_corpus_line(line);
        let elapsed = started.elapsed();

        assert!(
            !result.is_empty(),
            "no output line for {}",
            String::from_utf8_lossy(line)
        );
        assert!(
            elapsed < HOSTILE_TIME_BOUND,
            "took {elapsed:?}: {}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        );
    }
}

#[test]
fn malformed_lines_give_error_lines() {
    for line in [
        &b"not json"[..],
        b"{}",
        b"{\"id\": \"x\", \"dtstart\": 5}",
        &[0xff, 0xfe],
    ] {
        let result = expand_corpus_line(line);

        assert!(
            result.contains("\"error\""),
            "no error for {line:?}: {result}"
        );
    }
}
