//! The `rose-events` binary.

fn main() {}
