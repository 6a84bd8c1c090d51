//! In-process fan-out. Each worker subscribes ONCE to the Redis event channel
//! ([`listen`]) and hands every event to the local subscribers watching that user, through
//! a bounded buffer per subscriber. A full buffer means the subscriber is too slow: it is
//! signalled, dropped from the hub, and its stream tells the client and ends, so one slow
//! reader never slows the others or grows memory.
//!
//! If the pub/sub connection is lost, events may have been missed: every subscriber gets
//! [`Msg::Lost`] (its stream tells the client and closes; clients reconnect and get a
//! fresh snapshot), and new subscriptions are refused until the channel is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::Event;
use crate::redis::RedisHandle;

/// An event as delivered: shared by every local watcher, with its SSE frame rendered once
/// (not once per subscriber: a change watched by 10,000 streams is formatted once).
#[derive(Debug)]
pub struct Delivery {
    pub event: Event,
    pub sse: bytes::Bytes,
}

impl std::ops::Deref for Delivery {
    type Target = Event;
    fn deref(&self) -> &Event {
        &self.event
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Msg {
    Event(Arc<Delivery>),
    /// The event channel was lost: events may be missing.
    Lost,
}

#[derive(Debug)]
struct Slot {
    sub: u64,
    tx: mpsc::Sender<Msg>,
    lagged: Arc<Notify>,
}

#[derive(Debug)]
pub struct Hub {
    by_user: Mutex<HashMap<Box<str>, Vec<Slot>>>,
    buffer: usize,
    next: AtomicU64,
    connected: tokio::sync::watch::Sender<bool>,
}

/// One subscriber's end. Dropping it removes the subscriber from the hub.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    watched: Vec<Box<str>>,
    pub rx: mpsc::Receiver<Msg>,
    /// Notified when this subscriber fell too far behind and was dropped.
    pub lagged: Arc<Notify>,
}

impl Hub {
    pub fn new(buffer: usize) -> Hub {
        Hub {
            by_user: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            next: AtomicU64::new(0),
            connected: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Is this worker receiving events right now?
    pub fn connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits up to `wait` for the event channel (a worker that just started, or Redis
    /// that just came back); true once connected.
    pub async fn wait_connected(&self, wait: Duration) -> bool {
        let mut rx = self.connected.subscribe();
        let ok = matches!(tokio::time::timeout(wait, rx.wait_for(|c| *c)).await, Ok(Ok(_)));
        ok
    }

    /// Registers a subscriber for `watched` (deduplicated by the caller).
    pub fn subscribe(self: &Arc<Self>, watched: Vec<Box<str>>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let lagged = Arc::new(Notify::new());
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = self.by_user.lock().expect("hub lock");
            for u in &watched {
                map.entry(u.clone()).or_default().push(Slot { sub: id, tx: tx.clone(), lagged: lagged.clone() });
            }
        }
        metrics::gauge!("presence_subscribers").increment(1.0);
        Subscription { hub: self.clone(), id, watched, rx, lagged }
    }

    /// Hands `ev` to every local watcher of its user, never waiting.
    pub fn dispatch(&self, ev: Event) {
        let mut map = self.by_user.lock().expect("hub lock");
        let Some(slots) = map.get_mut(&ev.user_id) else { return };
        let ev = Arc::new(Delivery { sse: super::sse::frame(&ev), event: ev });
        slots.retain(|s| match s.tx.try_send(Msg::Event(ev.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("presence_subscribers_dropped_total", "reason" => "slow").increment(1);
                s.lagged.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        metrics::counter!("presence_events_delivered_total").increment(slots.len() as u64);
    }

    /// The channel was lost: tell every subscriber and forget them all.
    fn lose_all(&self) {
        let mut map = self.by_user.lock().expect("hub lock");
        for slot in map.values().flatten() {
            if slot.tx.try_send(Msg::Lost).is_err() {
                slot.lagged.notify_one();
            }
        }
        map.clear();
    }

    fn unsubscribe(&self, id: u64, watched: &[Box<str>]) {
        let mut map = self.by_user.lock().expect("hub lock");
        for u in watched {
            if let Some(slots) = map.get_mut(u) {
                slots.retain(|s| s.sub != id);
                if slots.is_empty() {
                    map.remove(u);
                }
            }
        }
    }
}

impl Subscription {
    /// The watched ids, sorted and distinct.
    pub fn watched(&self) -> &[Box<str>] {
        &self.watched
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.watched);
        metrics::gauge!("presence_subscribers").decrement(1.0);
    }
}

/// This worker's one subscription to the event channel, kept alive until `cancel`:
/// reconnects with back-off, and treats Redis reported down by the pinger as a lost
/// channel (a half-open connection would otherwise wait forever).
pub async fn listen(
    client: redis::Client,
    channel: String,
    hub: Arc<Hub>,
    redis: RedisHandle,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connect = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(2), connect) => r,
        };
        let ps = match ps {
            Ok(Ok(ps)) => ps,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "presence channel: subscribe failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => continue,
        };
        backoff = Duration::from_millis(100);
        hub.connected.send_replace(true);
        tracing::info!(channel, "presence channel subscribed");
        let mut messages = ps.into_on_message();
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                m = messages.next() => match m {
                    Some(msg) => match Event::parse(msg.get_payload_bytes()) {
                        Some(ev) => hub.dispatch(ev),
                        None => tracing::warn!("presence channel: malformed event ignored"),
                    },
                    None => break,
                },
                _ = check.tick() => if !redis.is_up() { break },
            }
        }
        hub.connected.send_replace(false);
        hub.lose_all();
        metrics::counter!("presence_channel_lost_total").increment(1);
        tracing::warn!(channel, "presence channel lost; subscribers told; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> Event {
        Event { user_id: id.into(), status: super::super::Status::Online, at_ms: 1 }
    }

    #[tokio::test]
    async fn fans_out_to_watchers_only_and_cleans_up() {
        let hub = Arc::new(Hub::new(8));
        let mut a = hub.subscribe(vec!["u1".into(), "u2".into()]);
        let mut b = hub.subscribe(vec!["u2".into()]);
        hub.dispatch(ev("u1"));
        hub.dispatch(ev("u2"));
        hub.dispatch(ev("u3"));
        assert!(matches!(a.rx.recv().await, Some(Msg::Event(e)) if &*e.user_id == "u1"));
        assert!(matches!(a.rx.recv().await, Some(Msg::Event(e)) if &*e.user_id == "u2"));
        assert!(matches!(b.rx.recv().await, Some(Msg::Event(e)) if &*e.user_id == "u2"));
        assert!(b.rx.try_recv().is_err(), "u3 is watched by nobody");
        drop(a);
        drop(b);
        assert!(hub.by_user.lock().unwrap().is_empty(), "dropped subscribers leave nothing behind");
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_without_blocking() {
        let hub = Arc::new(Hub::new(2));
        let slow = hub.subscribe(vec!["u".into()]);
        let mut fast = hub.subscribe(vec!["u".into()]);
        for _ in 0..3 {
            hub.dispatch(ev("u"));
            assert!(fast.rx.recv().await.is_some());
        }
        // The third event overflowed `slow`'s buffer of 2: it was told and removed.
        tokio::time::timeout(Duration::from_secs(1), slow.lagged.notified()).await.expect("told");
        assert_eq!(hub.by_user.lock().unwrap()["u"].len(), 1);
    }
}
