-- The MD5 ring inside Postgres (DESIGN.md section 3), so anyone can compute a key's
-- shard in SQL: SELECT shardgate_shard_of('user123');  -- 2 with 5 shards x 1000 vnodes
--
-- Position = first 8 bytes of md5(key) as a big-endian unsigned 64-bit integer. Postgres
-- has no unsigned bigint, so we flip the top bit: (u XOR 2^63) read as signed sorts
-- exactly like u read as unsigned, which is all the ring needs.
CREATE OR REPLACE FUNCTION shardgate_ring_pos(key text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ((('x' || substr(md5(key), 1, 16))::bit(64)) # x'8000000000000000'::bit(64))::bigint
$$;

-- Shard of a key: the first vnode at or after the key's position, wrapping around.
-- Vnode labels are 'shard-<i>#<j>', j = 0..vnodes-1. Ties sort by shard number, as in Rust.
CREATE OR REPLACE FUNCTION shardgate_shard_of(key text, shards int DEFAULT 5, vnodes int DEFAULT 1000)
RETURNS int LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH ring AS (
        SELECT shardgate_ring_pos('shard-' || i || '#' || j) AS pos, i AS shard
        FROM generate_series(0, shards - 1) AS i, generate_series(0, vnodes - 1) AS j
    )
    SELECT coalesce(
        (SELECT shard FROM ring WHERE pos >= shardgate_ring_pos(key) ORDER BY pos, shard LIMIT 1),
        (SELECT shard FROM ring ORDER BY pos, shard LIMIT 1))
$$;
