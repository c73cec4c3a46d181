-- Delivery health of each remote domain (host, with the port when it is not the default).
-- A row appears at the first failed delivery to the domain and goes back to healthy at the
-- next success. Instants are naive UTC TIMESTAMP values on both backends.
--
-- state: healthy, backing_off (failing; nothing is sent before next_attempt_at) or dead
-- (failing for longer than the threshold; one probe delivery at each next_attempt_at).
CREATE TABLE delivery_domains (
    domain TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('healthy', 'backing_off', 'dead')),
    consecutive_failures INTEGER NOT NULL,
    first_failure_at TIMESTAMP,
    last_failure_at TIMESTAMP,
    next_attempt_at TIMESTAMP,
    last_error TEXT,
    last_success_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);
