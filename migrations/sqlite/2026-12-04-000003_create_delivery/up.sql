-- The delivery queue and what notifications need: people, their push subscriptions, the
-- calendars they follow and their reminders. Instants are naive UTC TIMESTAMP values.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    run_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    deadline TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_finished ON jobs (finished_at);

CREATE TABLE people (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT,
    channels TEXT NOT NULL,
    reminder_offsets TEXT NOT NULL,
    digest TEXT NOT NULL CHECK (digest IN ('off', 'daily', 'weekly')),
    digest_hour INTEGER NOT NULL CHECK (digest_hour BETWEEN 0 AND 23),
    zone TEXT NOT NULL,
    unsubscribe_token TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE push_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person TEXT NOT NULL,
    endpoint TEXT NOT NULL UNIQUE,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX push_subscriptions_person ON push_subscriptions (person);

CREATE TABLE calendar_follows (
    person TEXT NOT NULL,
    calendar_id BIGINT NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (person, calendar_id)
);

-- One row per (occurrence, person, channel, offset). occurrence_key is the occurrence's
-- recurrence id as RFC 3339 UTC, or 'single' for a one-off event.
CREATE TABLE reminders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BIGINT NOT NULL,
    occurrence_key TEXT NOT NULL,
    person TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('push', 'email')),
    offset_minutes INTEGER NOT NULL,
    job_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (event_id, occurrence_key, person, channel, offset_minutes)
);

CREATE INDEX reminders_person ON reminders (person);
