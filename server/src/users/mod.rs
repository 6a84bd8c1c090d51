//! The sharded users API (the Messenger Clone API compatible):
//!
//! - `POST   /api/v1/users/`      create on the owner shard's primary -> 201 / 409
//! - `GET    /api/v1/users/:id`   through the read-through cache (`cache`); on a miss the
//!   replica, or the primary when the replica misses, lags or fails (read-your-own-create);
//!   `?consistency=strong` reads the primary and skips the cache
//! - every write invalidates the user's cache entry after its commit, before answering
//! - `PUT|PATCH /api/v1/users/:id` partial update on the primary, new row back
//! - `DELETE /api/v1/users/:id`   204 / 404, primary only
//! - `GET    /api/v1/users/`      newest first across all shards ([`list`])
//!
//! Every id routes through the ring to exactly one shard (`Route::One`); only the list
//! fans out to all (`Route::All`).

pub(crate) mod list;
pub mod model;
mod repo;

use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use sharding::ShardId;

use crate::cache::{Cold, Found};
use crate::db::{self, DbFail, Target};
use crate::http::body::{query_pairs, read_json, Limits};
use crate::http::error::ApiError;
use crate::http::response::{bytes_response, json_response, Resp};
use crate::state::{AppState, State};
use model::{CreateBody, NewUser, PatchBody, User, UserId, UserPatch};

pub use list::list;

fn shard_of(state: &AppState, id: &UserId) -> ShardId {
    state.ring.read_shard(id.as_str())
}

fn user_not_found(id: &UserId) -> ApiError {
    ApiError::not_found("USER_NOT_FOUND", format!("user {} not found", id.as_str()))
}

pub async fn create(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let body: CreateBody = read_json(req, Limits::of(&state.cfg)).await?;
    let user = NewUser::parse(body)?;
    // Writes route through the ring's write gate (it waits only for a key that a shard
    // being added takes over, during the cutover).
    let (shard, gate) = state.ring.write_shard(user.id.as_str()).await?;
    let pool = &state.pools.get(shard).primary;
    let done = db::run(state, shard, Target::Primary, repo::insert(pool, &user)).await;
    drop(gate);
    match done {
        Ok(created) => {
            // Committed: clear a cached "not found" for this id before answering.
            state.cache.invalidate(&state.redis, user.id.as_str()).await;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        Err(DbFail::Sql(_, sqlx::Error::Database(e))) if e.is_unique_violation() => Err(ApiError::Conflict {
            code: "USER_EXISTS",
            message: format!("user {} already exists", user.id.as_str()).into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Reads one user: the replica when it is healthy and within the lag bound, else (or
/// when the replica does not have the row yet) the primary.
pub async fn read_user(state: &AppState, id: &UserId, strong: bool) -> Result<Option<User>, ApiError> {
    let shard = shard_of(state, id);
    let pools = state.pools.get(shard);
    if !strong && state.health.replica_usable(shard) {
        match db::run(state, shard, Target::Replica, repo::get(&pools.replica, id.as_str())).await {
            Ok(Some(u)) => return Ok(Some(u)),
            // A miss may be replication lag on a fresh create: confirm on the primary.
            Ok(None) => {}
            Err(DbFail::Unavailable(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = db::run(state, shard, Target::Primary, repo::get(&pools.primary, id.as_str())).await?;
    if found.is_none() {
        // Paused at a cutover, another worker may already route this key to the new shard and
        // have created it there. Only then (never while copying: the copy may still hold a row
        // whose delete is not replayed yet) a miss on a moving key waits for this worker's
        // view to change (a few ms) and reads the owner under the new view.
        let view = state.ring.view();
        if view.phase == crate::reshard::Phase::Paused && view.moves(id.as_str()) {
            let now = state.ring.wait_change(&view).await;
            let to = now.ring.shard_for_str(id.as_str());
            if to != shard {
                let pool = &state.pools.get(to).primary;
                return Ok(db::run(state, to, Target::Primary, repo::get(pool, id.as_str())).await?);
            }
        }
    }
    Ok(found)
}

pub async fn get(state: &State, req: Request<Incoming>, id: &str) -> Result<Resp, ApiError> {
    let id = UserId::parse(id)?;
    let mut strong = false;
    for (k, v) in query_pairs(req.uri().query()) {
        if k == "consistency" {
            strong = match v.as_ref() {
                "strong" => true,
                "eventual" => false,
                _ => return Err(ApiError::bad_request("INVALID_QUERY", "consistency must be strong or eventual")),
            };
        }
    }
    let deadline = std::time::Duration::from_millis(state.cfg.request_timeout_ms);
    let timeout = || ApiError::Timeout(state.cfg.request_timeout_ms);
    if strong {
        // The primary, bypassing the cache: the caller asked for the latest committed row.
        return match tokio::time::timeout(deadline, read_user(state, &id, true)).await.map_err(|_| timeout())?? {
            Some(u) => Ok(json_response(StatusCode::OK, &u)),
            None => Err(user_not_found(&id)),
        };
    }
    // Through the read-through cache: a hit is the cached JSON itself, sent as is.
    let (body, hit) =
        match tokio::time::timeout(deadline, crate::cache::lookup(state, &id)).await.map_err(|_| timeout())?? {
            Found::Hit(b) => (b, true),
            Found::Cold(Cold::Found(b)) => (b, false),
            Found::NegativeHit | Found::Cold(Cold::NotFound) => return Err(user_not_found(&id)),
        };
    let mut resp = bytes_response(StatusCode::OK, HeaderValue::from_static("application/json"), body);
    resp.headers_mut().insert("x-cache", HeaderValue::from_static(if hit { "hit" } else { "miss" }));
    Ok(resp)
}

pub async fn update(state: &State, req: Request<Incoming>, id: &str) -> Result<Resp, ApiError> {
    let id = UserId::parse(id)?;
    let body: PatchBody = read_json(req, Limits::of(&state.cfg)).await?;
    let patch = UserPatch::parse(body)?;
    let (shard, gate) = state.ring.write_shard(id.as_str()).await?;
    let pool = &state.pools.get(shard).primary;
    let done = db::run(state, shard, Target::Primary, repo::update(pool, id.as_str(), &patch)).await;
    drop(gate);
    match done? {
        Some(u) => {
            state.cache.invalidate(&state.redis, id.as_str()).await;
            Ok(json_response(StatusCode::OK, &u))
        }
        None => Err(user_not_found(&id)),
    }
}

pub async fn delete(state: &State, id: &str) -> Result<Resp, ApiError> {
    let id = UserId::parse(id)?;
    let (shard, gate) = state.ring.write_shard(id.as_str()).await?;
    let pool = &state.pools.get(shard).primary;
    let done = db::run(state, shard, Target::Primary, repo::delete(pool, id.as_str())).await;
    drop(gate);
    if done? {
        state.cache.invalidate(&state.redis, id.as_str()).await;
        Ok(crate::http::response::empty(StatusCode::NO_CONTENT))
    } else {
        Err(user_not_found(&id))
    }
}

/// Per-shard user count for the stats endpoint (replica when usable, else primary).
pub async fn count_on(state: &AppState, shard: ShardId) -> Result<i64, DbFail> {
    let pools = state.pools.get(shard);
    if state.health.replica_usable(shard) {
        if let Ok(n) = db::run(state, shard, Target::Replica, repo::count(&pools.replica)).await {
            return Ok(n);
        }
    }
    db::run(state, shard, Target::Primary, repo::count(&pools.primary)).await
}
