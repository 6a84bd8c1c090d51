-- pgbench script: point read of one user by primary key, the same statement shape the
-- server uses for GET /api/v1/users/:id (SELECT <columns> FROM users WHERE id = $1).
--
-- Needs, via pgbench -D (loadtest/bench.sh sets them and seeds the rows first):
--   base  run number; the seeded ids are (base * 100000000 + n)::text for n = 1..rows
--   rows  how many ids were seeded
-- The id is computed in pgbench and sent as ONE parameter (-M extended binds it as $1),
-- so Postgres sees exactly `WHERE id = $1`. Ids are all digits, which the users.id
-- CHECK ([A-Za-z0-9_-]{1,64}) allows; the run number makes them unique per run.
\set n random(1, :rows)
\set id :base * 100000000 + :n
SELECT id, first_name, last_name, email, deeplink, promo_message, created_at, updated_at
  FROM users WHERE id = :id;
