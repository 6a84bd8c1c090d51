//! The lookup: hot path (one `MGET`), then the singleflight cold path.

use bytes::Bytes;
use futures_util::FutureExt;

use super::{Cold, ColdError, ColdResult, NOT_FOUND};
use crate::http::error::ApiError;
use crate::state::State;
use crate::users::model::UserId;

/// What a lookup found, and where.
#[derive(Debug, Clone)]
pub enum Found {
    /// The cached record (JSON as the users API renders it).
    Hit(Bytes),
    /// A cached "not found".
    NegativeHit,
    /// From the database (and stored in the cache unless a write raced it).
    Cold(Cold),
}

/// Hot path: `MGET record marker`. `Ok(Err(marker))` is a miss carrying the write marker
/// seen ("" = none); `Err(())` means the cache could not answer (down, slow).
async fn hot(state: &State, id: &str) -> Result<Result<Found, String>, ()> {
    if !state.redis.is_up() {
        return Err(());
    }
    let Some(mut conn) = state.redis.conn() else { return Err(()) };
    let cache = &state.cache;
    let mut cmd = redis::cmd("MGET");
    cmd.arg(cache.record_key(id)).arg(cache.marker_key(id));
    match tokio::time::timeout(cache.redis_timeout, cmd.query_async::<(Option<Vec<u8>>, Option<String>)>(&mut conn))
        .await
    {
        Ok(Ok((Some(v), _))) if v == NOT_FOUND => Ok(Ok(Found::NegativeHit)),
        Ok(Ok((Some(v), _))) => Ok(Ok(Found::Hit(Bytes::from(v)))),
        Ok(Ok((None, marker))) => Ok(Err(marker.unwrap_or_default())),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cache read failed");
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// Reads a user through the cache. Redis down or slow never fails the lookup: the
/// database answers instead (and nothing is stored).
///
/// # Errors
/// The user's shard is unavailable, or the database failed.
pub async fn lookup(state: &State, id: &UserId) -> Result<Found, ColdError> {
    let marker = match hot(state, id.as_str()).await {
        Ok(Ok(found)) => {
            let result = if matches!(found, Found::Hit(_)) { "hit" } else { "negative_hit" };
            metrics::counter!("cache_requests_total", "result" => result).increment(1);
            return Ok(found);
        }
        Ok(Err(marker)) => {
            metrics::counter!("cache_requests_total", "result" => "miss").increment(1);
            Some(marker)
        }
        Err(()) => {
            metrics::counter!("cache_requests_total", "result" => "error").increment(1);
            None
        }
    };
    singleflight(state, id, marker).await
}

/// The in-flight lookups are keyed by the id AND the write marker the caller saw: a
/// request that saw a newer marker (a write acknowledged after the lookup in flight began)
/// starts its own lookup instead of being handed a row read before that write. `None`
/// (Redis could not tell) is a marker of its own.
fn flight_key(id: &str, marker: Option<&str>) -> String {
    match marker {
        Some(m) => format!("{id} {m}"),
        None => format!("{id} ?"),
    }
}

/// One database lookup per id and write marker per process at a time. The lookup runs in
/// its own task: if the request that started it goes away, the others still get its answer.
async fn singleflight(state: &State, id: &UserId, marker: Option<String>) -> ColdResult {
    let key = flight_key(id.as_str(), marker.as_deref());
    let flight = {
        let mut inflight = state.cache.inflight.lock().expect("inflight map poisoned");
        if let Some(f) = inflight.get(&key) {
            metrics::counter!("cache_singleflight_joins_total").increment(1);
            f.clone()
        } else {
            let (st, uid, k) = (state.clone(), id.clone(), key.clone());
            let task = tokio::spawn(async move {
                let out = cold(&st, &uid, marker).await;
                st.cache.inflight.lock().expect("inflight map poisoned").remove(&k);
                out
            });
            let f = async move { task.await.unwrap_or_else(|e| Err(ColdError::Internal(e.to_string().into()))) }
                .boxed()
                .shared();
            inflight.insert(key, f.clone());
            f
        }
    };
    flight.await
}

async fn cold(state: &State, id: &UserId, marker: Option<String>) -> ColdResult {
    // Across worker processes: if another one is already filling this id, wait for its
    // entry (polling the cache briefly) instead of asking Postgres a second time.
    if marker.is_some() {
        if let Some(mut conn) = state.redis.conn() {
            if !state.cache.try_fill_lock(&mut conn, id.as_str()).await {
                metrics::counter!("cache_fill_waits_total").increment(1);
                for _ in 0..40 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    if let Ok(Ok(found)) = hot(state, id.as_str()).await {
                        return Ok(found);
                    }
                }
            }
        }
    }
    metrics::counter!("cache_db_lookups_total").increment(1);
    // Shortly after a write, the replica may not have it yet: read the primary.
    let strong = marker.as_deref().is_some_and(|m| state.cache.is_recent(m));
    let cold = match crate::users::read_user(state, id, strong).await {
        Ok(Some(user)) => {
            Cold::Found(Bytes::from(sonic_rs::to_vec(&user).map_err(|e| ColdError::Internal(e.to_string().into()))?))
        }
        Ok(None) => Cold::NotFound,
        Err(ApiError::ShardUnavailable { shard }) => return Err(ColdError::Unavailable(shard)),
        Err(e) => return Err(ColdError::Internal(e.to_string().into())),
    };
    if let (Some(marker), Some(mut conn)) = (marker, state.redis.conn()) {
        state.cache.store(&mut conn, id.as_str(), &marker, &cold).await;
    }
    Ok(Found::Cold(cold))
}

impl From<ColdError> for ApiError {
    fn from(e: ColdError) -> ApiError {
        match e {
            ColdError::Unavailable(shard) => ApiError::ShardUnavailable { shard },
            ColdError::Internal(msg) => ApiError::Internal(msg.to_string().into()),
        }
    }
}
