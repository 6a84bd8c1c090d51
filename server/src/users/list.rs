//! `GET /api/v1/users/`: newest first across every shard.
//!
//! Keyset pagination: the cursor is the `(created_at, id)` of the last row of the
//! previous page, encoded `<created_at unix micros>.<id>`, returned in the
//! `X-Next-Cursor` header. Each shard returns at most `limit` rows after the cursor (an
//! index range scan), and a k-way merge of the five sorted lists keeps the first `limit`:
//! page 1,000 costs what page 1 costs. Ids are unique across shards (the id decides the
//! shard), so `(created_at, id)` is a total order: no gaps, no repeats.
//!
//! `offset` is kept for the Messenger Clone API clients; it costs `offset + limit` rows per shard, so
//! it is capped. With a cursor too, it skips that many rows after the cursor. A shard that fails fails the request with 503 naming it, unless
//! `partial=true`, which returns the healthy shards' rows and names the missing ones in
//! `X-Missing-Shards`: never a silently short list.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;

use super::model::{is_valid_id, User};
use super::repo;
use crate::db::{self, DbFail, Target};
use crate::http::body::query_pairs;
use crate::http::error::ApiError;
use crate::http::response::{json_response, Resp};
use crate::state::{AppState, State};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
pub const MAX_OFFSET: i64 = 10_000;

#[derive(Debug, Default)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    cursor: Option<(DateTime<Utc>, String)>,
    partial: bool,
}

fn bad(message: &'static str) -> ApiError {
    ApiError::bad_request("INVALID_QUERY", message)
}

pub fn encode_cursor(u: &User) -> String {
    format!("{}.{}", u.created_at.timestamp_micros(), u.id)
}

pub(crate) fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let invalid =
        || ApiError::bad_request("INVALID_CURSOR", "cursor is malformed; pass back the X-Next-Cursor value unchanged");
    let (micros, id) = s.split_once('.').ok_or_else(invalid)?;
    // `[0-9]{1,18}`, as openapi.json says: every such instant (1970 to year 33658) fits both
    // chrono's and Postgres's timestamp range (a cursor before 4713 BC was a 500 once).
    if !(1..=18).contains(&micros.len()) || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let ts = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(invalid)?;
    if !is_valid_id(id) {
        return Err(invalid());
    }
    Ok((ts, id.to_owned()))
}

pub(crate) fn parse_query(q: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut out = ListQuery::default();
    for (k, v) in query_pairs(q) {
        match k.as_ref() {
            "limit" => {
                let n: i64 = v.parse().map_err(|_| bad("limit must be an integer from 1 to 100"))?;
                if !(1..=MAX_LIMIT).contains(&n) {
                    return Err(bad("limit must be an integer from 1 to 100"));
                }
                out.limit = Some(n);
            }
            "offset" => {
                let n: i64 = v.parse().map_err(|_| bad("offset must be an integer from 0 to 10000"))?;
                if !(0..=MAX_OFFSET).contains(&n) {
                    return Err(bad("offset must be an integer from 0 to 10000; use cursor to page deeper"));
                }
                out.offset = Some(n);
            }
            "cursor" if !v.is_empty() => out.cursor = Some(decode_cursor(&v)?),
            "cursor" => {}
            "partial" => {
                out.partial = match v.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("partial must be true or false")),
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Newest first: `created_at` descending, then `id` descending.
fn newer_first(a: &User, b: &User) -> Ordering {
    b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id))
}

/// Heap entry: the head of one shard's list. `BinaryHeap` is a max-heap, so "greater"
/// means "comes first" (newer).
struct Head {
    user: User,
    list: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        newer_first(&other.user, &self.user)
    }
}

/// Merges lists that are each sorted newest first, keeping the first `take` rows.
pub fn merge_newest_first(lists: Vec<Vec<User>>, take: usize) -> Vec<User> {
    let mut iters: Vec<std::vec::IntoIter<User>> = lists.into_iter().map(Vec::into_iter).collect();
    let mut heap = BinaryHeap::with_capacity(iters.len());
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(user) = it.next() {
            heap.push(Head { user, list: i });
        }
    }
    let mut out = Vec::with_capacity(take);
    while out.len() < take {
        let Some(Head { user, list }) = heap.pop() else { break };
        if let Some(next) = iters[list].next() {
            heap.push(Head { user: next, list });
        }
        out.push(user);
    }
    out
}

async fn shard_page(
    state: &AppState,
    shard: sharding::ShardId,
    after: Option<&(DateTime<Utc>, String)>,
    n: i64,
) -> Result<Vec<User>, DbFail> {
    let pools = state.pools.get(shard);
    if state.health.replica_usable(shard) {
        match db::run(state, shard, Target::Replica, repo::page(&pools.replica, after, n)).await {
            Ok(rows) => return Ok(rows),
            Err(DbFail::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
    }
    db::run(state, shard, Target::Primary, repo::page(&pools.primary, after, n)).await
}

pub async fn list(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let q = parse_query(req.uri().query())?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = q.offset.unwrap_or(0);
    let per_shard = limit + offset;
    // The shards of the current ring (a shard being added is not listed until its cutover).
    let view = state.ring.view();
    let shards = view.shards();
    let results = futures_util::future::join_all(
        shards.clone().map(|shard| shard_page(state, shard, q.cursor.as_ref(), per_shard)),
    )
    .await;
    let mut lists = Vec::with_capacity(results.len());
    let mut missing = Vec::new();
    for (shard, r) in shards.zip(results) {
        match r {
            // Between a cutover and its clean-up a moved row is on its old shard too: only
            // the owner's copy counts.
            Ok(mut rows) => {
                if view.phase == crate::reshard::Phase::Cleaning {
                    rows.retain(|u| view.ring.shard_for_str(&u.id) == shard);
                }
                lists.push(rows);
            }
            Err(DbFail::Unavailable(_)) => missing.push(shard.name()),
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() && !q.partial {
        return Err(ApiError::ShardsUnavailable(format!("{} (retry, or pass partial=true)", missing.join(", "))));
    }
    let mut page = merge_newest_first(lists, per_shard as usize);
    let page: Vec<User> = page.drain(page.len().min(offset as usize)..).collect();
    let mut resp = json_response(StatusCode::OK, &page);
    if page.len() as i64 == limit {
        if let Some(last) = page.last() {
            if let Ok(v) = HeaderValue::from_str(&encode_cursor(last)) {
                resp.headers_mut().insert("x-next-cursor", v);
            }
        }
    }
    if !missing.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&missing.join(",")) {
            resp.headers_mut().insert("x-missing-shards", v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(micros: i64, id: &str) -> User {
        let t = DateTime::from_timestamp_micros(micros).unwrap();
        User {
            id: id.into(),
            first_name: "a".into(),
            last_name: String::new(),
            email: None,
            deeplink: None,
            promo_message: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn k_way_merge_is_newest_first_with_id_tiebreak() {
        let a = vec![user(9, "a"), user(5, "a2"), user(1, "a3")];
        let b = vec![user(9, "b"), user(4, "b2")];
        let c = vec![];
        let d = vec![user(7, "d")];
        let got: Vec<String> = merge_newest_first(vec![a, b, c, d], 10).into_iter().map(|u| u.id).collect();
        assert_eq!(got, ["b", "a", "d", "a2", "b2", "a3"]);
        let two = merge_newest_first(vec![vec![user(3, "x"), user(1, "y")], vec![user(2, "z")]], 2);
        assert_eq!(two.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["x", "z"]);
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let u = user(1_732_000_000_123_456, "user-1_x");
        let (ts, id) = decode_cursor(&encode_cursor(&u)).unwrap();
        assert_eq!((ts, id.as_str()), (u.created_at, "user-1_x"));
        for bad in [
            "",
            "abc",
            "12",
            "x.y",
            "1.bad id",
            "99999999999999999999.a",
            "+1.a",
            "-1.a",
            "-.a",
            "1234567890123456789.a",
        ] {
            assert_eq!(decode_cursor(bad).unwrap_err().code(), "INVALID_CURSOR", "{bad}");
        }
    }

    #[test]
    fn query_limits_are_enforced() {
        assert_eq!(parse_query(Some("limit=100")).unwrap().limit, Some(100));
        for q in ["limit=0", "limit=101", "limit=x", "offset=-1", "offset=10001", "partial=maybe", "partial="] {
            assert!(parse_query(Some(q)).is_err(), "{q}");
        }
        // Both: skip `offset` rows after the cursor.
        let q = parse_query(Some("cursor=1.a&offset=5")).unwrap();
        assert_eq!((q.offset, q.cursor.map(|c| c.1)), (Some(5), Some("a".to_owned())));
        assert_eq!(decode_cursor("999999999999999999.x").unwrap().1, "x");
    }
}
