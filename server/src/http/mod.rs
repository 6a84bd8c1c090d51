//! HTTP: the accept loop ([`server`]), the route table ([`router`]), input ([`body`]),
//! output ([`response`]) and the one error-to-response mapping ([`error`]).
//!
//! Every request passes through [`handle`]: request id (taken from `X-Request-Id` or
//! made), route lookup, the whole-request deadline (504), the handler, then the
//! request-id header, metrics and one structured access-log line.

pub mod body;
pub mod error;
pub mod json_depth;
pub mod response;
pub mod router;
pub mod server;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request};
use hyper::body::Incoming;

use crate::state::State;
use crate::{system, users};
use error::ApiError;
use response::{full, Reply, Resp};
use router::Handler;

pub const REQUEST_ID: &str = "x-request-id";

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// A client's id if it is sane (1-128 visible ASCII characters), else a fresh one:
/// `<pid hex>-<sequence hex>`, unique per process and cheap (no randomness needed).
fn request_id(req: &Request<Incoming>) -> HeaderValue {
    if let Some(v) = req.headers().get(REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let id = format!("{:x}-{:x}", std::process::id(), REQUEST_SEQ.fetch_add(1, Ordering::Relaxed));
    HeaderValue::from_str(&id).expect("hex is a valid header value")
}

/// The service function: never fails (errors become responses).
pub async fn handle(state: State, req: Request<Incoming>, peer: std::net::IpAddr) -> Result<Reply, Infallible> {
    let start = Instant::now();
    let rid = request_id(&req);
    // Borrowed from the header value (no copy); the value moves into the response last.
    let rid_str = rid.to_str().unwrap_or("-");
    let method = req.method().clone();
    let http1 = req.version() < http::Version::HTTP_2;
    let (mut resp, route) = match router::find(&method, req.uri().path()) {
        Ok(m) => {
            let (handler, pattern) = (m.handler, m.pattern);
            let param = m.param.map(str::to_owned);
            let deadline = Duration::from_millis(state.cfg.long_request_timeout_ms);
            let out = match tokio::time::timeout(deadline, dispatch(&state, handler, req, param, peer)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::Timeout(state.cfg.long_request_timeout_ms)),
            };
            (out.unwrap_or_else(|e| full(e.into_response(rid_str))), pattern)
        }
        Err(e) => (full(e.into_response(rid_str)), "unmatched"),
    };
    if http1 && state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let m = method_label(&method);
    metrics::counter!("http_requests_total", "route" => route, "method" => m, "status" => status_label(status))
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => m).record(elapsed.as_secs_f64());
    if state.cfg.access_log {
        tracing::info!(target: "access", request_id = %rid_str, method = %method, route, status, micros = elapsed.as_micros() as u64);
    }
    resp.headers_mut().insert(REQUEST_ID, rid);
    Ok(resp)
}

/// Label values as `&'static str`, so recording a metric allocates nothing.
fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[allow(clippy::match_overlapping_arm)] // exact codes first, then their class
fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        429 => "429",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        504 => "504",
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

async fn dispatch(
    state: &State,
    handler: Handler,
    req: Request<Incoming>,
    param: Option<String>,
    peer: std::net::IpAddr,
) -> Result<Reply, ApiError> {
    match handler {
        Handler::PresenceStream => crate::presence::sse::stream(state, req).await,
        Handler::Checkout | Handler::Purchase => {
            state.sale_limits.check(peer)?;
            dispatch_full(state, handler, req, param).await.map(full)
        }
        _ => dispatch_full(state, handler, req, param).await.map(full),
    }
}

/// With `admin_token` set, the admin surfaces need `Authorization: Bearer <admin_token>`
/// (compared in constant time; the token is never logged).
fn admin_allowed(state: &State, req: &Request<Incoming>) -> Result<(), ApiError> {
    let want = state.cfg.admin_token.as_bytes();
    if want.is_empty() {
        return Ok(());
    }
    let got = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    let same = got.len() == want.len() && got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("this admin route needs Authorization: Bearer <ADMIN_TOKEN>"))
    }
}

/// The routes whose body is whole (every one but the event stream).
async fn dispatch_full(
    state: &State,
    handler: Handler,
    req: Request<Incoming>,
    param: Option<String>,
) -> Result<Resp, ApiError> {
    if matches!(handler, Handler::Metrics | Handler::ShardStats) {
        admin_allowed(state, &req)?;
    }
    match handler {
        Handler::Health => Ok(system::health(state)),
        Handler::Ready => Ok(system::ready(state)),
        Handler::Metrics => Ok(system::metrics(state).await),
        Handler::ShardStats => system::shard_stats(state).await,
        Handler::CreateUser => users::create(state, req).await,
        Handler::ListUsers => users::list(state, req).await,
        Handler::GetUser => users::get(state, req, param.as_deref().unwrap_or_default()).await,
        Handler::UpdateUser => users::update(state, req, param.as_deref().unwrap_or_default()).await,
        Handler::DeleteUser => users::delete(state, param.as_deref().unwrap_or_default()).await,
        Handler::CacheLookup => Ok(crate::cache::seed::v1_users(state, req).await),
        Handler::Checkout => crate::sale::checkout(state, req).await,
        Handler::Purchase => crate::sale::purchase(state, req).await,
        Handler::SaleStatus => crate::sale::status(state).await,
        Handler::Heartbeat => crate::presence::http::heartbeat(state, req).await,
        Handler::PresenceStatus => crate::presence::http::status(state, req).await,
        Handler::PresenceStream => Err(ApiError::internal(std::io::Error::other("stream route dispatched as whole"))),
        Handler::OpenApi => Ok(crate::openapi::document()),
        Handler::Swagger => crate::openapi::swagger(param.as_deref()),
    }
}
