-- pgbench script: create one user, the same statement shape the server uses for
-- POST /api/v1/users/ (INSERT ... RETURNING the new row).
--
-- Needs, via pgbench -D (loadtest/bench.sh sets them):
--   base  run number (unique per run)
--   seq   0 at start; each client keeps its own copy and counts up once per transaction
-- id = base * 100000000 + (client_id + 1) * 1000000 + seq, sent as text: all digits, so it
-- matches [A-Za-z0-9_-]{1,64}; unique per client and transaction while a client stays under
-- 1,000,000 inserts and there are at most 99 clients. Block 0 (client_id + 1 = 0) is never
-- used here; it holds the rows select.sql reads.
\set seq :seq + 1
\set id :base * 100000000 + (:client_id + 1) * 1000000 + :seq
INSERT INTO users (id, first_name, last_name, email, promo_message)
VALUES (:id, 'Bench', 'Insert', 'bench@example.com', 'pgbench')
RETURNING id, first_name, last_name, email, deeplink, promo_message, created_at, updated_at;
