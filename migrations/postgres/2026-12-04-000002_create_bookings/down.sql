DROP TABLE idempotency_keys;
DROP TABLE busy_blocks;
DROP TABLE ledger_entries;
DROP FUNCTION ledger_entries_append_only();
DROP TABLE bookings;
DROP TABLE occurrence_capacities;
DROP TABLE booking_settings;
DROP TABLE attendees;
