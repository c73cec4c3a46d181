-- The same booking statement on one of 1,000 occurrences chosen at random.
\set occurrence random(1, 1000)
\set attendee random(1, 1000000000)
WITH taken AS (
    UPDATE pgbench_capacity SET seats_taken = seats_taken + 1
    WHERE id = :occurrence AND seats_taken < capacity
    RETURNING id
)
INSERT INTO pgbench_ledger (capacity_id, attendee, seats, recorded_at)
SELECT id, 'p' || :attendee, 1, now() FROM taken;
