-- Tables for the pgbench side of the booking benchmark: a capacity row per occurrence and an
-- append-only ledger, the minimum a booking writes.
DROP TABLE IF EXISTS pgbench_ledger;
DROP TABLE IF EXISTS pgbench_capacity;
CREATE TABLE pgbench_capacity (
    id INTEGER PRIMARY KEY,
    capacity INTEGER NOT NULL,
    seats_taken INTEGER NOT NULL DEFAULT 0 CHECK (seats_taken <= capacity)
);
CREATE TABLE pgbench_ledger (
    id BIGSERIAL PRIMARY KEY,
    capacity_id INTEGER NOT NULL,
    attendee TEXT NOT NULL,
    seats INTEGER NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
INSERT INTO pgbench_capacity (id, capacity) SELECT g, 1000000000 FROM generate_series(1, 1000) g;
