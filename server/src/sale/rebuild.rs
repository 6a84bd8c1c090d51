//! Rebuilding a sale's Redis state from Postgres, the source of truth, when Redis lost it
//! (restart, flush) or a new sale window starts: every item ever sold, and for the current
//! sale its purchases (per user), its live holds (attempts not expired and not bought) and
//! its counters. One worker rebuilds (a lock that expires); the others answer 503 until the
//! sale is marked ready. Checkouts and purchases wait for `ready`, so nothing is decided
//! on a half-loaded state. The failed_* counters are not durable and restart from zero.

use std::collections::HashMap;

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
    let p = &state.sale.prefix;
    let lock = format!("{p}{}:rebuild", w.id);
    let mut take = redis::cmd("SET");
    take.arg(&lock).arg(std::process::id()).arg("NX").arg("PX").arg(30_000);
    let got: Option<String> =
        tokio::time::timeout(REDIS_TIMEOUT, take.query_async(conn)).await.map_err(|_| busy())?.map_err(redis_err)?;
    if got.is_none() {
        // Another worker is rebuilding: wait (briefly) for it rather than refuse.
        let ready = format!("{p}{}:ready", w.id);
        for _ in 0..150 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let mut exists = redis::cmd("EXISTS");
            exists.arg(&ready);
            if let Ok(Ok(1)) = tokio::time::timeout(REDIS_TIMEOUT, exists.query_async::<i64>(conn)).await {
                return Ok(());
            }
        }
        return Err(busy());
    }
    // Double-checked: a request that saw the sale unloaded may take the lock just after
    // another worker finished loading it. Loading again then would overwrite counters
    // that live checkouts have already moved (their Postgres rows may not exist yet).
    let mut exists = redis::cmd("EXISTS");
    exists.arg(format!("{p}{}:ready", w.id));
    let already: i64 =
        tokio::time::timeout(REDIS_TIMEOUT, exists.query_async(conn)).await.map_err(|_| busy())?.map_err(redis_err)?;
    let result = if already == 1 { Ok(()) } else { load(state, conn, w).await };
    let _ = redis::cmd("DEL").arg(&lock).query_async::<()>(conn).await;
    result
}

async fn load(state: &State, conn: &mut ConnectionManager, w: &Window) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    let p = &state.sale.prefix;
    let s = format!("{p}{}:", w.id);
    // Every shard at once; any failure aborts (no half-loaded sale).
    // The shards of the current ring; between a cutover and its clean-up a moved row is on
    // its old shard too, and only the owner's copy counts.
    let view = state.ring.view();
    let shards = view.shards();
    let view = &view;
    let per_shard = futures_util::future::join_all(shards.map(|shard| async move {
        let pool = &state.pools.get(shard).primary;
        let mut sales = db::run(state, shard, Target::Primary, store::all_sales(pool)).await?;
        sales.retain(|(item, ..)| view.ring.shard_for_str(item) == shard);
        let mut holds = db::run(state, shard, Target::Primary, store::live_holds(pool, &w.id)).await?;
        holds.retain(|(_, _, item, _)| view.ring.shard_for_str(item) == shard);
        let attempts = db::run(state, shard, Target::Primary, store::attempt_count(pool, &w.id)).await?;
        Ok::<_, db::DbFail>((sales, holds, attempts))
    }))
    .await;
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut users: HashMap<String, i64> = HashMap::new();
    let (mut taken, mut purchased, mut attempts_total) = (0i64, 0i64, 0i64);
    let keep_until = w.end_ms + 86_400_000;
    let now = now_ms();
    for r in per_shard {
        let (sales, holds, attempts) = r.map_err(ApiError::from)?;
        attempts_total += attempts;
        for (item, code, sale_id, user) in sales {
            pipe.hset(format!("{p}sold"), &item, &code).ignore();
            if sale_id == w.id {
                let hold = format!("{p}hold:{code}");
                pipe.hset_multiple(
                    &hold,
                    &[("user", user.as_str()), ("item", &item), ("sid", &sale_id), ("status", "purchased")],
                )
                .ignore()
                .pexpire_at(&hold, keep_until)
                .ignore();
                *users.entry(user).or_default() += 1;
                taken += 1;
                purchased += 1;
            }
        }
        for (code, user, item, exp) in holds {
            let hold = format!("{p}hold:{code}");
            let exp_s = exp.to_string();
            pipe.hset_multiple(
                &hold,
                &[("user", user.as_str()), ("item", &item), ("sid", &w.id), ("exp", &exp_s), ("status", "held")],
            )
            .ignore()
            .pexpire_at(&hold, keep_until)
            .ignore();
            let ttl = (exp - now).max(1);
            pipe.cmd("SET").arg(format!("{p}item:{item}")).arg(&code).arg("PX").arg(ttl).ignore();
            pipe.zadd(format!("{s}holds"), &code, exp).ignore();
            *users.entry(user).or_default() += 1;
            taken += 1;
        }
    }
    for (user, n) in &users {
        pipe.cmd("SET").arg(format!("{s}user:{user}")).arg(n).arg("PXAT").arg(keep_until).ignore();
    }
    pipe.cmd("SET").arg(format!("{s}taken")).arg(taken).arg("PXAT").arg(keep_until).ignore();
    pipe.hset_multiple(
        format!("{s}stats"),
        &[
            ("successful_checkouts", attempts_total),
            ("successful_purchases", purchased),
            ("purchased_goods", purchased),
        ],
    )
    .ignore()
    .pexpire_at(format!("{s}stats"), keep_until)
    .ignore();
    pipe.cmd("SET").arg(format!("{s}ready")).arg(now).arg("PXAT").arg(keep_until).ignore();
    tokio::time::timeout(REDIS_TIMEOUT * 10, pipe.query_async::<()>(conn))
        .await
        .map_err(|_| busy())?
        .map_err(redis_err)?;
    tracing::info!(sale = %w.id, purchased, live_holds = taken - purchased, ms = started.elapsed().as_millis() as u64, "sale state rebuilt from Postgres");
    metrics::counter!("sale_rebuilds_total").increment(1);
    Ok(())
}
