DROP TABLE IF EXISTS sale_buyers;
DROP TABLE IF EXISTS sale_stock;
DROP TABLE IF EXISTS sale_tickets;
