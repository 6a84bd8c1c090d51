ALTER TABLE checkout_attempts DROP COLUMN IF EXISTS undone;
