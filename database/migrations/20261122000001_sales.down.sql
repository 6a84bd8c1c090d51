DROP TABLE IF EXISTS sales;
DROP TABLE IF EXISTS checkout_attempts;
