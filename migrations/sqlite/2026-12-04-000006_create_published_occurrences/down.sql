CREATE TABLE remote_occurrences_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    remote_event_id BIGINT NOT NULL REFERENCES remote_events (id) ON DELETE CASCADE,
    start_at TIMESTAMP NOT NULL,
    end_at TIMESTAMP NOT NULL,
    UNIQUE (remote_event_id, start_at)
);

INSERT OR IGNORE INTO remote_occurrences_old (id, remote_event_id, start_at, end_at)
SELECT id, remote_event_id, start_at, end_at FROM remote_occurrences WHERE NOT deleted;

DROP TABLE remote_occurrences;
ALTER TABLE remote_occurrences_old RENAME TO remote_occurrences;
CREATE INDEX remote_occurrences_start ON remote_occurrences (start_at);

DROP INDEX remote_events_series;
ALTER TABLE remote_events DROP COLUMN recurrence_id;
ALTER TABLE remote_events DROP COLUMN series_object_id;

DROP TABLE published_occurrences;
