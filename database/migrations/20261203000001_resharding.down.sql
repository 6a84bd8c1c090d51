DROP TRIGGER IF EXISTS shardgate_capture ON users;
DROP TRIGGER IF EXISTS shardgate_capture ON sales;
DROP TRIGGER IF EXISTS shardgate_capture ON checkout_attempts;
DROP FUNCTION IF EXISTS shardgate_capture();
DROP TABLE IF EXISTS shardgate_changes;
DROP TABLE IF EXISTS shardgate_ring_workers;
DROP TABLE IF EXISTS shardgate_ring;
