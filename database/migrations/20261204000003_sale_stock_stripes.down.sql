ALTER TABLE sale_tickets DROP COLUMN IF EXISTS stripe;
ALTER TABLE sale_stock DROP CONSTRAINT IF EXISTS sale_stock_pkey;
DELETE FROM sale_stock WHERE stripe > 0;
ALTER TABLE sale_stock DROP COLUMN IF EXISTS stripe;
ALTER TABLE sale_stock ADD CONSTRAINT sale_stock_pkey PRIMARY KEY (sale_id);
