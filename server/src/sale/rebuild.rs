//! Rebuilding a sale's Redis state from Postgres, the source of truth, when Redis lost it
//! (restart, flush) or a new sale window starts: the current sale's purchases (its items
//! sold, per user), its live holds (attempts not expired, not undone and not bought) and its
//! counters. Its cost grows with the sale, not with every sale before it: an item sold in an
//! earlier sale is refused by Postgres at purchase (its primary key), and Redis learns it then. One worker rebuilds (a lock that expires, held by a random token); the
//! others wait for it, then answer 503. The state is written by one script that checks the
//! lock is still this rebuild's, so a rebuild that read Postgres before Redis lost its data
//! again never writes that older state. Checkouts and purchases wait for `ready`, so nothing
//! is decided on a half-loaded state. The failed_* counters are not durable and restart from
//! zero.

use redis::aio::ConnectionManager;

use super::{now_ms, store, Window, REDIS_TIMEOUT};
use crate::db::{self, Target};
use crate::http::error::ApiError;
use crate::state::State;

fn busy() -> ApiError {
    ApiError::DependencyUnavailable("the sale's state (being rebuilt from Postgres)")
}

fn redis_err(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "sale rebuild: redis failed");
    ApiError::DependencyUnavailable("redis")
}

/// # Errors
/// 503 while another worker rebuilds, when a shard or Redis fails.
pub async fn run(state: &State, conn: &mut ConnectionManager, w: &Window) -> Result<(), ApiError> {
    // In a task of its own: a request that goes away must not leave the lock taken and the
    // sale unloaded behind it.
    let (st, mut c, win) = (state.clone(), conn.clone(), w.clone());
    tokio::spawn(async move { rebuild(&st, &mut c, &win).await })
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("sale rebuild task: {e}").into())))
}

async fn rebuild(state: &State, conn: &mut ConnectionManager, w: &Window) -> Result<(), ApiError> {
    let p = &state.sale.prefix;
    let lock = format!("{p}{}:rebuild", w.id);
    let ready = format!("{p}{}:ready", w.id);
    // A rebuild fenced out (Redis lost its data again while it read Postgres) tries again.
    for _ in 0..3 {
        let Some(token) = take_lock(conn, &lock, LOCK_MS).await? else { break };
        // Double-checked: a request that saw the sale unloaded may take the lock just after
        // another worker finished loading it. Loading again then would overwrite counters
        // that live checkouts have already moved (their Postgres rows may not exist yet).
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&ready);
        let loaded = match tokio::time::timeout(REDIS_TIMEOUT, exists.query_async::<i64>(conn)).await {
            Ok(Ok(1)) => Ok(true),
            Ok(Ok(_)) => load(state, conn, w, &lock, &token).await,
            Ok(Err(e)) => Err(redis_err(e)),
            Err(_) => Err(busy()),
        };
        release_lock(&state.sale.unlock, conn, &lock, &token).await;
        if loaded? {
            return Ok(());
        }
        metrics::counter!("sale_rebuilds_fenced_total").increment(1);
    }
    // Another worker is rebuilding: wait (3 s at most, however slow Redis is) rather than refuse.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&ready);
        if let Ok(Ok(Ok(1))) =
            tokio::time::timeout_at(until, tokio::time::timeout(REDIS_TIMEOUT, exists.query_async::<i64>(conn))).await
        {
            return Ok(());
        }
    }
    Err(busy())
}

/// How long a rebuild's lock lives: a rebuild that takes longer loses it to the next one.
const LOCK_MS: u64 = 30_000;

/// Takes `lock` for `ms` with a fresh random token: `Some(token)` if taken.
async fn take_lock(conn: &mut ConnectionManager, lock: &str, ms: u64) -> Result<Option<String>, ApiError> {
    let token = super::hex(&rand::random::<[u8; 16]>());
    let mut take = redis::cmd("SET");
    take.arg(lock).arg(&token).arg("NX").arg("PX").arg(ms);
    let got: Option<String> =
        tokio::time::timeout(REDIS_TIMEOUT, take.query_async(conn)).await.map_err(|_| busy())?.map_err(redis_err)?;
    Ok(got.map(|_| token))
}

/// Deletes `lock` only while it still holds `token` (compare-and-delete in one script): a
/// rebuild that outlived its lock must not delete the lock of the rebuild that took it next.
async fn release_lock(unlock: &redis::Script, conn: &mut ConnectionManager, lock: &str, token: &str) -> bool {
    let mut inv = unlock.key(lock);
    inv.arg(token);
    matches!(tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(conn)).await, Ok(Ok(1)))
}

/// Reads the sale from every shard's primary and writes it to Redis with one script, which
/// writes nothing unless this rebuild still holds its lock (`token`) and the sale is still
/// unloaded. Redis losing its data again while the shards were read drops the lock with it: a
/// state read before that loss (which may miss holds acknowledged since) is never written.
/// `Ok(false)`: fenced out so.
async fn load(
    state: &State,
    conn: &mut ConnectionManager,
    w: &Window,
    lock: &str,
    token: &str,
) -> Result<bool, ApiError> {
    let started = std::time::Instant::now();
    let p = &state.sale.prefix;
    // Every shard at once; any failure aborts (no half-loaded sale).
    // The shards of the current ring; between a cutover and its clean-up a moved row is on
    // its old shard too, and only the owner's copy counts.
    let view = state.ring.view();
    let shards = view.shards();
    let view = &view;
    let per_shard = futures_util::future::join_all(shards.map(|shard| async move {
        let pool = &state.pools.get(shard).primary;
        let (mut sales, mut holds, attempts) =
            db::run(state, shard, Target::Primary, store::snapshot(pool, &w.id)).await?;
        sales.retain(|(item, ..)| view.ring.shard_for_str(item) == shard);
        holds.retain(|(_, _, item, _)| view.ring.shard_for_str(item) == shard);
        Ok::<_, db::DbFail>((sales, holds, attempts))
    }))
    .await;
    let mut attempts_total = 0i64;
    let (mut bought, mut holds) = (Vec::new(), Vec::new());
    for r in per_shard {
        let (sales, live, attempts) = r.map_err(ApiError::from)?;
        attempts_total += attempts;
        holds.extend(live);
        bought.extend(sales.into_iter().map(|(item, code, _, user)| (code, user, item)));
    }

    // Never more than the sale's items: purchases first (committed, and bounded by the stock
    // count in Postgres), then the oldest holds (the script stops at the sale's items).
    holds.sort_by_key(|h| h.3);
    let keep_until = w.end_ms + 86_400_000;
    let mut inv = state.sale.load.prepare_invoke();
    inv.arg(p)
        .arg(&w.id)
        .arg(lock)
        .arg(token)
        .arg(keep_until)
        .arg(now_ms())
        .arg(attempts_total)
        .arg(state.cfg.sale_items)
        .arg(bought.len())
        .arg(holds.len());
    for (code, user, item) in &bought {
        inv.arg(code).arg(user).arg(item);
    }
    for (code, user, item, exp) in &holds {
        inv.arg(code).arg(user).arg(item).arg(*exp);
    }
    let dropped: i64 = tokio::time::timeout(REDIS_TIMEOUT * 5, inv.invoke_async(conn))
        .await
        .map_err(|_| busy())?
        .map_err(redis_err)?;
    if dropped < 0 {
        tracing::info!(sale = %w.id, "sale rebuild fenced out: Redis lost its data again while Postgres was read");
        return Ok(false);
    }
    if dropped > 0 {
        // The confirmation should make this impossible: holds recorded without one.
        tracing::error!(sale = %w.id, dropped, "sale rebuild: more live holds than items; the newest were not loaded");
        metrics::counter!("sale_rebuild_holds_dropped_total").increment(dropped as u64);
    }
    tracing::info!(sale = %w.id, purchased = bought.len(), live_holds = holds.len(), ms = started.elapsed().as_millis() as u64, "sale state rebuilt from Postgres");
    metrics::counter!("sale_rebuilds_total").increment(1);
    Ok(true)
}

#[cfg(test)]
mod tests {
    //! Against the real Redis the cluster runs (`REDIS_URL`, default 127.0.0.1:6379).
    use super::*;

    async fn redis() -> ConnectionManager {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        redis::Client::open(url).unwrap().get_connection_manager().await.unwrap()
    }

    #[tokio::test]
    async fn a_rebuild_that_outlived_its_lock_leaves_the_next_owners_lock_alone() {
        let mut conn = redis().await;
        let unlock = redis::Script::new(super::super::scripts::UNLOCK);
        let lock = format!("test:rebuild-lock:{}", super::super::hex(&rand::random::<[u8; 8]>()));
        let first = take_lock(&mut conn, &lock, 100).await.unwrap().expect("free lock taken");
        assert!(take_lock(&mut conn, &lock, 100).await.unwrap().is_none(), "held: not taken twice");
        // The first rebuild is slow: its lock expires and the next rebuild takes it.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let second = take_lock(&mut conn, &lock, 5_000).await.unwrap().expect("expired lock taken");
        assert!(!release_lock(&unlock, &mut conn, &lock, &first).await, "the first may not delete it");
        let held: Option<String> = redis::cmd("GET").arg(&lock).query_async(&mut conn).await.unwrap();
        assert_eq!(held.as_deref(), Some(second.as_str()), "the second rebuild still holds its lock");
        assert!(release_lock(&unlock, &mut conn, &lock, &second).await);
        let held: Option<String> = redis::cmd("GET").arg(&lock).query_async(&mut conn).await.unwrap();
        assert_eq!(held, None);
    }
}
