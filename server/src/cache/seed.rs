//! `GET /v1/users?user_id=ID`: hotcold-user-api's contract, byte for byte.
//!
//! `{code, message, user_id, deeplink, promo_message, cache_hit, metadata: {timestamp,
//! version: "v1"}}`, `code` equal to the HTTP status; `message` one of `ok:redis`,
//! `ok:postgres`, `invalid user_id`, `not found`, `internal error`; `user_id`, `deeplink`
//! and `promo_message` only on success (empty strings when the user has none). The whole
//! lookup is bounded by `REQUEST_TIMEOUT_MS` (seed default 300): past it, 500
//! `internal error`, as the seed's context deadline did. `user_id` is any id the service
//! stores, `[A-Za-z0-9_-]{1,64}` (hotcold-user-api: at most 20 characters; docs/DECISIONS.md).

use std::time::Duration;

use chrono::SecondsFormat;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{lookup, Cold, Found};
use crate::http::body::query_pairs;
use crate::http::response::{json_response, Resp};
use crate::state::State;
use crate::users::model::UserId;

#[derive(Serialize)]
struct Metadata {
    timestamp: String,
    version: &'static str,
}

#[derive(Serialize)]
struct Out<'a> {
    code: u16,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deeplink: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    promo_message: Option<&'a str>,
    cache_hit: bool,
    metadata: Metadata,
}

/// The two fields this endpoint shows, read from the cached full record.
#[derive(Deserialize)]
struct Projection {
    deeplink: Option<String>,
    promo_message: Option<String>,
}

fn reply(status: StatusCode, message: &str, user: Option<(&str, &Projection)>, cache_hit: bool) -> Resp {
    let out = Out {
        code: status.as_u16(),
        message,
        user_id: user.map(|u| u.0),
        deeplink: user.map(|u| u.1.deeplink.as_deref().unwrap_or("")),
        promo_message: user.map(|u| u.1.promo_message.as_deref().unwrap_or("")),
        cache_hit,
        metadata: Metadata {
            timestamp: chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            version: "v1",
        },
    };
    json_response(status, &out)
}

pub async fn v1_users(state: &State, req: Request<Incoming>) -> Resp {
    let id = query_pairs(req.uri().query()).find(|(k, _)| k == "user_id").map(|(_, v)| v.into_owned());
    // Every id this service stores, `[A-Za-z0-9_-]{1,64}`: hotcold-user-api allowed 20 characters,
    // which would leave every generated (UUIDv7, 36 characters) id unreachable here.
    let Some(user_id) = id.as_deref().and_then(|s| UserId::parse(s).ok()) else {
        return reply(StatusCode::BAD_REQUEST, "invalid user_id", None, false);
    };
    let id = user_id.as_str();
    let deadline = Duration::from_millis(state.cfg.request_timeout_ms);
    let found = match tokio::time::timeout(deadline, lookup(state, &user_id)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(user = %id, error = ?e, "cache lookup failed");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None, false);
        }
        Err(_) => {
            tracing::warn!(user = %id, deadline_ms = state.cfg.request_timeout_ms, "cache lookup timed out");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None, false);
        }
    };
    let (bytes, hit) = match found {
        Found::Hit(b) => (b, true),
        Found::Cold(Cold::Found(b)) => (b, false),
        Found::NegativeHit | Found::Cold(Cold::NotFound) => {
            return reply(StatusCode::NOT_FOUND, "not found", None, false);
        }
    };
    match sonic_rs::from_slice::<Projection>(&bytes) {
        Ok(p) => reply(StatusCode::OK, if hit { "ok:redis" } else { "ok:postgres" }, Some((id, &p)), hit),
        Err(e) => {
            tracing::error!(user = %id, error = %e, "cached record does not parse");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None, hit)
        }
    }
}
