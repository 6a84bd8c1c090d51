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

/// Commits the sale. `Ok(None)`: this code owns the item's sale (now or from an earlier
/// attempt with the same code); `Ok(Some(other))`: the item was sold with another code.
///
/// Two statements when the row exists: an `INSERT .. ON CONFLICT DO NOTHING` that waits for
/// a concurrent insert of the same item sees its row only in a NEW statement's snapshot (in
/// the same statement a `SELECT` would still read the older one and find nothing).
pub async fn insert_sale(
    pool: &PgPool,
    item: &str,
    code: &str,
    sale_id: &str,
    user: &str,
) -> Result<Option<String>, sqlx::Error> {
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO sales (item_id, code, sale_id, user_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING RETURNING code",
    )
    .bind(item)
    .bind(code)
    .bind(sale_id)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    if inserted.is_some() {
        return Ok(None);
    }
    let owner: Option<String> =
        sqlx::query_scalar("SELECT code FROM sales WHERE item_id = $1").bind(item).fetch_optional(pool).await?;
    match owner {
        Some(o) if o == code => Ok(None),
        Some(o) => Ok(Some(o)),
        // The conflict was on the code, not the item (it cannot be: codes are random).
        None => Ok(Some(String::new())),
    }
}

/// What the stock (on the sale's home shard) said to a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// Taken now, or by an earlier attempt with the same code.
    Taken,
    /// The sale has sold its items.
    SoldOut,
    /// The buyer has bought the user limit.
    UserLimit,
}

/// Stripes of a sale's stock (fewer for a sale of fewer items). The pick below rotates over 16.
const STRIPES: i32 = 16;

/// Takes the purchase's ticket: a row per code (a retry finds it) counted, in the same
/// statement, against one stripe of the sale's stock and against the buyer's limit. The
/// stripe is one with room that no concurrent purchase holds (`FOR UPDATE SKIP LOCKED`), so
/// purchases do not queue on one row; each stripe's CHECK and the buyer's CHECK refuse a count
/// past its bound, so Postgres alone bounds the sale, whatever Redis said.
pub async fn take_ticket(
    pool: &PgPool,
    code: &str,
    sale_id: &str,
    user: &str,
    item: &str,
    items: i32,
    user_limit: i32,
) -> Result<Ticket, sqlx::Error> {
    let spread = i32::from_str_radix(&code[..4], 16).unwrap_or(0);
    for round in 0..100u64 {
        let r = sqlx::query_scalar::<_, i64>(
            "WITH pick AS (
                 SELECT stripe FROM sale_stock WHERE sale_id = $2 AND sold < items
                 ORDER BY (stripe + $7) % 16 LIMIT 1 FOR UPDATE SKIP LOCKED),
             s AS (
                 UPDATE sale_stock st SET sold = st.sold + 1 FROM pick
                 WHERE st.sale_id = $2 AND st.stripe = pick.stripe RETURNING st.stripe),
             t AS (
                 INSERT INTO sale_tickets (code, sale_id, user_id, item_id, stripe)
                 SELECT $1, $2, $3, $4, s.stripe FROM s RETURNING code),
             b AS (
                 INSERT INTO sale_buyers AS sb (sale_id, user_id, user_limit, bought) SELECT $2, $3, $6, 1 FROM t
                 ON CONFLICT (sale_id, user_id) DO UPDATE SET bought = sb.bought + 1 RETURNING bought)
             SELECT (SELECT count(*) FROM t) + 0 * (SELECT count(*) FROM b)",
        )
        .bind(code)
        .bind(sale_id)
        .bind(user)
        .bind(item)
        .bind(items)
        .bind(user_limit)
        .bind(spread)
        .fetch_one(pool)
        .await;
        match r {
            Ok(1) => return Ok(Ticket::Taken),
            Ok(_) => {}
            // The code has its ticket already (an earlier try): the statement rolled back.
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("sale_tickets_pkey") => return Ok(Ticket::Taken),
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("sale_buyers_within_limit") => {
                return Ok(Ticket::UserLimit)
            }
            // A deadlock with a ticket being given back (same code): that one wins; try again.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01") => continue,
            Err(e) => return Err(e),
        }
        // No stripe taken: the code's ticket exists, the sale has no stripes yet, it is sold
        // out, or every stripe with room is held by a purchase in flight right now.
        let (left, ours): (Option<i64>, bool) = sqlx::query_as(
            "SELECT (SELECT sum(items - sold) FROM sale_stock WHERE sale_id = $2),
                    EXISTS (SELECT 1 FROM sale_tickets WHERE code = $1)",
        )
        .bind(code)
        .bind(sale_id)
        .fetch_one(pool)
        .await?;
        match (ours, left) {
            (true, _) => return Ok(Ticket::Taken),
            (false, None) => ensure_stripes(pool, sale_id, items).await?,
            (false, Some(0)) => return Ok(Ticket::SoldOut),
            (false, Some(_)) => tokio::time::sleep(std::time::Duration::from_millis(1 + round.min(20))).await,
        }
    }
    Err(sqlx::Error::PoolTimedOut)
}

/// Creates a sale's stripes (once; concurrent callers agree): capacities adding up to `items`.
async fn ensure_stripes(pool: &PgPool, sale_id: &str, items: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sale_stock (sale_id, stripe, items, sold)
         SELECT $1, g, $2 / k + (g < $2 % k)::int, 0
         FROM (SELECT least($3, $2) AS k) n, generate_series(0, least($3, $2) - 1) g
         ON CONFLICT DO NOTHING",
    )
    .bind(sale_id)
    .bind(items)
    .bind(STRIPES)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Gives a ticket back (its item turned out to be sold with another code). Idempotent.
pub async fn return_ticket(pool: &PgPool, code: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH t AS (DELETE FROM sale_tickets WHERE code = $1 RETURNING sale_id, user_id, stripe),
         s AS (UPDATE sale_stock st SET sold = st.sold - 1 FROM t
               WHERE st.sale_id = t.sale_id AND st.stripe = t.stripe),
         b AS (UPDATE sale_buyers sb SET bought = sb.bought - 1 FROM t
               WHERE sb.sale_id = t.sale_id AND sb.user_id = t.user_id)
         SELECT count(*) FROM t",
    )
    .bind(code)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Marks the record of a hold whose checkout did not answer 200 as undone, creating it if it
/// does not exist (yet): an INSERT of it still in flight then waits for this one, or fails.
/// Idempotent.
pub async fn undo_attempt(pool: &PgPool, code: &str, sale_id: &str, user: &str, item: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkout_attempts (code, sale_id, user_id, item_id, expires_at, undone)
         VALUES ($1, $2, $3, $4, now(), true)
         ON CONFLICT (code) DO UPDATE SET undone = true",
    )
    .bind(code)
    .bind(sale_id)
    .bind(user)
    .bind(item)
    .execute(pool)
    .await
    .map(|_| ())
}

/// (item, code, sale id, user) of a sale; (code, user, item, expiry ms) of a live hold.
pub type SaleRow = (String, String, String, String);
pub type HoldRow = (String, String, String, i64);

/// What a rebuild reads from one shard, in one snapshot (a REPEATABLE READ transaction): the
/// sale's purchases on the shard, its live holds (attempts not expired and not bought) and its
/// count of attempts. One snapshot, because a purchase committing between two separate reads
/// would be in neither (not yet sold in the first, no longer held in the second), and the
/// rebuilt sale would have one more item free than it has.
pub async fn snapshot(pool: &PgPool, sale_id: &str) -> Result<(Vec<SaleRow>, Vec<HoldRow>, i64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let sales = sqlx::query_as("SELECT item_id, code, sale_id, user_id FROM sales WHERE sale_id = $1")
        .bind(sale_id)
        .fetch_all(&mut *tx)
        .await?;
    let holds = sqlx::query_as(
        "SELECT a.code, a.user_id, a.item_id, (extract(epoch from a.expires_at) * 1000)::bigint
         FROM checkout_attempts a
         WHERE a.sale_id = $1 AND a.expires_at > now() AND NOT a.undone
           AND NOT EXISTS (SELECT 1 FROM sales s WHERE s.code = a.code)",
    )
    .bind(sale_id)
    .fetch_all(&mut *tx)
    .await?;
    let attempts = sqlx::query_scalar("SELECT count(*) FROM checkout_attempts WHERE sale_id = $1 AND NOT undone")
        .bind(sale_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((sales, holds, attempts))
}
