-- The stock of a sale is split into stripes (rows) whose capacities add up to the sale's
-- items, so that concurrent purchases count against different rows instead of queueing on one
-- row lock: a purchase takes a stripe with room that no other purchase holds (SKIP LOCKED).
-- Each stripe's CHECK still refuses a count past its capacity, so the sum stays bounded.
ALTER TABLE sale_stock ADD COLUMN IF NOT EXISTS stripe integer NOT NULL DEFAULT 0 CHECK (stripe >= 0);
ALTER TABLE sale_stock DROP CONSTRAINT IF EXISTS sale_stock_pkey;
ALTER TABLE sale_stock ADD CONSTRAINT sale_stock_pkey PRIMARY KEY (sale_id, stripe);
ALTER TABLE sale_stock DROP CONSTRAINT IF EXISTS sale_stock_items_check;
ALTER TABLE sale_stock ADD CONSTRAINT sale_stock_items_check CHECK (items >= 0);
-- The stripe a ticket is counted in (given back to it when the ticket is returned).
ALTER TABLE sale_tickets ADD COLUMN IF NOT EXISTS stripe integer NOT NULL DEFAULT 0;
