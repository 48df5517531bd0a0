"""The demo `shop` schema. Every table has `updated_at DATETIME(6)` set by the workload to the
moment of the change, which lets the demo match a committed change to the bronze row holding it."""

SHOP_TABLES = ("customers", "products", "orders", "order_items")

SHOP_DDL = (
    """CREATE TABLE IF NOT EXISTS customers (
        id INT PRIMARY KEY AUTO_INCREMENT,
        name VARCHAR(100) NOT NULL,
        email VARCHAR(200) NOT NULL,
        created_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS products (
        id INT PRIMARY KEY AUTO_INCREMENT,
        sku VARCHAR(32) NOT NULL,
        name VARCHAR(100) NOT NULL,
        price DECIMAL(10,2) NOT NULL,
        updated_at DATETIME(6) NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS orders (
        id INT PRIMARY KEY AUTO_INCREMENT,
        customer_id INT NOT NULL,
        status VARCHAR(16) NOT NULL,
        created_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS order_items (
        id INT PRIMARY KEY AUTO_INCREMENT,
        order_id INT NOT NULL,
        product_id INT NOT NULL,
        quantity INT NOT NULL,
        unit_price DECIMAL(10,2) NOT NULL,
        updated_at DATETIME(6) NOT NULL
    )""",
)

# The gold asset's definition, written against the source: orders, revenue and items per hour of
# order creation and status. The demo and the end-to-end test compare gold with this query.
GOLD_ORDERS_BY_HOUR_STATUS_SQL = """
SELECT DATE_FORMAT(o.created_at, '%Y-%m-%d %H:00:00') AS hour,
       o.status AS status,
       COUNT(*) AS orders,
       COALESCE(SUM(i.revenue), 0) AS revenue,
       COALESCE(SUM(i.items), 0) AS items
FROM orders o
LEFT JOIN (
    SELECT order_id, SUM(quantity * unit_price) AS revenue, COUNT(*) AS items
    FROM order_items GROUP BY order_id
) i ON i.order_id = o.id
GROUP BY 1, 2
ORDER BY 1, 2
"""
