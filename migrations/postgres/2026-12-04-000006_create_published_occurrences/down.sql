DROP INDEX remote_occurrences_object;
DELETE FROM remote_occurrences WHERE deleted;
ALTER TABLE remote_occurrences DROP CONSTRAINT remote_occurrences_recurrence;
DELETE FROM remote_occurrences a USING remote_occurrences b
    WHERE a.remote_event_id = b.remote_event_id AND a.start_at = b.start_at AND a.id > b.id;
ALTER TABLE remote_occurrences
    ADD CONSTRAINT remote_occurrences_remote_event_id_start_at_key
    UNIQUE (remote_event_id, start_at);
ALTER TABLE remote_occurrences DROP COLUMN deleted;
ALTER TABLE remote_occurrences DROP COLUMN object_updated;
ALTER TABLE remote_occurrences DROP COLUMN remaining_capacity;
ALTER TABLE remote_occurrences DROP COLUMN status;
ALTER TABLE remote_occurrences DROP COLUMN object_id;
ALTER TABLE remote_occurrences DROP COLUMN recurrence_id;

DROP INDEX remote_events_series;
ALTER TABLE remote_events DROP COLUMN recurrence_id;
ALTER TABLE remote_events DROP COLUMN series_object_id;

DROP TABLE published_occurrences;
