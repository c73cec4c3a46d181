-- Bookings: an append-only ledger plus the projection it feeds (capacity rows, bookings).
-- Instants are naive UTC TIMESTAMP values, as in the calendar tables. Event ids are not
-- foreign keys: the ledger outlives a deleted event.

-- One row per person who has booked, keyed by the caller's text id. Booking locks it after
-- the occurrence's capacity row, so one person's bookings are decided one at a time.
CREATE TABLE attendees (
    id TEXT PRIMARY KEY,
    created_at TIMESTAMP NOT NULL
);

-- Per-event booking rules; an event without a row uses the defaults.
CREATE TABLE booking_settings (
    event_id BIGINT PRIMARY KEY,
    buffer_before_seconds BIGINT NOT NULL DEFAULT 0
        CHECK (buffer_before_seconds BETWEEN 0 AND 86400),
    buffer_after_seconds BIGINT NOT NULL DEFAULT 0
        CHECK (buffer_after_seconds BETWEEN 0 AND 86400),
    opens_before_seconds BIGINT CHECK (opens_before_seconds BETWEEN 0 AND 31622400),
    closes_before_seconds BIGINT NOT NULL DEFAULT 0
        CHECK (closes_before_seconds BETWEEN -31622400 AND 31622400),
    waitlist BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TIMESTAMP NOT NULL
);

-- The capacity row of one occurrence, created on first use. Every write to an occurrence's
-- bookings locks it first. `capacity` is the limit in force at the last seat increase (NULL
-- means no limit); the CHECK is the second guard against overbooking.
CREATE TABLE occurrence_capacities (
    id BIGSERIAL PRIMARY KEY,
    event_id BIGINT NOT NULL,
    recurrence_id TIMESTAMP NOT NULL,
    capacity_override INTEGER CHECK (capacity_override IS NULL OR capacity_override >= 0),
    capacity INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    seats_taken INTEGER NOT NULL DEFAULT 0 CHECK (seats_taken >= 0),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (event_id, recurrence_id),
    CHECK (capacity IS NULL OR seats_taken <= capacity)
);

-- Current state of each booking, rebuilt from the ledger by `rose-events verify-ledger`.
CREATE TABLE bookings (
    id BIGSERIAL PRIMARY KEY,
    capacity_id BIGINT NOT NULL REFERENCES occurrence_capacities (id),
    event_id BIGINT NOT NULL,
    recurrence_id TIMESTAMP NOT NULL,
    attendee TEXT NOT NULL REFERENCES attendees (id),
    seats INTEGER NOT NULL CHECK (seats > 0),
    state TEXT NOT NULL CHECK (state IN ('held', 'booked', 'waitlisted', 'cancelled', 'expired')),
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP NOT NULL,
    hold_expires_at TIMESTAMP,
    order_ref TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- One live booking per person and occurrence.
CREATE UNIQUE INDEX bookings_one_live_per_attendee ON bookings (capacity_id, attendee)
    WHERE state IN ('held', 'booked', 'waitlisted');
CREATE INDEX bookings_attendee_start ON bookings (attendee, starts_at);
CREATE INDEX bookings_capacity_state ON bookings (capacity_id, state, id);

CREATE TABLE ledger_entries (
    id BIGSERIAL PRIMARY KEY,
    booking_id BIGINT NOT NULL,
    capacity_id BIGINT NOT NULL,
    attendee TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN
        ('booked', 'cancelled', 'held', 'confirmed', 'expired', 'waitlisted', 'promoted')),
    seats INTEGER NOT NULL CHECK (seats > 0),
    idempotency_key TEXT,
    order_ref TEXT,
    hold_expires_at TIMESTAMP,
    recorded_at TIMESTAMP NOT NULL
);

CREATE INDEX ledger_entries_booking ON ledger_entries (booking_id, id);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- Times a person is not available, besides their bookings.
CREATE TABLE busy_blocks (
    id BIGSERIAL PRIMARY KEY,
    attendee TEXT NOT NULL REFERENCES attendees (id),
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP NOT NULL,
    label TEXT,
    created_at TIMESTAMP NOT NULL,
    CHECK (starts_at < ends_at)
);

CREATE INDEX busy_blocks_attendee_start ON busy_blocks (attendee, starts_at);

-- Stored results of requests sent with an Idempotency-Key, per caller (token hash).
CREATE TABLE idempotency_keys (
    caller TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (caller, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
