//! Truncated and mutated fixtures must give a result or an error, never a panic.

use super::parse_calendar;

const FIXTURES: &[&[u8]] = &[
    include_bytes!("../../../tests/data/ics/birthday_yearly_allday.ics"),
    include_bytes!("../../../tests/data/ics/escaped_text.ics"),
    include_bytes!("../../../tests/data/ics/floating_and_utc_lf_only.ics"),
    include_bytes!("../../../tests/data/ics/google_calendar_export.ics"),
    include_bytes!("../../../tests/data/ics/malformed_missing_end_vevent.ics"),
    include_bytes!("../../../tests/data/ics/nextcloud_lightning.ics"),
    include_bytes!("../../../tests/data/ics/outlook_exchange_windows_tz.ics"),
    include_bytes!("../../../tests/data/ics/override_moved_day.ics"),
];

/// A small deterministic generator (xorshift), so failures reproduce.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn truncated_fixtures_never_panic() {
    for fixture in FIXTURES {
        for cut in (0..fixture.len()).step_by(7) {
            let _ = parse_calendar(&fixture[..cut]);
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    const INTERESTING: &[u8] = b":;,=\"\\\r\n \tZT-+0123456789\xd0\xff";
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    for fixture in FIXTURES {
        for _ in 0..300 {
            let mut bytes = fixture.to_vec();
            for _ in 0..=random.below(8) {
                let at = random.below(bytes.len());
                match random.below(3) {
                    0 => bytes[at] = INTERESTING[random.below(INTERESTING.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, INTERESTING[random.below(INTERESTING.len())]),
                }
            }
            let _ = parse_calendar(&bytes);
        }
    }
}
