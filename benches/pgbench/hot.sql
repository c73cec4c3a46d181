-- One booking on the hot occurrence as a single statement: take a seat if one is left and
-- append the ledger entry, in one implicit transaction.
\set attendee random(1, 1000000000)
WITH taken AS (
    UPDATE pgbench_capacity SET seats_taken = seats_taken + 1
    WHERE id = 1 AND seats_taken < capacity
    RETURNING id
)
INSERT INTO pgbench_ledger (capacity_id, attendee, seats, recorded_at)
SELECT id, 'p' || :attendee, 1, now() FROM taken;
