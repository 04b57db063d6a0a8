-- Orders, found by id or by the user who placed them.
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    created_at TEXT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user, id);

-- Orders whose `orders.created` event may not have been published yet: a row
-- is written in the transaction that stores its order, and deleted once the
-- event is out.
CREATE TABLE outbox (
    order_id INTEGER PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE
);

-- The last order id handed out (an order's id is known before it is stored,
-- for the catalog's reservation and the logs).
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
INSERT INTO sequences (name, last) VALUES ('orders', 0);
