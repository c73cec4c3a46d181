//! The availability program: one crepe Datalog program over the facts of one request.
//!
//! crepe defines its runtime and relation structs in the enclosing module, so this module
//! contains only the program and the one function that runs it. Nothing generated leaves it.

use crepe::crepe;

use super::{
    Assessment, BusyInterval, BusySource, Decision, Facts, Origin, Reason, RequestKind, Verdict,
};

crepe! {
    @input
    struct Now(i64);
    // occurrence, start, end, origin, trusted
    @input
    struct Occurrence(u32, i64, i64, Origin, bool);
    @input
    struct Cancelled(u32);
    @input
    struct Capacity(u32, i64);
    @input
    struct SeatsTaken(u32, i64);
    @input
    struct SeatsHeld(u32, i64);
    // occurrence, seconds before, seconds after
    @input
    struct Buffer(u32, i64, i64);
    @input
    struct BookingOpens(u32, i64);
    @input
    struct BookingCloses(u32, i64);
    @input
    struct Booked(u32);
    // block id, start, end
    @input
    struct BusyBlock(u32, i64, i64);
    // occurrence, seats, kind
    @input
    struct Request(u32, i64, RequestKind);
    @input
    struct WaitlistOpen(u32);
    @input
    struct HoldLapsed(u32);

    @output
    struct Busy(i64, i64, BusySource);
    @output
    struct Conflict(u32, BusySource);
    @output
    struct Full(u32);
    @output
    struct Outcome(u32, Verdict, Reason);

    // source, start, end, buffer before, buffer after
    struct Span(BusySource, i64, i64, i64, i64);
    struct SeatsInUse(u32, i64);
    struct Overflow(u32);
    struct Refusal(u32, Reason);
    struct Refused(u32);

    // A live booking keeps the person busy for its occurrence; a busy block has no buffers.
    // A remote occurrence the person joined counts only while its server is trusted: a server
    // that is not trusted cannot block local bookings by moving its events onto them.
    Span(BusySource::Booking(o), s, e, b, a) <-
        Booked(o),
        Occurrence(o, s, e, _, true),
        Buffer(o, b, a);
    Span(BusySource::Block(id), s, e, 0, 0) <- BusyBlock(id, s, e);

    // The person is busy over each span widened by its buffers.
    Busy(s - b, e + a, src) <- Span(src, s, e, b, a);

    // A request conflicts with a span when they overlap after keeping the larger of the two
    // buffers that face each other free between them.
    Conflict(c, src) <-
        Request(c, _, _),
        Occurrence(c, cs, ce, _, _),
        Buffer(c, cb, ca),
        Span(src, s, e, b, a),
        (src != BusySource::Booking(c)),
        let gap_before = cb.max(a),
        let gap_after = ca.max(b),
        (s < ce + gap_after && cs - gap_before < e);

    // Seats in use are those taken plus those held by live holds.
    SeatsInUse(o, taken + held) <- SeatsTaken(o, taken), SeatsHeld(o, held);
    Full(o) <- Capacity(o, cap), SeatsInUse(o, used), (used >= cap);
    Overflow(c) <- Request(c, n, _), Capacity(c, cap), SeatsInUse(c, used), (used + n > cap);

    // Reasons to refuse a request outright.
    Refusal(c, Reason::OccurrenceCancelled) <- Request(c, _, _), Cancelled(c);
    Refusal(c, Reason::UntrustedOrigin) <- Request(c, _, _), Occurrence(c, _, _, _, false);
    Refusal(c, Reason::HoldExpired) <-
        Request(c, _, k),
        (k == RequestKind::Confirm),
        HoldLapsed(c);

    // The booking window applies to new requests; a live hold or a waitlist place was
    // granted while it was open.
    Refusal(c, Reason::BookingNotOpen) <-
        Request(c, _, k),
        (k == RequestKind::Book || k == RequestKind::Hold),
        BookingOpens(c, opens),
        Now(t),
        (t < opens);
    Refusal(c, Reason::BookingClosed) <-
        Request(c, _, k),
        (k == RequestKind::Book || k == RequestKind::Hold),
        BookingCloses(c, closes),
        Now(t),
        (t >= closes);

    // Clashes with the person's own calendar.
    Refusal(c, Reason::AlreadyBooked) <- Request(c, _, _), Booked(c);
    Refusal(c, Reason::OverlapsBooking) <-
        Conflict(c, src),
        (matches!(src, BusySource::Booking(_)));
    Refusal(c, Reason::OverlapsBusyBlock) <-
        Conflict(c, src),
        (matches!(src, BusySource::Block(_)));
    Refused(c) <- Refusal(c, _);

    // Verdicts: every refusal gives one, the caller keeps the highest-priority reason.
    Outcome(c, v, r) <- Refusal(c, r), let v = r.refusal_verdict();
    Outcome(c, Verdict::Waitlisted, Reason::CapacityReached) <-
        Overflow(c),
        !Refused(c),
        WaitlistOpen(c);
    Outcome(c, Verdict::Full, Reason::CapacityReached) <-
        Overflow(c),
        !Refused(c),
        !WaitlistOpen(c);
    Outcome(c, Verdict::Held, Reason::HoldPlaced) <-
        Request(c, _, k),
        (k == RequestKind::Hold),
        !Refused(c),
        !Overflow(c);
    Outcome(c, Verdict::Booked, Reason::SeatsAvailable) <-
        Request(c, _, k),
        (k != RequestKind::Hold),
        !Refused(c),
        !Overflow(c);
}

/// Runs the rules over `facts` and returns what they derive, sorted.
pub fn evaluate(facts: &Facts) -> Assessment {
    let mut runtime = Crepe::new();
    runtime.extend([Now(facts.now)]);
    for (index, occurrence) in facts.occurrences.iter().enumerate() {
        add_occurrence(&mut runtime, index as u32, occurrence);
    }
    runtime.extend(facts.booked.iter().map(|&index| Booked(index)));
    runtime.extend(
        facts
            .busy_blocks
            .iter()
            .map(|block| BusyBlock(block.id, block.start, block.end)),
    );
    if let Some(request) = facts.request {
        runtime.extend([Request(request.occurrence, request.seats, request.kind)]);
        if request.waitlist {
            runtime.extend([WaitlistOpen(request.occurrence)]);
        }
        if request.hold_lapsed {
            runtime.extend([HoldLapsed(request.occurrence)]);
        }
    }

    let (busy, conflicts, full, outcomes) = runtime.run();
    assessment(busy, conflicts, full, outcomes)
}

fn add_occurrence(runtime: &mut Crepe, index: u32, occurrence: &super::OccurrenceFact) {
    runtime.extend([Occurrence(
        index,
        occurrence.start,
        occurrence.end,
        occurrence.origin,
        occurrence.trusted,
    )]);
    runtime.extend([SeatsTaken(index, occurrence.seats_taken)]);
    runtime.extend([SeatsHeld(index, occurrence.seats_held)]);
    runtime.extend([Buffer(
        index,
        occurrence.buffer_before,
        occurrence.buffer_after,
    )]);
    if occurrence.cancelled {
        runtime.extend([Cancelled(index)]);
    }
    if let Some(capacity) = occurrence.capacity {
        runtime.extend([Capacity(index, capacity)]);
    }
    if let Some(opens) = occurrence.opens_at {
        runtime.extend([BookingOpens(index, opens)]);
    }
    if let Some(closes) = occurrence.closes_at {
        runtime.extend([BookingCloses(index, closes)]);
    }
}

fn assessment(
    busy: impl IntoIterator<Item = Busy>,
    conflicts: impl IntoIterator<Item = Conflict>,
    full: impl IntoIterator<Item = Full>,
    outcomes: impl IntoIterator<Item = Outcome>,
) -> Assessment {
    let mut busy: Vec<BusyInterval> = busy
        .into_iter()
        .map(|Busy(start, end, source)| BusyInterval { start, end, source })
        .collect();
    busy.sort_unstable();
    let mut conflicts: Vec<BusySource> = conflicts.into_iter().map(|c| c.1).collect();
    conflicts.sort_unstable();
    let mut full: Vec<u32> = full.into_iter().map(|f| f.0).collect();
    full.sort_unstable();
    let mut outcomes: Vec<(Reason, Verdict)> = outcomes.into_iter().map(|o| (o.2, o.1)).collect();
    outcomes.sort_unstable();
    outcomes.dedup();
    let decision = outcomes.first().map(|&(_, verdict)| Decision {
        verdict,
        reasons: outcomes.iter().map(|&(reason, _)| reason).collect(),
    });
    Assessment {
        busy,
        conflicts,
        full,
        decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::{BusyBlockFact, OccurrenceFact, RequestFact};

    const HOUR: i64 = 3600;

    fn occurrence(start: i64, end: i64) -> OccurrenceFact {
        OccurrenceFact {
            start,
            end,
            origin: Origin::Local,
            trusted: true,
            cancelled: false,
            capacity: None,
            seats_taken: 0,
            seats_held: 0,
            buffer_before: 0,
            buffer_after: 0,
            opens_at: None,
            closes_at: None,
        }
    }

    fn book(occurrence: u32, seats: i64) -> RequestFact {
        RequestFact {
            occurrence,
            seats,
            kind: RequestKind::Book,
            waitlist: false,
            hold_lapsed: false,
        }
    }

    /// Facts with the requested occurrence at index 0 (10:00 to 11:00 in hours).
    fn request_on(candidate: OccurrenceFact, request: RequestFact) -> Facts {
        Facts {
            now: 0,
            occurrences: vec![candidate],
            booked: vec![],
            busy_blocks: vec![],
            request: Some(request),
        }
    }

    fn verdict(facts: &Facts) -> (Verdict, Vec<Reason>) {
        let decision = evaluate(facts).decision.expect("a request gets a decision");
        (decision.verdict, decision.reasons)
    }

    #[test]
    fn free_seat_is_booked() {
        let facts = request_on(occurrence(10 * HOUR, 11 * HOUR), book(0, 1));
        assert_eq!(
            verdict(&facts),
            (Verdict::Booked, vec![Reason::SeatsAvailable])
        );
    }

    #[test]
    fn busy_interval_includes_buffers() {
        let mut booked = occurrence(10 * HOUR, 11 * HOUR);
        booked.buffer_before = 600;
        booked.buffer_after = 900;
        let facts = Facts {
            occurrences: vec![booked],
            booked: vec![0],
            busy_blocks: vec![BusyBlockFact {
                id: 7,
                start: 20 * HOUR,
                end: 21 * HOUR,
            }],
            ..Facts::default()
        };
        let busy = evaluate(&facts).busy;
        assert_eq!(
            busy,
            [
                BusyInterval {
                    start: 10 * HOUR - 600,
                    end: 11 * HOUR + 900,
                    source: BusySource::Booking(0),
                },
                BusyInterval {
                    start: 20 * HOUR,
                    end: 21 * HOUR,
                    source: BusySource::Block(7),
                },
            ]
        );
    }

    #[test]
    fn overlap_with_booking_is_conflict() {
        let mut facts = request_on(occurrence(10 * HOUR, 11 * HOUR), book(0, 1));
        facts
            .occurrences
            .push(occurrence(10 * HOUR + 1800, 12 * HOUR));
        facts.booked.push(1);
        assert_eq!(
            verdict(&facts),
            (Verdict::Conflict, vec![Reason::OverlapsBooking])
        );
        assert_eq!(evaluate(&facts).conflicts, [BusySource::Booking(1)]);
    }

    #[test]
    fn touching_bookings_do_not_conflict() {
        let mut facts = request_on(occurrence(10 * HOUR, 11 * HOUR), book(0, 1));
        facts.occurrences.push(occurrence(11 * HOUR, 12 * HOUR));
        facts.booked.push(1);
        assert_eq!(verdict(&facts).0, Verdict::Booked);
    }

    #[test]
    fn larger_facing_buffer_decides_conflict() {
        // The booked occurrence ends at 11:00 and needs 30 minutes after it. The request
        // starts at 11:20 and needs 10 minutes before it, so the 30 minutes win.
        let mut candidate = occurrence(11 * HOUR + 1200, 12 * HOUR);
        candidate.buffer_before = 600;
        let mut facts = request_on(candidate, book(0, 1));
        let mut booked = occurrence(10 * HOUR, 11 * HOUR);
        booked.buffer_after = 1800;
        facts.occurrences.push(booked);
        facts.booked.push(1);
        assert_eq!(verdict(&facts).0, Verdict::Conflict);

        facts.occurrences[1].buffer_after = 900;
        assert_eq!(verdict(&facts).0, Verdict::Booked);
    }

    #[test]
    fn overlap_with_busy_block_is_conflict() {
        let mut facts = request_on(occurrence(10 * HOUR, 11 * HOUR), book(0, 1));
        facts.busy_blocks.push(BusyBlockFact {
            id: 3,
            start: 9 * HOUR,
            end: 10 * HOUR + 1,
        });
        assert_eq!(
            verdict(&facts),
            (Verdict::Conflict, vec![Reason::OverlapsBusyBlock])
        );
    }

    #[test]
    fn booking_the_same_occurrence_twice_is_conflict() {
        let mut facts = request_on(occurrence(10 * HOUR, 11 * HOUR), book(0, 1));
        facts.booked.push(0);
        assert_eq!(
            verdict(&facts),
            (Verdict::Conflict, vec![Reason::AlreadyBooked])
        );
    }

    #[test]
    fn full_occurrence_is_derived() {
        let mut first = occurrence(10 * HOUR, 11 * HOUR);
        first.capacity = Some(3);
        first.seats_taken = 2;
        first.seats_held = 1;
        let mut second = first.clone();
        second.seats_held = 0;
        let facts = Facts {
            occurrences: vec![first, second],
            ..Facts::default()
        };
        assert_eq!(evaluate(&facts).full, [0]);
    }

    #[test]
    fn group_larger_than_seats_left_is_full() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.capacity = Some(10);
        candidate.seats_taken = 8;
        let facts = request_on(candidate, book(0, 3));
        assert_eq!(
            verdict(&facts),
            (Verdict::Full, vec![Reason::CapacityReached])
        );
    }

    #[test]
    fn live_holds_count_against_capacity() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.capacity = Some(2);
        candidate.seats_taken = 1;
        candidate.seats_held = 1;
        let facts = request_on(candidate, book(0, 1));
        assert_eq!(verdict(&facts).0, Verdict::Full);
    }

    #[test]
    fn overflow_with_waitlist_is_waitlisted() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.capacity = Some(1);
        candidate.seats_taken = 1;
        let mut request = book(0, 1);
        request.waitlist = true;
        let facts = request_on(candidate, request);
        assert_eq!(
            verdict(&facts),
            (Verdict::Waitlisted, vec![Reason::CapacityReached])
        );
    }

    #[test]
    fn hold_request_is_held() {
        let mut request = book(0, 2);
        request.kind = RequestKind::Hold;
        let facts = request_on(occurrence(10 * HOUR, 11 * HOUR), request);
        assert_eq!(verdict(&facts), (Verdict::Held, vec![Reason::HoldPlaced]));
    }

    #[test]
    fn confirming_lapsed_hold_is_rejected() {
        let mut request = book(0, 1);
        request.kind = RequestKind::Confirm;
        request.hold_lapsed = true;
        let facts = request_on(occurrence(10 * HOUR, 11 * HOUR), request);
        assert_eq!(
            verdict(&facts),
            (Verdict::Rejected, vec![Reason::HoldExpired])
        );
    }

    #[test]
    fn cancelled_occurrence_is_rejected() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.cancelled = true;
        candidate.capacity = Some(0);
        let facts = request_on(candidate, book(0, 1));
        // Cancellation outranks the capacity problem, and both are reported.
        assert_eq!(
            verdict(&facts),
            (Verdict::Rejected, vec![Reason::OccurrenceCancelled])
        );
    }

    #[test]
    fn untrusted_origin_is_rejected() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.origin = Origin::Remote(4);
        candidate.trusted = false;
        let facts = request_on(candidate, book(0, 1));
        assert_eq!(
            verdict(&facts),
            (Verdict::Rejected, vec![Reason::UntrustedOrigin])
        );
    }

    #[test]
    fn booking_window_bounds_new_requests_only() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.opens_at = Some(5 * HOUR);
        candidate.closes_at = Some(9 * HOUR);
        let mut facts = request_on(candidate, book(0, 1));
        facts.now = 4 * HOUR;
        assert_eq!(verdict(&facts).1, [Reason::BookingNotOpen]);
        facts.now = 9 * HOUR;
        assert_eq!(verdict(&facts).1, [Reason::BookingClosed]);
        facts.now = 5 * HOUR;
        assert_eq!(verdict(&facts).0, Verdict::Booked);

        facts.now = 9 * HOUR;
        if let Some(request) = facts.request.as_mut() {
            request.kind = RequestKind::Promote;
        }
        assert_eq!(verdict(&facts).0, Verdict::Booked);
    }

    #[test]
    fn all_reasons_are_listed_in_priority_order() {
        let mut candidate = occurrence(10 * HOUR, 11 * HOUR);
        candidate.closes_at = Some(0);
        let mut facts = request_on(candidate, book(0, 1));
        facts.busy_blocks.push(BusyBlockFact {
            id: 1,
            start: 10 * HOUR,
            end: 11 * HOUR,
        });
        assert_eq!(
            verdict(&facts),
            (
                Verdict::Rejected,
                vec![Reason::BookingClosed, Reason::OverlapsBusyBlock]
            )
        );
    }

    #[test]
    fn identical_facts_give_identical_output() {
        let mut facts = request_on(occurrence(10 * HOUR, 11 * HOUR), book(0, 1));
        for i in 1..50_u32 {
            facts
                .occurrences
                .push(occurrence(i64::from(i) * HOUR, i64::from(i) * HOUR + 1800));
            facts.booked.push(i);
        }
        let first = serde_json::to_string(&evaluate(&facts)).expect("serializes");
        let second = serde_json::to_string(&evaluate(&facts)).expect("serializes");
        assert_eq!(first, second);
    }
}
