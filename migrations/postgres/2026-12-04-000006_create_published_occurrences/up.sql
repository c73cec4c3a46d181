-- Recurring events as peers see them: what we published per occurrence object, and the
-- occurrence objects peers send us for their series.

-- Each occurrence object we published (and the object of each one-off event), so that the next
-- publication sends exactly the difference: Create, Update or Delete. version counts the
-- activities sent about the object and makes their ids unique; fingerprint is the SHA-256 of
-- the object as sent, without `updated`. recurrence_id is NULL for a one-off event's object.
-- Rows of past occurrences are kept so that a version, and with it an activity id, is never
-- reused.
CREATE TABLE published_occurrences (
    id BIGSERIAL PRIMARY KEY,
    event_id BIGINT NOT NULL,
    recurrence_id TIMESTAMP,
    object_id TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    ends_at TIMESTAMP NOT NULL,
    deleted BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX published_occurrences_event ON published_occurrences (event_id);

-- An occurrence object that arrived before its series is stored as a remote event of its own
-- and names the series and its recurrence id, so that it can be folded into the series later.
ALTER TABLE remote_events ADD COLUMN series_object_id TEXT;
ALTER TABLE remote_events ADD COLUMN recurrence_id TIMESTAMP;

CREATE INDEX remote_events_series ON remote_events (series_object_id);

-- Remote occurrences become addressable by recurrence id (the original start), and carry what
-- an occurrence object from the origin changed: moved times, status, seats left. A row with
-- object_id set is an override and survives a re-expansion of its series; a deleted row is the
-- origin's Delete of that occurrence. Two occurrences may share a start once one is moved onto
-- the other, so uniqueness moves from the start to the recurrence id.
ALTER TABLE remote_occurrences ADD COLUMN recurrence_id TIMESTAMP;
ALTER TABLE remote_occurrences ADD COLUMN object_id TEXT;
ALTER TABLE remote_occurrences ADD COLUMN status TEXT
    CHECK (status IN ('confirmed', 'tentative', 'cancelled'));
ALTER TABLE remote_occurrences ADD COLUMN remaining_capacity INTEGER;
ALTER TABLE remote_occurrences ADD COLUMN object_updated TIMESTAMP;
ALTER TABLE remote_occurrences ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE remote_occurrences SET recurrence_id = start_at;

ALTER TABLE remote_occurrences DROP CONSTRAINT remote_occurrences_remote_event_id_start_at_key;
ALTER TABLE remote_occurrences
    ADD CONSTRAINT remote_occurrences_recurrence UNIQUE (remote_event_id, recurrence_id);

CREATE INDEX remote_occurrences_object ON remote_occurrences (object_id);
