-- Flash sale records (seed 004). Both tables route by ITEM id on the ring (DESIGN.md
-- section 3: sale records by item id), so a purchase and its checkout attempt live on the
-- same shard.

-- Every checkout that placed a hold, for audit (the original's checkout_attempts).
CREATE TABLE IF NOT EXISTS checkout_attempts (
    code        text        PRIMARY KEY CHECK (code ~ '^[0-9a-f]{32}$'),
    sale_id     text        NOT NULL,
    user_id     text        NOT NULL CHECK (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    item_id     text        NOT NULL CHECK (item_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS checkout_attempts_sale_idx ON checkout_attempts (sale_id, expires_at);

-- Confirmed sales. The primary key makes a second sale of an item impossible, ever, even
-- if Redis were wrong; the unique code makes a repeated purchase idempotent.
CREATE TABLE IF NOT EXISTS sales (
    item_id      text        PRIMARY KEY CHECK (item_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    code         text        NOT NULL UNIQUE,
    sale_id      text        NOT NULL,
    user_id      text        NOT NULL,
    purchased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sales_sale_user_idx ON sales (sale_id, user_id);
