//! `GET /api/v1/presence/stream?watch=a,b,c`: Server-Sent Events for browsers.
//!
//! The stream opens with a `: worker <pid>` comment, `retry: 2000` and an `event: snapshot` holding every watched
//! user's current status, then one `event: status` per change, and a `: keep-alive`
//! comment every `SSE_KEEPALIVE_MS` (which also notices a departed client). It ends with
//! an `event: error` (`REDIS_ERROR` when the event channel was lost, `SLOW_CONSUMER` when
//! this client fell behind its buffer), or silently at server shutdown; `EventSource`
//! reconnects by itself and gets a fresh snapshot. The subscription is registered before
//! the snapshot is read, so no change between the two is missed.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use futures_util::StreamExt as _;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};

use super::{parse_id, Error, Msg, Presence, Snapshot, Subscription};
use crate::http::body::query_pairs;
use crate::http::error::ApiError;
use crate::http::response::{self, Reply};
use crate::state::State;

/// Parses `watch` (comma-separated, repeatable) into distinct validated ids.
///
/// # Errors
/// 400 for a bad id, no ids, or more than `max` ids.
pub fn watch_list(query: Option<&str>, max: usize) -> Result<Vec<Box<str>>, Error> {
    let mut ids: Vec<Box<str>> = Vec::new();
    for (k, v) in query_pairs(query) {
        if k == "watch" {
            for id in v.split(',').filter(|s| !s.is_empty()) {
                ids.push(parse_id(id)?.into());
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(Error::invalid("MISSING_WATCH", "watch=<id>[,<id>...] is required"));
    }
    if ids.len() > max {
        return Err(Error::invalid("TOO_MANY_IDS", format!("at most {max} watched ids")));
    }
    Ok(ids)
}

/// Registers the subscription, then reads the snapshot (so nothing between is missed).
///
/// # Errors
/// `RedisDown` while this worker's event channel is down; the snapshot's Redis errors.
pub async fn open(p: &Presence, watched: Vec<Box<str>>) -> Result<(Subscription, Vec<Snapshot>), Error> {
    if !p.hub.connected() && !p.hub.wait_connected(std::time::Duration::from_secs(1)).await {
        return Err(Error::RedisDown);
    }
    let sub = p.hub.subscribe(watched);
    let snap = p.store.snapshot(sub.watched()).await?;
    Ok((sub, snap))
}

pub async fn stream(state: &State, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let p = &state.presence;
    let watched = watch_list(req.uri().query(), p.max_watch)?;
    let (sub, snap) = open(p, watched).await?;
    let mut first = String::with_capacity(64 + snap.len() * 64);
    // The comment names the worker process serving this stream (for operators and tests).
    first.push_str(&format!(": worker {}\nretry: 2000\n\nevent: snapshot\ndata: {{\"users\":[", std::process::id()));
    for (i, (id, s)) in sub.watched().iter().zip(&snap).enumerate() {
        if i > 0 {
            first.push(',');
        }
        first.push_str(&format!(
            "{{\"user_id\":\"{id}\",\"status\":\"{}\",\"last_seen\":{}}}",
            s.status.name(),
            s.last_seen_ms
        ));
    }
    first.push_str("]}\n\n");
    let events = Events { sub, presence: state.presence.clone(), first: Some(first), done: false };
    let body = stream::unfold(events, Events::next).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    let body = http_body_util::StreamBody::new(body).map_err(|e| match e {}).boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response::stream(resp))
}

/// One change as an SSE frame (`timestamp` in unix ms).
pub fn frame(e: &super::Event) -> Bytes {
    Bytes::from(format!(
        "event: status\ndata: {{\"user_id\":\"{}\",\"status\":\"{}\",\"timestamp\":{}}}\n\n",
        e.user_id,
        e.status.name(),
        e.at_ms
    ))
}

struct Events {
    sub: Subscription,
    presence: Arc<Presence>,
    first: Option<String>,
    done: bool,
}

impl Events {
    async fn next(mut self) -> Option<(Bytes, Events)> {
        if let Some(first) = self.first.take() {
            return Some((Bytes::from(first), self));
        }
        if self.done {
            return None;
        }
        let keepalive = tokio::time::sleep(self.presence.keepalive);
        let chunk = tokio::select! {
            biased;
            _ = self.presence.shutdown.cancelled() => return None,
            _ = self.sub.lagged.notified() => {
                self.done = true;
                Bytes::from_static(b"event: error\ndata: {\"code\":\"SLOW_CONSUMER\",\"error\":\"subscriber fell behind; reconnect\"}\n\n")
            }
            m = self.sub.rx.recv() => match m {
                Some(Msg::Event(e)) => e.sse.clone(),
                Some(Msg::Lost) | None => {
                    self.done = true;
                    Bytes::from_static(b"event: error\ndata: {\"code\":\"REDIS_ERROR\",\"error\":\"presence events interrupted; reconnect\"}\n\n")
                }
            },
            _ = keepalive => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((chunk, self))
    }
}
