//! The sale's SQL. Every statement runs on the shard that owns the ITEM id.

use sqlx::PgPool;

pub async fn record_attempt(
    pool: &PgPool,
    code: &str,
    sale_id: &str,
    user: &str,
    item: &str,
    expires_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkout_attempts (code, sale_id, user_id, item_id, expires_at)
         VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000))",
    )
    .bind(code)
    .bind(sale_id)
    .bind(user)
    .bind(item)
    .bind(expires_ms as f64)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Commits the sale. `Ok(true)`: this code owns the item's sale (now or from an earlier
/// attempt with the same code); `Ok(false)`: the item was sold with another code.
pub async fn insert_sale(
    pool: &PgPool,
    item: &str,
    code: &str,
    sale_id: &str,
    user: &str,
) -> Result<bool, sqlx::Error> {
    let owner: String = sqlx::query_scalar(
        "WITH ins AS (
             INSERT INTO sales (item_id, code, sale_id, user_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING code)
         SELECT code FROM ins
         UNION ALL SELECT code FROM sales WHERE item_id = $1
         LIMIT 1",
    )
    .bind(item)
    .bind(code)
    .bind(sale_id)
    .bind(user)
    .fetch_one(pool)
    .await?;
    Ok(owner == code)
}

/// (item, code, sale id, user) of every sale on the shard.
pub async fn all_sales(pool: &PgPool) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT item_id, code, sale_id, user_id FROM sales").fetch_all(pool).await
}

/// Live holds of a sale: attempts not expired and not purchased. (code, user, item, expiry ms)
pub async fn live_holds(pool: &PgPool, sale_id: &str) -> Result<Vec<(String, String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.code, a.user_id, a.item_id, (extract(epoch from a.expires_at) * 1000)::bigint
         FROM checkout_attempts a
         WHERE a.sale_id = $1 AND a.expires_at > now()
           AND NOT EXISTS (SELECT 1 FROM sales s WHERE s.code = a.code)",
    )
    .bind(sale_id)
    .fetch_all(pool)
    .await
}

pub async fn attempt_count(pool: &PgPool, sale_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM checkout_attempts WHERE sale_id = $1").bind(sale_id).fetch_one(pool).await
}
