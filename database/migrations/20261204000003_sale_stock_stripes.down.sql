ALTER TABLE sale_tickets DROP COLUMN IF EXISTS stripe;
-- Fold every stripe into stripe 0 before dropping the others, so no stock is lost.
UPDATE sale_stock s0 SET items = agg.items, sold = agg.sold
FROM (SELECT sale_id, sum(items)::int AS items, sum(sold)::int AS sold FROM sale_stock GROUP BY sale_id) agg
WHERE s0.sale_id = agg.sale_id AND s0.stripe = 0;
DELETE FROM sale_stock WHERE stripe > 0;
ALTER TABLE sale_stock DROP CONSTRAINT IF EXISTS sale_stock_pkey;
ALTER TABLE sale_stock DROP COLUMN IF EXISTS stripe;
ALTER TABLE sale_stock ADD CONSTRAINT sale_stock_pkey PRIMARY KEY (sale_id);
ALTER TABLE sale_stock DROP CONSTRAINT IF EXISTS sale_stock_items_check;
ALTER TABLE sale_stock ADD CONSTRAINT sale_stock_items_check CHECK (items > 0);
