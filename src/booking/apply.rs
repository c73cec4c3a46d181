//! The booking function: every change to an occurrence's bookings runs through [`apply`].
//!
//! One call is one transaction over one occurrence. It locks the occurrence's capacity row,
//! which is created on first use, and marks lapsed holds expired. Then it locks the rows of
//! every person involved, sorted and after the capacity row, and loads their availability
//! facts. Finally it decides each command in arrival order with the availability rules,
//! appends ledger entries and updates the projection. Commands see the effects of the commands before them, so a batch of waiting
//! requests decides exactly as the same requests would one at a time.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::announce;
use super::idempotency::{self, Claim, StoredResponse};
use super::ledger::{self, EntryKind, NewEntry};
use super::live::{self, LiveChange};
use super::occurrence::{self, Bookable};
use super::store::{self, CapacityRow};
use super::{
    BookRequest, Booking, BookingState, Command, Error, OccurrenceKey, Outcome, SeatCount,
};
use crate::availability::facts::{self, EventSettings, PersonBooking, PersonFacts, Target};
use crate::availability::{Decision, Reason, RequestFact, RequestKind, Verdict, evaluate};
use crate::calendar::time::Window;
use crate::db::{AnyConnection, write_transaction};

/// Waitlisted requests considered for promotion in one transaction.
const WAITLIST_SCAN: i64 = 200;

/// Result of one command.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per request; boxing would only add an allocation"
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Decided now.
    Decided(Outcome),
    /// The idempotency key was seen before; this is the stored response.
    Replayed(StoredResponse),
}

/// Runs `commands` against one occurrence in one transaction and returns one result per
/// command, in order. The outer error means the transaction failed and nothing was written.
pub fn apply(
    conn: &mut AnyConnection,
    key: OccurrenceKey,
    commands: &[Command],
    now: DateTime<Utc>,
) -> Result<Vec<Result<Answer, Error>>, Error> {
    write_transaction(conn, |conn| {
        let bookable = match occurrence::find(conn, key) {
            Ok(found) => found,
            Err(Error::EventNotFound(id)) => {
                return Ok(commands
                    .iter()
                    .map(|_| Err(Error::EventNotFound(id)))
                    .collect());
            }
            Err(Error::OccurrenceNotFound {
                event_id,
                recurrence_id,
            }) => {
                let missing = || Error::OccurrenceNotFound {
                    event_id,
                    recurrence_id,
                };
                return Ok(commands.iter().map(|_| Err(missing())).collect());
            }
            Err(other) => return Err(other),
        };
        let row = store::lock_capacity_row(conn, key, now)?;
        let mut run = Run::start(conn, key, bookable, row, commands, now)?;
        let answers = commands
            .iter()
            .map(|command| run.command(conn, command))
            .collect::<Result<Vec<_>, Error>>()?;
        run.finish(conn)?;
        Ok(answers)
    })
}

/// The state of one transaction: the locked capacity row and what is known about the people
/// involved, updated as commands are decided.
struct Run {
    key: OccurrenceKey,
    bookable: Bookable,
    row: CapacityRow,
    now: DateTime<Utc>,
    settings: HashMap<i64, EventSettings>,
    people: HashMap<String, PersonFacts>,
    /// Seats held by live holds.
    seats_held: i64,
    /// Waitlisted requests, oldest first, that promotion may still move.
    waiting: Vec<Booking>,
    /// Bookings named by cancel and confirm commands, loaded after the lock.
    named: HashMap<i64, Booking>,
    replays: HashMap<usize, Result<StoredResponse, Error>>,
    next_command: usize,
    entries: Vec<NewEntry>,
    changes: Vec<LiveChange>,
    responses: Vec<(Claim, StoredResponse)>,
    /// Promotions decided but not yet written to the projection.
    pending_promotions: Vec<Booking>,
    /// Waitlisted requests the last promotion pass skipped because their person is busy.
    skipped: std::collections::HashSet<i64>,
    /// Capacity and seats taken when the transaction started, to tell whether the seats left
    /// that peers see changed.
    seats_at_start: (Option<i64>, i32),
}

impl Run {
    fn start(
        conn: &mut AnyConnection,
        key: OccurrenceKey,
        bookable: Bookable,
        row: CapacityRow,
        commands: &[Command],
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        let mut run = Run {
            key,
            bookable,
            row,
            now,
            settings: HashMap::new(),
            people: HashMap::new(),
            seats_held: 0,
            waiting: Vec::new(),
            named: HashMap::new(),
            replays: HashMap::new(),
            next_command: 0,
            entries: Vec::new(),
            changes: Vec::new(),
            responses: Vec::new(),
            pending_promotions: Vec::new(),
            skipped: std::collections::HashSet::new(),
            seats_at_start: (None, 0),
        };
        run.seats_at_start = (run.capacity(), run.row.seats_taken);
        run.expire_lapsed_holds(conn)?;
        run.look_up_keys(conn, commands)?;
        for command in commands {
            if let Command::Cancel { booking_id } | Command::Confirm { booking_id, .. } = command
                && let Some(booking) = store::find_booking(conn, *booking_id)?
                && booking.capacity_id == run.row.id
            {
                run.named.insert(booking.id, booking);
            }
        }
        run.waiting =
            store::bookings_in_state(conn, run.row.id, BookingState::Waitlisted, WAITLIST_SCAN)?;
        run.load_people(conn, commands)?;
        run.promote_waitlist();
        Ok(run)
    }

    /// Counts the seats of live holds and marks lapsed holds expired. Correctness does not
    /// depend on the marking because lapsed holds are not counted, but it lets the person
    /// book again.
    fn expire_lapsed_holds(&mut self, conn: &mut AnyConnection) -> Result<(), Error> {
        let held = store::bookings_in_state(conn, self.row.id, BookingState::Held, i64::MAX)?;
        for mut booking in held {
            if booking.hold_expires_at.is_some_and(|t| t > self.now) {
                self.seats_held += i64::from(booking.seats);
                continue;
            }
            booking.state = BookingState::Expired;
            store::set_booking_state(conn, &booking, self.now)?;
            self.entries.push(entry(&booking, EntryKind::Expired, None));
        }
        Ok(())
    }

    /// Finds the stored responses of commands whose idempotency key was used before.
    fn look_up_keys(
        &mut self,
        conn: &mut AnyConnection,
        commands: &[Command],
    ) -> Result<(), Error> {
        let claimed: Vec<(usize, &Claim)> = commands
            .iter()
            .enumerate()
            .filter_map(|(index, command)| {
                let claim = match command {
                    Command::Book(request) => request.idempotency.as_ref(),
                    Command::Confirm { idempotency, .. } => idempotency.as_ref(),
                    Command::Cancel { .. } | Command::SetCapacity { .. } => None,
                };
                claim.map(|claim| (index, claim))
            })
            .collect();
        let claims: Vec<&Claim> = claimed.iter().map(|(_, claim)| *claim).collect();
        let found = idempotency::lookup_many(conn, &claims)?;
        for ((index, _), result) in claimed.into_iter().zip(found) {
            match result {
                Ok(Some(stored)) => {
                    self.replays.insert(index, Ok(stored));
                }
                Ok(None) => {}
                Err(error) => {
                    self.replays.insert(index, Err(error));
                }
            }
        }
        Ok(())
    }

    /// Locks every person the commands and the waitlist involve, then loads their facts.
    fn load_people(&mut self, conn: &mut AnyConnection, commands: &[Command]) -> Result<(), Error> {
        let mut attendees: Vec<String> = commands
            .iter()
            .filter_map(|command| match command {
                Command::Book(request) => Some(request.attendee.clone()),
                _ => None,
            })
            .collect();
        attendees.extend(self.named.values().map(|b| b.attendee.clone()));
        attendees.extend(self.waiting.iter().map(|b| b.attendee.clone()));
        attendees.sort_unstable();
        attendees.dedup();
        let ids: Vec<&str> = attendees.iter().map(String::as_str).collect();
        store::lock_attendees(conn, &ids, self.now)?;

        let window = Window {
            from: self.bookable.occurrence.start,
            to: self
                .bookable
                .occurrence
                .end
                .max(self.bookable.occurrence.start),
        };
        self.people = facts::load_people(conn, &ids, window, self.now)?;
        let mut event_ids = facts::event_ids(self.people.values());
        event_ids.push(self.key.event_id);
        self.settings = facts::load_settings(conn, &event_ids)?;
        Ok(())
    }

    fn event_settings(&self) -> EventSettings {
        self.settings
            .get(&self.key.event_id)
            .copied()
            .unwrap_or_default()
    }

    fn capacity(&self) -> Option<i64> {
        self.row
            .capacity_override
            .or(self.bookable.event.event.capacity)
            .map(i64::from)
    }

    /// Seats wanted by waitlisted requests; new requests queue behind them.
    /// Requests skipped for a clash do not count: they cannot take the seats now, and
    /// counting them would keep the seats from everyone else.
    fn seats_waiting(&self) -> i64 {
        self.waiting
            .iter()
            .filter(|b| !self.skipped.contains(&b.id))
            .map(|b| i64::from(b.seats))
            .sum()
    }

    fn target(&self, extra_held: i64) -> Target {
        let occurrence = &self.bookable.occurrence;
        let mut fact = facts::local_occurrence(
            occurrence.start,
            occurrence.end,
            self.bookable.cancelled(),
            self.capacity(),
            &self.event_settings(),
        );
        fact.seats_taken = i64::from(self.row.seats_taken);
        fact.seats_held = self.seats_held + extra_held;
        Target {
            fact,
            capacity_id: Some(self.row.id),
        }
    }

    fn decide(
        &self,
        attendee: &str,
        request: RequestFact,
        extra_held: i64,
        exclude_booking: Option<i64>,
    ) -> Decision {
        let empty = PersonFacts::default();
        let person = self.people.get(attendee).unwrap_or(&empty);
        let target = self.target(extra_held);
        let facts = facts::facts_for(
            Some(&target),
            person,
            &self.settings,
            self.now,
            Some(request),
            exclude_booking,
        );
        evaluate(&facts).decision.unwrap_or(Decision {
            verdict: Verdict::Rejected,
            reasons: vec![],
        })
    }

    fn seat_count(&self) -> SeatCount {
        let capacity = self.capacity();
        let taken = i64::from(self.row.seats_taken);
        SeatCount {
            capacity,
            seats_taken: taken,
            seats_held: self.seats_held,
            seats_left: capacity.map(|c| (c - taken - self.seats_held).max(0)),
        }
    }

    fn command(
        &mut self,
        conn: &mut AnyConnection,
        command: &Command,
    ) -> Result<Result<Answer, Error>, Error> {
        let index = self.next_command;
        self.next_command += 1;
        if let Some(replay) = self.replays.remove(&index) {
            return Ok(replay.map(Answer::Replayed));
        }
        let outcome = match command {
            Command::Book(request) => self.book(conn, request)?,
            Command::Cancel { booking_id } => self.cancel(conn, *booking_id)?,
            Command::Confirm {
                booking_id,
                order_ref,
                idempotency,
            } => self.confirm(conn, *booking_id, order_ref, idempotency.as_ref())?,
            Command::SetCapacity { capacity } => self.set_capacity(*capacity),
        };
        Ok(outcome.map(Answer::Decided))
    }

    fn book(
        &mut self,
        conn: &mut AnyConnection,
        request: &BookRequest,
    ) -> Result<Result<Outcome, Error>, Error> {
        let kind = if request.hold_seconds.is_some() {
            RequestKind::Hold
        } else {
            RequestKind::Book
        };
        let fact = RequestFact {
            occurrence: 0,
            seats: request.seats,
            kind,
            waitlist: request.waitlist && self.event_settings().waitlist,
            hold_lapsed: false,
        };
        let decision = self.decide(&request.attendee, fact, self.seats_waiting(), None);
        let state = match decision.verdict {
            Verdict::Booked => BookingState::Booked,
            Verdict::Held => BookingState::Held,
            Verdict::Waitlisted => BookingState::Waitlisted,
            Verdict::Full | Verdict::Conflict | Verdict::Rejected | Verdict::Cancelled => {
                return Ok(Ok(self.outcome(decision, None, false, vec![])));
            }
        };
        let occurrence = &self.bookable.occurrence;
        let mut booking = Booking {
            id: 0,
            event_id: self.key.event_id,
            recurrence_id: self.key.recurrence_id,
            attendee: request.attendee.clone(),
            seats: request.seats as i32,
            state,
            // The times are copied for conflict checks. `follow::follow_event` updates them
            // when the organizer moves the occurrence.
            starts_at: occurrence.start,
            ends_at: occurrence.end,
            hold_expires_at: request
                .hold_seconds
                .map(|seconds| self.now + Duration::seconds(seconds)),
            order_ref: None,
            created_at: self.now,
            capacity_id: self.row.id,
        };
        booking.id = store::insert_booking(conn, &booking, self.now)?;
        let key = request.idempotency.as_ref().map(|c| c.key.clone());
        let kind = match state {
            BookingState::Booked => EntryKind::Booked,
            BookingState::Held => EntryKind::Held,
            _ => EntryKind::Waitlisted,
        };
        self.entries.push(NewEntry {
            idempotency_key: key,
            ..entry(&booking, kind, None)
        });
        match state {
            BookingState::Booked => {
                self.row.seats_taken += booking.seats;
                self.changes.push(LiveChange::Started(booking.clone()));
                self.remember(&booking);
            }
            BookingState::Held => {
                self.seats_held += i64::from(booking.seats);
                self.remember(&booking);
            }
            _ => self.waiting.push(booking.clone()),
        }
        let outcome = self.outcome(decision, Some(booking), true, vec![]);
        self.store_response(request.idempotency.as_ref(), &outcome)?;
        Ok(Ok(outcome))
    }

    fn cancel(
        &mut self,
        conn: &mut AnyConnection,
        booking_id: i64,
    ) -> Result<Result<Outcome, Error>, Error> {
        let Some(mut booking) = self.named.get(&booking_id).cloned() else {
            return Ok(Err(Error::BookingNotFound(booking_id)));
        };
        let was = booking.state;
        let reason = Decision {
            verdict: Verdict::Cancelled,
            reasons: vec![Reason::CancelledByCaller],
        };
        if matches!(was, BookingState::Cancelled | BookingState::Expired) {
            return Ok(Ok(self.outcome(reason, Some(booking), false, vec![])));
        }
        booking.state = BookingState::Cancelled;
        store::set_booking_state(conn, &booking, self.now)?;
        self.entries
            .push(entry(&booking, EntryKind::Cancelled, None));
        match was {
            BookingState::Booked => {
                self.row.seats_taken -= booking.seats;
                self.changes.push(LiveChange::Ended(booking.clone()));
            }
            BookingState::Held if booking.hold_expires_at.is_some_and(|t| t > self.now) => {
                self.seats_held -= i64::from(booking.seats);
            }
            _ => {}
        }
        self.waiting.retain(|w| w.id != booking.id);
        self.forget(&booking);
        self.named.insert(booking.id, booking.clone());
        let promoted = self.promote_waitlist_now(conn)?;
        Ok(Ok(self.outcome(reason, Some(booking), true, promoted)))
    }

    fn confirm(
        &mut self,
        conn: &mut AnyConnection,
        booking_id: i64,
        order_ref: &str,
        claim: Option<&Claim>,
    ) -> Result<Result<Outcome, Error>, Error> {
        let Some(mut booking) = self.named.get(&booking_id).cloned() else {
            return Ok(Err(Error::BookingNotFound(booking_id)));
        };
        if !matches!(booking.state, BookingState::Held | BookingState::Expired) {
            return Ok(Err(Error::NotAHold {
                id: booking.id,
                state: booking.state.as_str(),
            }));
        }
        let live = booking.state == BookingState::Held
            && booking.hold_expires_at.is_some_and(|t| t > self.now);
        let held_by_it = if live { i64::from(booking.seats) } else { 0 };
        let fact = RequestFact {
            occurrence: 0,
            seats: i64::from(booking.seats),
            kind: RequestKind::Confirm,
            waitlist: false,
            hold_lapsed: !live,
        };
        let decision = self.decide(&booking.attendee, fact, -held_by_it, Some(booking.id));
        if decision.verdict != Verdict::Booked {
            return Ok(Ok(self.outcome(decision, Some(booking), false, vec![])));
        }
        booking.state = BookingState::Booked;
        booking.order_ref = Some(order_ref.to_owned());
        store::set_booking_state(conn, &booking, self.now)?;
        self.entries.push(NewEntry {
            idempotency_key: claim.map(|c| c.key.clone()),
            ..entry(&booking, EntryKind::Confirmed, Some(order_ref))
        });
        self.seats_held -= held_by_it;
        self.row.seats_taken += booking.seats;
        self.changes.push(LiveChange::Started(booking.clone()));
        self.named.insert(booking.id, booking.clone());
        let outcome = self.outcome(decision, Some(booking), true, vec![]);
        self.store_response(claim, &outcome)?;
        Ok(Ok(outcome))
    }

    fn set_capacity(&mut self, capacity: Option<i64>) -> Result<Outcome, Error> {
        let taken = i64::from(self.row.seats_taken);
        if let Some(requested) = capacity.filter(|&c| c < taken) {
            return Err(Error::CapacityBelowTaken { requested, taken });
        }
        self.row.capacity_override = capacity.map(|c| c as i32);
        let promoted = self.promote_waitlist();
        let decision = Decision {
            verdict: Verdict::Booked,
            reasons: vec![Reason::CapacityChanged],
        };
        Ok(self.outcome(decision, None, true, promoted))
    }

    /// Moves waitlisted requests onto the occurrence in arrival order while they fit. The
    /// first that does not fit stops the pass, so a large group is not overtaken. A request
    /// that its person can no longer attend (a clash) is skipped and keeps its place.
    fn promote_waitlist(&mut self) -> Vec<i64> {
        let mut promoted = Vec::new();
        self.skipped.clear();
        let mut index = 0;
        while index < self.waiting.len() {
            let candidate = self.waiting[index].clone();
            let fact = RequestFact {
                occurrence: 0,
                seats: i64::from(candidate.seats),
                kind: RequestKind::Promote,
                waitlist: false,
                hold_lapsed: false,
            };
            let decision = self.decide(&candidate.attendee, fact, 0, Some(candidate.id));
            match decision.verdict {
                Verdict::Booked => {
                    let mut booking = self.waiting.remove(index);
                    booking.state = BookingState::Booked;
                    self.row.seats_taken += booking.seats;
                    self.entries
                        .push(entry(&booking, EntryKind::Promoted, None));
                    self.changes.push(LiveChange::Started(booking.clone()));
                    self.remember(&booking);
                    self.pending_promotions.push(booking.clone());
                    promoted.push(booking.id);
                }
                Verdict::Full => break,
                _ => {
                    self.skipped.insert(candidate.id);
                    index += 1;
                }
            }
        }
        promoted
    }

    fn promote_waitlist_now(&mut self, conn: &mut AnyConnection) -> Result<Vec<i64>, Error> {
        let promoted = self.promote_waitlist();
        self.write_promotions(conn)?;
        Ok(promoted)
    }

    fn write_promotions(&mut self, conn: &mut AnyConnection) -> Result<(), Error> {
        for booking in std::mem::take(&mut self.pending_promotions) {
            store::set_booking_state(conn, &booking, self.now)?;
        }
        Ok(())
    }

    /// Adds a new live booking or hold to its person's facts, so later commands see it.
    fn remember(&mut self, booking: &Booking) {
        let person = self.people.entry(booking.attendee.clone()).or_default();
        person.bookings.retain(|b| b.booking_id != booking.id);
        person.bookings.push(PersonBooking {
            booking_id: booking.id,
            capacity_id: booking.capacity_id,
            event_id: booking.event_id,
            start: booking.starts_at,
            end: booking.ends_at,
        });
    }

    fn forget(&mut self, booking: &Booking) {
        if let Some(person) = self.people.get_mut(&booking.attendee) {
            person.bookings.retain(|b| b.booking_id != booking.id);
        }
    }

    fn outcome(
        &self,
        decision: Decision,
        booking: Option<Booking>,
        changed: bool,
        promoted: Vec<i64>,
    ) -> Outcome {
        Outcome {
            verdict: decision.verdict,
            reasons: decision.reasons,
            booking,
            seats: self.seat_count(),
            changed,
            promoted,
        }
    }

    fn store_response(&mut self, claim: Option<&Claim>, outcome: &Outcome) -> Result<(), Error> {
        let Some(claim) = claim else { return Ok(()) };
        let body = serde_json::to_string(outcome)
            .map_err(|e| Error::Corrupt(format!("cannot encode outcome: {e}")))?;
        let status = if outcome.verdict == Verdict::Waitlisted {
            202
        } else {
            claim.success_status
        };
        self.responses
            .push((claim.clone(), StoredResponse { status, body }));
        Ok(())
    }

    /// Writes what the commands decided: promotions, ledger entries, stored responses, the
    /// capacity row and the live changes, and enqueues an Update for peers when the seats left
    /// changed.
    fn finish(mut self, conn: &mut AnyConnection) -> Result<(), Error> {
        self.write_promotions(conn)?;
        ledger::append(conn, &self.entries, self.now)?;
        let responses: Vec<(&Claim, StoredResponse)> = self
            .responses
            .iter()
            .map(|(claim, response)| (claim, response.clone()))
            .collect();
        idempotency::store(conn, &responses, self.now)?;
        // The stored capacity is the one the seats were checked against. When the organizer has
        // lowered it below the seats already taken, the taken count is stored instead, so the
        // CHECK (seats_taken <= capacity) is still met and no further seat is sold.
        let taken = i64::from(self.row.seats_taken);
        self.row.capacity = self.capacity().map(|c| c.max(taken) as i32);
        store::update_capacity_row(conn, &self.row, self.now)?;
        if (self.capacity(), self.row.seats_taken) != self.seats_at_start {
            announce::seats_changed(conn, self.key, self.now)?;
        }
        live::record(conn, &self.changes, self.now)
    }
}

fn entry(booking: &Booking, kind: EntryKind, order_ref: Option<&str>) -> NewEntry {
    NewEntry {
        booking_id: booking.id,
        capacity_id: booking.capacity_id,
        attendee: booking.attendee.clone(),
        kind,
        seats: booking.seats,
        idempotency_key: None,
        order_ref: order_ref.map(str::to_owned),
        hold_expires_at: booking.hold_expires_at,
    }
}
