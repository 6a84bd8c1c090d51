-- The users table (DESIGN.md section 4). One per shard; a row lives on the shard that
-- owns its id on the MD5 ring.
CREATE TABLE IF NOT EXISTS users (
    id            text        COLLATE "C" PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    first_name    text        NOT NULL CHECK (char_length(first_name) BETWEEN 1 AND 100),
    last_name     text        NOT NULL DEFAULT '' CHECK (char_length(last_name) <= 100),
    email         text        CHECK (char_length(email) <= 254),
    deeplink      text        CHECK (char_length(deeplink) <= 2048),
    promo_message text        CHECK (char_length(promo_message) <= 1000),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- ids compare bytewise (COLLATE "C") whatever the database locale, as in Rust, so the
-- cursor order and the k-way merge agree with the index.
-- Keyset pagination, newest first: WHERE (created_at, id) < ($1, $2)
-- ORDER BY created_at DESC, id DESC LIMIT n walks this index and never scans skipped rows.
CREATE INDEX IF NOT EXISTS users_created_at_id_idx ON users (created_at DESC, id DESC);
