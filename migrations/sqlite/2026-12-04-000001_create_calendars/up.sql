-- Instants are naive UTC TIMESTAMP values on both backends; wall times are naive local values.
CREATE TABLE calendars (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    default_zone TEXT NOT NULL,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'unlisted')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    calendar_id BIGINT NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    location TEXT,
    place_json TEXT,
    online_url TEXT,
    capacity INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'tentative', 'cancelled')),
    start_wall TIMESTAMP NOT NULL,
    time_basis TEXT NOT NULL CHECK (time_basis IN ('zoned', 'utc', 'floating', 'all_day')),
    zone TEXT,
    length_days BIGINT NOT NULL,
    length_seconds BIGINT NOT NULL,
    rrule TEXT,
    rdates_json TEXT NOT NULL,
    exdates_json TEXT NOT NULL,
    span_start TIMESTAMP NOT NULL,
    span_end TIMESTAMP,
    sequence INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (calendar_id, uid)
);

CREATE INDEX events_span ON events (span_start, span_end);

CREATE TABLE event_overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    recurrence_id TIMESTAMP NOT NULL,
    start_wall TIMESTAMP,
    time_basis TEXT,
    zone TEXT,
    length_days BIGINT,
    length_seconds BIGINT,
    details_json TEXT,
    UNIQUE (event_id, recurrence_id)
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
