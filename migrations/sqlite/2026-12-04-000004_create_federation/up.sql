-- Federation: our actors' keys, followers of our calendars, peers and their trust, remote
-- actors' keys, events merged from trusted peers, the outbox and seen inbox deliveries.
-- Instants are naive UTC TIMESTAMP values on both backends.

-- RSA keys of our own actors, made on first use. actor_key is 'instance', 'calendar:<id>' or
-- 'person:<person id>'.
CREATE TABLE actor_keys (
    actor_key TEXT PRIMARY KEY,
    public_key_pem TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Per-calendar federation settings; a calendar without a row uses the defaults.
CREATE TABLE calendar_federation (
    calendar_id BIGINT PRIMARY KEY REFERENCES calendars (id) ON DELETE CASCADE,
    manually_approves_followers BOOLEAN NOT NULL
);

-- Followers of a calendar, or of the instance actor when calendar_id is NULL (peers that follow
-- the instance receive every calendar's events).
CREATE TABLE followers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    calendar_id BIGINT REFERENCES calendars (id) ON DELETE CASCADE,
    actor_id TEXT NOT NULL,
    inbox TEXT NOT NULL,
    follow_activity_id TEXT NOT NULL,
    follow_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted')),
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX followers_calendar ON followers (calendar_id, actor_id);

-- Other servers, keyed by host (with the port when it is not the default one).
CREATE TABLE peers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('trusted', 'pending', 'blocked')),
    actor_id TEXT,
    inbox TEXT,
    follow_activity_id TEXT,
    follow_state TEXT CHECK (follow_state IN ('requested', 'accepted', 'rejected')),
    reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Public keys of remote actors, cached after a fetch.
CREATE TABLE remote_actors (
    actor_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    inbox TEXT NOT NULL,
    shared_inbox TEXT,
    fetched_at TIMESTAMP NOT NULL
);

-- Events received from peers. A deleted one keeps its row (deleted = true) so that a late,
-- older Create or Update cannot bring it back.
CREATE TABLE remote_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT,
    zone TEXT,
    start_at TIMESTAMP NOT NULL,
    end_at TIMESTAMP,
    location TEXT,
    place_json TEXT,
    online_url TEXT,
    capacity INTEGER,
    remaining_capacity INTEGER,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'tentative', 'cancelled')),
    rrule TEXT,
    object_updated TIMESTAMP NOT NULL,
    deleted BOOLEAN NOT NULL,
    object_json TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL
);

CREATE TABLE remote_occurrences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    remote_event_id BIGINT NOT NULL REFERENCES remote_events (id) ON DELETE CASCADE,
    start_at TIMESTAMP NOT NULL,
    end_at TIMESTAMP NOT NULL,
    UNIQUE (remote_event_id, start_at)
);

CREATE INDEX remote_occurrences_start ON remote_occurrences (start_at);

-- Every activity we emit, in the order we emitted it. recipients_json lists inbox URLs.
CREATE TABLE outbox_activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id TEXT NOT NULL UNIQUE,
    actor_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    public BOOLEAN NOT NULL,
    activity_json TEXT NOT NULL,
    recipients_json TEXT NOT NULL,
    published_at TIMESTAMP NOT NULL
);

CREATE INDEX outbox_activities_actor ON outbox_activities (actor_id, id);

-- Inbox deliveries already processed, by the SHA-256 of their body, so that a replay inside
-- the signature window has no second effect.
CREATE TABLE inbox_receipts (
    body_sha256 TEXT PRIMARY KEY,
    activity_id TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL
);
