-- The catalog's products. A reservation takes stock with a conditional
-- UPDATE; the CHECK keeps stock from going below zero whatever the code does.
-- AUTOINCREMENT: a deleted product's id is never handed out again, so an old
-- order never names a new product.
CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (length(name) > 0),
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    stock INTEGER NOT NULL CHECK (stock >= 0)
);
