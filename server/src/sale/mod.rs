//! The flash sale, compatible with the Flash Sale API (see docs/SALE.md):
//!
//! - `POST /checkout?user_id=&id=`  one Lua script decides (atomic, one round trip), the
//!   hold is recorded in Postgres (`checkout_attempts`), and the same script confirms that
//!   Redis still holds it (placing it again after Redis lost it) before the 200; anything
//!   else is undone
//! - `POST /purchase?code=`         claim the hold (Lua), take a ticket against the stock
//!   counted in Postgres (first shard), commit the sale row on the item's shard (its primary
//!   key makes a second sale impossible), mark it sold (Lua), then 200; the same code again
//!   answers the same 200
//! - `GET  /status`                 the seed's counters, shared by every worker (Redis)
//!
//! Sale records route by item id. Redis state lost (restart, flush) is rebuilt from
//! Postgres before the sale takes checkouts again ([`rebuild`]). See docs/SALE.md.

pub mod limit;
mod rebuild;
mod scripts;
mod store;

use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use redis::aio::ConnectionManager;
use serde::Serialize;

use sharding::ShardId;

use crate::db::{self, DbFail, Target};
use crate::http::body::query_pairs;
use crate::http::error::ApiError;
use crate::http::response::{json_ok, Resp};
use crate::state::State;
use crate::users::model::is_valid_id;

/// One Redis round trip of the sale may take this long before the request answers 503.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);
/// The shard that holds every sale's stock count (`sale_tickets`, `sale_stock`,
/// `sale_buyers`): the first shard, which every ring has and no resharding moves.
const HOME_SHARD: u16 = 0;

fn clamp_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// A checkout places no hold once it has waited this long (for a rebuild, a slow Redis), so
/// that with [`CHECKOUT_BUDGET`] after it, every hold it places is answered within the request
/// deadline (10 s).
const START_BY: Duration = Duration::from_secs(3);
/// A checkout past its script has this long to answer 200 (its row, its confirmation, perhaps
/// a rebuild); then it is undone and answers 503. Below the request deadline, so that the
/// deadline never cuts a checkout off halfway.
const CHECKOUT_BUDGET: Duration = Duration::from_secs(6);
/// How long the undo of a failed checkout waits for Redis to run its release: longer than
/// a stall (a pause) that made the checkout itself time out.
const RELEASE_WAIT: Duration = Duration::from_secs(30);
/// A claimed item stays reserved this long while its purchase commits (or is retried).
const CLAIM_MS: u64 = 600_000;

#[derive(Debug)]
pub struct Sale {
    prefix: String,
    checkout: redis::Script,
    release: redis::Script,
    claim: redis::Script,
    finalize: redis::Script,
    status: redis::Script,
    unlock: redis::Script,
    load: redis::Script,
    forfeit: redis::Script,
}

/// The current sale: its id and window.
#[derive(Debug, Clone)]
pub struct Window {
    pub id: String,
    pub end_ms: i64,
}

impl Sale {
    pub fn new(cfg: &crate::config::Config) -> Sale {
        Sale {
            prefix: format!("{}sale:", cfg.redis_key_prefix),
            checkout: redis::Script::new(&scripts::checkout()),
            release: redis::Script::new(scripts::RELEASE),
            claim: redis::Script::new(&scripts::claim()),
            finalize: redis::Script::new(scripts::FINALIZE),
            status: redis::Script::new(&scripts::status()),
            unlock: redis::Script::new(scripts::UNLOCK),
            load: redis::Script::new(scripts::LOAD),
            forfeit: redis::Script::new(scripts::FORFEIT),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The sale whose window contains `now_ms`: windows are aligned to UTC.
pub fn window(state: &State, now_ms: i64) -> Window {
    let w = state.cfg.sale_window_seconds as i64 * 1000;
    let start = now_ms - now_ms.rem_euclid(w);
    Window { id: format!("{}-{}", state.cfg.sale_name, start / 1000), end_ms: start + w }
}

fn redis_conn(state: &State) -> Result<ConnectionManager, ApiError> {
    match state.redis.conn() {
        Some(c) if state.redis.is_up() => Ok(c),
        _ => Err(ApiError::DependencyUnavailable("redis")),
    }
}

async fn invoke<T: redis::FromRedisValue>(
    inv: redis::ScriptInvocation<'_>,
    conn: &mut ConnectionManager,
) -> Result<T, ApiError> {
    match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async(conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "sale script failed");
            Err(ApiError::DependencyUnavailable("redis"))
        }
        Err(_) => Err(ApiError::DependencyUnavailable("redis")),
    }
}

fn param(req: &Request<Incoming>, name: &str) -> Option<String> {
    query_pairs(req.uri().query()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).filter(|v| !v.is_empty())
}

pub(crate) fn sale_id_param(v: Option<String>, name: &'static str) -> Result<String, ApiError> {
    let v =
        v.ok_or_else(|| ApiError::bad_request("MISSING_PARAMETER", format!("query parameter {name} is required")))?;
    if !is_valid_id(&v) {
        return Err(ApiError::bad_request("INVALID_ID", format!("{name} must match [A-Za-z0-9_-]{{1,64}}")));
    }
    Ok(v)
}

fn refused(code: &'static str, message: &'static str) -> ApiError {
    ApiError::Conflict { code, message: message.into() }
}

/// One checkout's fixed arguments: its hold (code, user, item, expiry) in its sale window.
struct Attempt<'a> {
    w: Window,
    code: &'a str,
    user: &'a str,
    item: &'a str,
    /// When the hold expires (ms): in Redis and in its Postgres row alike.
    exp: i64,
}

impl Attempt<'_> {
    /// Runs the checkout script in `mode` (`new` or `confirm`, see [`scripts::checkout`]) at
    /// the current time.
    async fn run(&self, state: &State, conn: &mut ConnectionManager, mode: &str) -> Result<String, ApiError> {
        let cfg = &state.cfg;
        let hold_ms = cfg.reservation_timeout_seconds * 1000;
        let mut inv = state.sale.checkout.prepare_invoke();
        inv.arg(&state.sale.prefix)
            .arg(&self.w.id)
            .arg(now_ms())
            .arg(self.exp)
            .arg(self.code)
            .arg(self.user)
            .arg(self.item)
            .arg(cfg.sale_items)
            .arg(cfg.sale_user_limit)
            .arg(self.w.end_ms + 86_400_000)
            .arg(hold_ms + 86_400_000)
            .arg(mode);
        let out: Vec<String> = invoke(inv, conn).await?;
        Ok(out.into_iter().next().unwrap_or_default())
    }
}

/// The client's answer for a verdict that is not OK.
fn refusal(verdict: &str) -> ApiError {
    match verdict {
        "SOLD" => refused("ITEM_SOLD", "item already sold"),
        "RESERVED" => refused("ITEM_RESERVED", "item already reserved"),
        "SOLD_OUT" => refused("SOLD_OUT", "sale sold out"),
        "LIMIT" => refused("USER_LIMIT", "user limit reached"),
        _ => ApiError::DependencyUnavailable("the sale's state (being rebuilt)"),
    }
}

pub async fn checkout(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let user = sale_id_param(param(&req, "user_id"), "user_id")?;
    let item = sale_id_param(param(&req, "id"), "id")?;
    let conn = redis_conn(state)?;
    // In a task of its own, so that a client that goes away (or the request deadline) cannot
    // stop a checkout halfway: it either answers 200 or is undone.
    let state = state.clone();
    tokio::spawn(async move { decide(&state, conn, &user, &item).await })
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("checkout task: {e}").into())))
}

async fn decide(state: &State, mut conn: ConnectionManager, user: &str, item: &str) -> Result<Resp, ApiError> {
    let code = hex(&rand::random::<[u8; 16]>());
    let hold_ms = (state.cfg.reservation_timeout_seconds * 1000) as i64;
    // No hold is placed past this point in time: the client's answer must still be awaited.
    let started = tokio::time::Instant::now();
    for attempt in 0..2 {
        if started.elapsed() > START_BY {
            return Err(refusal("REBUILD"));
        }
        let now = now_ms();
        let a = Attempt { w: window(state, now), code: &code, user, item, exp: now + hold_ms };
        let verdict = match a.run(state, &mut conn, "new").await {
            Ok(v) => v,
            Err(e) => {
                // Timed out or failed: the script may still run (Redis paused or slow).
                undo_later(state, &conn, &a, false);
                return Err(e);
            }
        };
        metrics::counter!("sale_checkouts_total", "result" => verdict_label(&verdict)).increment(1);
        match verdict.as_str() {
            "OK" => {
                // Everything from here has a budget below the request deadline; past it the
                // checkout is undone and answers 503.
                return match tokio::time::timeout(CHECKOUT_BUDGET, record_hold(state, &mut conn, &a)).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        undo_later(state, &conn, &a, true);
                        Err(refusal("REBUILD"))
                    }
                };
            }
            "REBUILD" if attempt == 0 => rebuild::run(state, &mut conn, &a.w).await?,
            v => return Err(refusal(v)),
        }
    }
    Err(refusal("REBUILD"))
}

fn verdict_label(v: &str) -> &'static str {
    match v {
        "OK" => "ok",
        "SOLD" => "sold",
        "RESERVED" => "reserved",
        "SOLD_OUT" => "sold_out",
        "LIMIT" => "user_limit",
        "REBUILD" => "rebuild",
        _ => "other",
    }
}

/// The hold is placed in Redis; make it durable, then confirm that Redis still has it
/// before answering 200. Redis may have lost it between the script and the commit (a flush,
/// a restart, a failover) and been rebuilt from Postgres before the row existed: the
/// confirmation then places it again or refuses. Anything but a 200 leaves nothing behind:
/// the row is deleted and the hold released (both idempotent).
async fn record_hold(state: &State, conn: &mut ConnectionManager, a: &Attempt<'_>) -> Result<Resp, ApiError> {
    // The write gate is held for the INSERT only (it waits only during a cutover).
    let recorded: Result<(), ApiError> = async {
        let (shard, _gate) = state.ring.write_shard(a.item).await?;
        let pool = &state.pools.get(shard).primary;
        let insert = store::record_attempt(pool, a.code, &a.w.id, a.user, a.item, a.exp);
        db::run(state, shard, Target::Primary, insert).await?;
        Ok(())
    }
    .await;
    if let Err(e) = recorded {
        // The INSERT's outcome may be unknown: forget the row too.
        undo_later(state, conn, a, true);
        return Err(e);
    }
    let mut rebuilt = false;
    let verdict = loop {
        let verdict = match a.run(state, conn, "confirm").await {
            Ok(v) => v,
            Err(e) => break Err(e),
        };
        if verdict == "REBUILD" && !rebuilt {
            if let Err(e) = rebuild::run(state, conn, &a.w).await {
                break Err(e);
            }
            rebuilt = true;
            continue;
        }
        break Ok(verdict);
    };
    let label = match verdict.as_deref() {
        Ok("OK") => "ok",
        Ok(_) => "refused",
        Err(_) => "failed",
    };
    metrics::counter!("sale_checkout_confirmations_total", "result" => label).increment(1);
    match verdict {
        Ok(v) if v == "OK" => {}
        Ok(v) => {
            undo_later(state, conn, a, true);
            return Err(refusal(&v));
        }
        Err(e) => {
            undo_later(state, conn, a, true);
            return Err(e);
        }
    }
    #[derive(Serialize)]
    struct Ok<'a> {
        message: &'a str,
        code: &'a str,
    }
    Result::Ok(json_ok(&Ok { message: "success", code: a.code }))
}

/// Undoes a checkout that did not answer 200, in the background: marks its Postgres row
/// undone (when `row` says it may exist) and then releases its hold in Redis.
///
/// The row is marked by an upsert on its code, not deleted: an INSERT whose outcome was
/// unknown may still be running, and the upsert waits for it (or makes it fail), where a
/// DELETE would not see it and the INSERT would commit afterwards. A rebuild ignores undone
/// rows. The release goes down the same multiplexed connection as the checkout's script, so
/// a script that Redis runs late (after a pause) is released right after it runs; for a hold
/// Redis does not know it leaves a tombstone that a rebuild in flight respects. Both steps
/// are idempotent and retried with back-off for about 25 s.
fn undo_later(state: &State, conn: &ConnectionManager, a: &Attempt<'_>, row: bool) {
    let (state, mut conn) = (state.clone(), conn.clone());
    let (code, sale, user, item) = (a.code.to_owned(), a.w.id.clone(), a.user.to_owned(), a.item.to_owned());
    let record_ms = state.cfg.reservation_timeout_seconds * 1000 + 86_400_000;
    metrics::counter!("sale_checkout_undos_total").increment(1);
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        for _ in 0..10 {
            let forgotten = !row
                || async {
                    let (shard, _gate) = state.ring.write_shard(&item).await.ok()?;
                    let pool = &state.pools.get(shard).primary;
                    let undo = store::undo_attempt(pool, &code, &sale, &user, &item);
                    db::run(&state, shard, Target::Primary, undo).await.ok()
                }
                .await
                .is_some();
            if forgotten {
                let mut inv = state.sale.release.prepare_invoke();
                inv.arg(&state.sale.prefix).arg(&code).arg(record_ms);
                let released = tokio::time::timeout(RELEASE_WAIT, inv.invoke_async::<i64>(&mut conn)).await;
                if matches!(released, Ok(Ok(_))) {
                    return;
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::error!(code = %code, "a failed checkout could not be undone; its hold expires with the reservation timeout");
    });
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn is_code(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Serialize)]
struct Purchased<'a> {
    message: &'a str,
    user: &'a str,
    item: &'a str,
}

pub async fn purchase(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let code = param(&req, "code")
        .ok_or_else(|| ApiError::bad_request("MISSING_PARAMETER", "query parameter code is required"))?;
    if !is_code(&code) {
        return Err(ApiError::bad_request("INVALID_CODE", "code must be 32 lowercase hex digits"));
    }
    let conn = redis_conn(state)?;
    // In a task of its own, like a checkout: a claimed hold is never left halfway bought by a
    // client that went away (a retry would finish it, but nobody may retry).
    let state = state.clone();
    tokio::spawn(async move { buy(&state, conn, &code).await })
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("purchase task: {e}").into())))
}

async fn buy(state: &State, mut conn: ConnectionManager, code: &str) -> Result<Resp, ApiError> {
    let code = code.to_owned();
    // Well formed but not (or no longer) held: the reservation is not there.
    let invalid =
        || ApiError::not_found("RESERVATION_NOT_FOUND", "no live reservation with this code (unknown or expired)");
    let mut out: Vec<String> = Vec::new();
    for attempt in 0..2 {
        let now = now_ms();
        let current = window(state, now);
        let mut inv = state.sale.claim.prepare_invoke();
        inv.arg(&state.sale.prefix).arg(now).arg(&code).arg(&current.id).arg(CLAIM_MS);
        out = invoke(inv, &mut conn).await?;
        if out.first().map(String::as_str) == Some("REBUILD") && attempt == 0 {
            rebuild::run(state, &mut conn, &current).await?;
            continue;
        }
        break;
    }
    let (verdict, user, item, sid) = match out.as_slice() {
        [v, u, i, s] => (v.as_str(), u.as_str(), i.as_str(), s.as_str()),
        [v] => (v.as_str(), "", "", ""),
        _ => return Err(ApiError::Internal("unexpected reply from the claim script".into())),
    };
    match verdict {
        "DONE" => {
            metrics::counter!("sale_purchases_total", "result" => "repeat").increment(1);
            return Ok(json_ok(&Purchased { message: "success", user, item }));
        }
        "CLAIMED" => {}
        // Redis lost the sale again while it was being rebuilt: the code may well be live.
        "REBUILD" => return Err(refusal("REBUILD")),
        _ => {
            metrics::counter!("sale_purchases_total", "result" => "invalid").increment(1);
            return Err(invalid());
        }
    }
    // The stock first: a ticket on the sale's home shard, which Postgres refuses past the
    // sale's items or the user's limit whatever Redis believed.
    let home = ShardId::new(HOME_SHARD);
    let cfg = &state.cfg;
    let (items, limit) = (clamp_i32(cfg.sale_items), clamp_i32(cfg.sale_user_limit));
    let pool = &state.pools.get(home).primary;
    let ticket = store::take_ticket(pool, &code, sid, user, item, items, limit);
    match db::run(state, home, Target::Primary, ticket).await? {
        store::Ticket::Taken => {}
        refusal @ (store::Ticket::SoldOut | store::Ticket::UserLimit) => {
            metrics::counter!("sale_purchases_total", "result" => "refused_by_stock").increment(1);
            tracing::warn!(code = %code, ?refusal, "Redis let a purchase through that the Postgres stock refuses");
            forfeit(state, &mut conn, &code, "").await;
            return Err(if refusal == store::Ticket::SoldOut {
                refused("SOLD_OUT", "sale sold out")
            } else {
                refused("USER_LIMIT", "user limit reached")
            });
        }
    }
    // The sale row, committed on the item's shard, BEFORE any 200.
    let (shard, gate) = state.ring.write_shard(item).await?;
    let pool = &state.pools.get(shard).primary;
    let done = db::run(state, shard, Target::Primary, store::insert_sale(pool, item, &code, sid, user)).await;
    drop(gate);
    match done {
        Ok(None) => {}
        Ok(Some(other)) => {
            metrics::counter!("sale_purchases_total", "result" => "sold_elsewhere").increment(1);
            let pool = &state.pools.get(home).primary;
            if let Err(e) = db::run(state, home, Target::Primary, store::return_ticket(pool, &code)).await {
                // The stock then counts one item too many: the sale may sell one fewer.
                tracing::warn!(code = %code, error = ?e, "could not return the ticket of a refused purchase");
            }
            forfeit(state, &mut conn, &code, &other).await;
            return Err(refused("ITEM_SOLD", "item already sold"));
        }
        // Unknown outcome: the hold stays claimed, so the same code can be retried.
        Err(e @ DbFail::Unavailable(_)) | Err(e @ DbFail::Sql(..)) => return Err(e.into()),
    }
    let mut inv = state.sale.finalize.prepare_invoke();
    inv.arg(&state.sale.prefix).arg(&code).arg(item).arg(sid).arg(user);
    if let Err(e) = invoke::<i64>(inv, &mut conn).await {
        // The sale is committed: answer 200. Redis catches up on the next rebuild.
        tracing::warn!(code = %code, error = %e, "sale committed but not marked in Redis");
    }
    metrics::counter!("sale_purchases_total", "result" => "ok").increment(1);
    Ok(json_ok(&Purchased { message: "success", user, item }))
}

/// Gives a claimed hold back after Postgres refused its purchase (best effort: a Redis that
/// cannot take it now learns it at the next rebuild). `other`: the code the item was sold with.
async fn forfeit(state: &State, conn: &mut ConnectionManager, code: &str, other: &str) {
    let mut inv = state.sale.forfeit.prepare_invoke();
    inv.arg(&state.sale.prefix).arg(code).arg(other);
    if let Err(e) = invoke::<i64>(inv, conn).await {
        tracing::warn!(code = %code, error = ?e, "could not give back the hold of a refused purchase");
    }
}

pub async fn status(state: &State) -> Result<Resp, ApiError> {
    let mut conn = redis_conn(state)?;
    let now = now_ms();
    let w = window(state, now);
    let mut inv = state.sale.status.prepare_invoke();
    inv.arg(&state.sale.prefix).arg(&w.id).arg(now);
    let mut v: Vec<i64> = invoke(inv, &mut conn).await?;
    if v.first() == Some(&0) {
        // Redis lost the sale (or it has just begun): load it from Postgres first, so the
        // figures are the true ones, never a fresh zero; 503 if that cannot be done now.
        rebuild::run(state, &mut conn, &w).await?;
        let mut inv = state.sale.status.prepare_invoke();
        inv.arg(&state.sale.prefix).arg(&w.id).arg(now_ms());
        v = invoke(inv, &mut conn).await?;
        if v.first() != Some(&1) {
            return Err(refusal("REBUILD"));
        }
    }
    let [_ready, taken, ok_checkouts, failed_checkouts, ok_purchases, failed_purchases, purchased] = v[..] else {
        return Err(ApiError::Internal("unexpected reply from the status script".into()));
    };
    #[derive(Serialize)]
    struct Status {
        seconds_remaining: i64,
        successful_checkouts: i64,
        failed_checkouts: i64,
        successful_purchases: i64,
        failed_purchases: i64,
        scheduled_goods: i64,
        purchased_goods: i64,
        sale_status: &'static str,
    }
    let remaining = ((w.end_ms - now) / 1000).max(0);
    let completed = remaining == 0 || purchased >= state.cfg.sale_items as i64;
    Ok(json_ok(&Status {
        seconds_remaining: remaining,
        successful_checkouts: ok_checkouts,
        failed_checkouts,
        successful_purchases: ok_purchases,
        failed_purchases,
        scheduled_goods: taken,
        purchased_goods: purchased,
        sale_status: if completed { "completed" } else { "active" },
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_32_lowercase_hex() {
        let c = super::hex(&[0xab, 0x01, 0xff, 0x10]);
        assert_eq!(c, "ab01ff10");
        assert!(super::is_code(&super::hex(&rand::random::<[u8; 16]>())));
        assert!(!super::is_code("ABCDEF0123456789abcdef0123456789"));
        assert!(!super::is_code("abc"));
    }
}
