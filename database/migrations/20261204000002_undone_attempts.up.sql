-- A checkout that did not answer 200 marks its hold's row undone (an upsert on the code, which
-- waits for an INSERT still in flight), instead of deleting it: a rebuild ignores undone rows.
ALTER TABLE checkout_attempts ADD COLUMN IF NOT EXISTS undone boolean NOT NULL DEFAULT false;
