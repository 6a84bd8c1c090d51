-- The sale's stock, counted in Postgres so that no Redis state can oversell. These tables
-- live on the sale's home shard (the first shard of the topology), not by item: a purchase
-- takes a ticket here, in one statement that also counts the sale and the buyer, before its
-- sale row is written on the item's shard. The CHECKs refuse the ticket past the stock or
-- past the user's limit, whatever Redis said.

-- One ticket per purchasing code (a retried purchase reuses its ticket).
CREATE TABLE IF NOT EXISTS sale_tickets (
    code       text        PRIMARY KEY CHECK (code ~ '^[0-9a-f]{32}$'),
    sale_id    text        NOT NULL,
    user_id    text        NOT NULL,
    item_id    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sale_tickets_sale_idx ON sale_tickets (sale_id);

-- Tickets taken per sale, never more than its items (fixed by the first ticket).
CREATE TABLE IF NOT EXISTS sale_stock (
    sale_id text    PRIMARY KEY,
    items   integer NOT NULL CHECK (items > 0),
    sold    integer NOT NULL CHECK (sold >= 0),
    CONSTRAINT sale_stock_within_items CHECK (sold <= items)
);

-- Tickets taken per buyer of a sale, never more than the user limit.
CREATE TABLE IF NOT EXISTS sale_buyers (
    sale_id    text    NOT NULL,
    user_id    text    NOT NULL,
    user_limit integer NOT NULL CHECK (user_limit > 0),
    bought     integer NOT NULL CHECK (bought >= 0),
    PRIMARY KEY (sale_id, user_id),
    CONSTRAINT sale_buyers_within_limit CHECK (bought <= user_limit)
);
