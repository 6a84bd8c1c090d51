DROP FUNCTION IF EXISTS shardgate_shard_of(text, int, int);
DROP FUNCTION IF EXISTS shardgate_ring_pos(text);
