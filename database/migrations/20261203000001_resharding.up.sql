-- Online resharding (docs/SHARDING_GUIDE.md). Every shard gets the same schema; only shard 0's
-- rows of shardgate_ring / shardgate_ring_workers are read (shard 0 is the control shard).

-- The ring: which shards it has (0..shards-1) and its version. While a shard is being added,
-- `target` is the ring being moved to and `phase` says how far the move is.
CREATE TABLE IF NOT EXISTS shardgate_ring (
    id          int         PRIMARY KEY CHECK (id = 1),
    version     int         NOT NULL CHECK (version >= 1),
    shards      int         NOT NULL CHECK (shards >= 1),
    target      int         CHECK (target IS NULL OR target > shards),
    previous    int,
    phase       text        NOT NULL DEFAULT 'stable'
                            CHECK (phase IN ('stable', 'copying', 'paused', 'cleaning')),
    rows_copied bigint      NOT NULL DEFAULT 0,
    lag_rows    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Each worker process says, every poll, which ring version and phase it is applying. The
-- resharder waits for every live worker before it moves on (cutover).
CREATE TABLE IF NOT EXISTS shardgate_ring_workers (
    worker   text        PRIMARY KEY,
    version  int         NOT NULL,
    phase    text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

-- Change capture while rows are copied: one line per write to a sharded table (its primary
-- key and its routing key). The copier replays a changed key by re-reading its row.
CREATE TABLE IF NOT EXISTS shardgate_changes (
    seq    bigserial PRIMARY KEY,
    tbl    text      NOT NULL,
    pk     text      NOT NULL,
    route  text      NOT NULL
);

-- Trigger function: TG_ARGV[0] = primary key column, TG_ARGV[1] = routing key column.
CREATE OR REPLACE FUNCTION shardgate_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    j jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN j := to_jsonb(OLD); ELSE j := to_jsonb(NEW); END IF;
    INSERT INTO shardgate_changes (tbl, pk, route) VALUES (TG_TABLE_NAME, j ->> TG_ARGV[0], j ->> TG_ARGV[1]);
    RETURN NULL;
END
$$;
