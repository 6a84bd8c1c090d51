//! The sharded users API (seed 003 compatible, DESIGN.md section 4):
//!
//! - `POST   /api/v1/users/`      create on the owner shard's primary -> 201 / 409
//! - `GET    /api/v1/users/:id`   replica first; primary when the replica misses, lags or
//!   fails (read-your-own-create); `?consistency=strong` reads the primary
//! - `PUT|PATCH /api/v1/users/:id` partial update on the primary, new row back
//! - `DELETE /api/v1/users/:id`   204 / 404, primary only
//! - `GET    /api/v1/users/`      newest first across all shards ([`list`])
//!
//! Every id routes through the ring to exactly one shard (`Route::One`); only the list
//! fans out to all (`Route::All`).

mod list;
pub mod model;
mod repo;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use sharding::ShardId;

use crate::db::{self, DbFail, Target};
use crate::http::body::{query_pairs, read_json};
use crate::http::error::ApiError;
use crate::http::response::{json_response, Resp};
use crate::state::{AppState, State};
use model::{CreateBody, NewUser, PatchBody, User, UserId, UserPatch};

pub use list::list;

fn shard_of(state: &AppState, id: &UserId) -> ShardId {
    state.ring.shard_for_str(id.as_str())
}

fn user_not_found(id: &UserId) -> ApiError {
    ApiError::not_found("USER_NOT_FOUND", format!("user {} not found", id.as_str()))
}

pub async fn create(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let body: CreateBody = read_json(req, state.cfg.max_body_bytes).await?;
    let user = NewUser::parse(body)?;
    let shard = shard_of(state, &user.id);
    let pool = &state.pools.get(shard).primary;
    match db::run(state, shard, Target::Primary, repo::insert(pool, &user)).await {
        Ok(created) => Ok(json_response(StatusCode::CREATED, &created)),
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
    match db::run(state, shard, Target::Primary, repo::get(&pools.primary, id.as_str())).await {
        Ok(u) => Ok(u),
        Err(e) => Err(e.into()),
    }
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
    match read_user(state, &id, strong).await? {
        Some(u) => Ok(json_response(StatusCode::OK, &u)),
        None => Err(user_not_found(&id)),
    }
}

pub async fn update(state: &State, req: Request<Incoming>, id: &str) -> Result<Resp, ApiError> {
    let id = UserId::parse(id)?;
    let body: PatchBody = read_json(req, state.cfg.max_body_bytes).await?;
    let patch = UserPatch::parse(body)?;
    let shard = shard_of(state, &id);
    let pool = &state.pools.get(shard).primary;
    match db::run(state, shard, Target::Primary, repo::update(pool, id.as_str(), &patch)).await? {
        Some(u) => Ok(json_response(StatusCode::OK, &u)),
        None => Err(user_not_found(&id)),
    }
}

pub async fn delete(state: &State, id: &str) -> Result<Resp, ApiError> {
    let id = UserId::parse(id)?;
    let shard = shard_of(state, &id);
    let pool = &state.pools.get(shard).primary;
    if db::run(state, shard, Target::Primary, repo::delete(pool, id.as_str())).await? {
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
