//! Online resharding: the ring every request routes by, and how it changes while serving.
//!
//! - [`RingControl`] (one per worker, in `AppState`): the current [`RingView`] and the write
//!   gate of a move. Reads route by the view's ring and never wait. Writes of a key that the
//!   next ring moves wait while the view is *paused*, and are counted while in flight so the
//!   worker can tell the resharder "none of mine is still writing to the old shard". Writes
//!   begun before a move was announced are counted too: the worker acknowledges `copying` only
//!   once they are done, so every write still running at the pause is one the gate counted.
//! - [`watch`]: the per-worker task that polls the control row on shard 0 (`shardgate_ring`),
//!   applies a new view, and acknowledges it (`shardgate_ring_workers`). One round trip per
//!   poll (the acknowledgement rides on the read).
//! - [`mover`]: `shardgate reshard add | verify | rollback | status`, the process that copies
//!   the moving rows, drives the cutover and cleans up. [`control`] holds the SQL both share.
//!
//! The protocol (docs/SHARDING_GUIDE.md): `stable` → `copying` (change capture on, rows
//! copied; workers route by the old ring) → `paused` (moving-key writes wait; every live worker
//! acknowledges once its in-flight moving writes are done; the last changes drain) → one
//! UPDATE makes the new ring current (`cleaning`, version + 1) → moved rows removed from their
//! old shards → `stable`.

pub mod control;
pub mod mover;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sharding::{Ring, ShardId};

pub use control::{Phase, RingRow};

/// A worker that could not read the control row for this long treats every moving key as
/// paused: the resharder counts a worker silent for [`control::LIVE_WINDOW_S`] as gone, and
/// must be able to trust that such a worker is not writing to an old shard.
const FENCE_AFTER: Duration = Duration::from_millis(1000);

/// How long a moving-key write waits for a cutover before answering 503.
const PAUSE_LIMIT: Duration = Duration::from_secs(5);

/// What one worker routes by. Immutable; a change swaps in a new one.
#[derive(Debug)]
pub struct RingView {
    pub version: i32,
    pub phase: Phase,
    /// Routes every read and every write of a key that does not move.
    pub ring: Ring,
    /// While copying or paused: the ring being moved to.
    pub next: Option<Ring>,
}

impl RingView {
    fn from_row(row: &RingRow, vnodes: usize) -> RingView {
        let next = match row.phase {
            Phase::Copying | Phase::Paused => row.target.map(|t| Ring::new(t as usize, vnodes)),
            Phase::Stable | Phase::Cleaning => None,
        };
        RingView { version: row.version, phase: row.phase, ring: Ring::new(row.shards as usize, vnodes), next }
    }

    fn same_as(&self, row: &RingRow) -> bool {
        self.version == row.version
            && self.phase == row.phase
            && self.ring.shard_count() == row.shards as usize
            && self.next.as_ref().map(Ring::shard_count)
                == row.target.filter(|_| self.next.is_some()).map(|t| t as usize)
    }

    /// The shards of the current ring (what a fan-out reads; a shard being added is not one).
    pub fn shards(&self) -> impl Iterator<Item = ShardId> + Clone {
        (0..self.ring.shard_count() as u16).map(ShardId::new)
    }

    /// True when `key` lives on another shard under the next ring.
    pub fn moves(&self, key: &str) -> bool {
        self.next.as_ref().is_some_and(|n| n.shard_for_str(key) != self.ring.shard_for_str(key))
    }
}

/// The ring of one worker process and the write gate of a move in progress.
#[derive(Debug)]
pub struct RingControl {
    view: RwLock<Arc<RingView>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Writes of moving keys that are past the gate and not finished.
    moving_in_flight: AtomicUsize,
    /// Writes begun while no move was announced (no `next` ring), not finished. Before a
    /// worker acknowledges `copying` it waits for these: they were not counted as moving, and
    /// one still running at the cutover could reach an old shard after the last drain.
    unplanned_in_flight: AtomicUsize,
    /// Milliseconds since `born` of the last successful poll.
    last_poll_ms: AtomicU64,
    born: Instant,
    vnodes: usize,
    /// Shards the topology names (and this worker has pools for).
    known_shards: usize,
}

/// Held by a write until it has finished on its shard (it is counted while it runs).
#[must_use]
pub struct WriteGuard<'a>(Option<&'a AtomicUsize>);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A moving-key write waited [`PAUSE_LIMIT`] for a cutover that did not finish.
#[derive(Debug)]
pub struct PausedTooLong(pub ShardId);

impl From<PausedTooLong> for crate::http::error::ApiError {
    fn from(p: PausedTooLong) -> Self {
        // 503 SHARD_UNAVAILABLE with Retry-After: the owner of the key cannot take the write
        // right now; a retry lands after the cutover.
        crate::http::error::ApiError::ShardUnavailable { shard: p.0 }
    }
}

impl RingControl {
    /// Starts from `row` (read at start-up) or, without one, a ring of every known shard.
    pub fn new(row: Option<&RingRow>, known_shards: usize, vnodes: usize) -> RingControl {
        let fallback = RingRow::initial(known_shards as i32);
        let row = row.unwrap_or(&fallback);
        let view = RingView::from_row(row, vnodes);
        RingControl {
            view: RwLock::new(Arc::new(view)),
            changed: tokio::sync::watch::Sender::new(0),
            moving_in_flight: AtomicUsize::new(0),
            unplanned_in_flight: AtomicUsize::new(0),
            last_poll_ms: AtomicU64::new(0),
            born: Instant::now(),
            vnodes,
            known_shards,
        }
    }

    /// The current view (one uncontended read lock and an `Arc` clone).
    pub fn view(&self) -> Arc<RingView> {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The shard a read of `key` goes to (never waits; no `Arc` clone).
    pub fn read_shard(&self, key: &str) -> ShardId {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner).ring.shard_for_str(key)
    }

    fn fenced(&self) -> bool {
        let last = self.last_poll_ms.load(Ordering::Relaxed);
        (self.born.elapsed().as_millis() as u64).saturating_sub(last) > FENCE_AFTER.as_millis() as u64
    }

    /// The shard a write of `key` goes to, and a guard to hold until the write is done.
    /// Without a move in progress: the ring's shard at once. During a move, a key that moves
    /// waits while the view is paused (or this worker is fenced), then routes by whatever
    /// ring is current.
    ///
    /// # Errors
    /// [`PausedTooLong`] after [`PAUSE_LIMIT`].
    pub async fn write_shard(&self, key: &str) -> Result<(ShardId, WriteGuard<'_>), PausedTooLong> {
        let deadline = tokio::time::Instant::now() + PAUSE_LIMIT;
        loop {
            let v = self.view();
            let here = v.ring.shard_for_str(key);
            if v.next.is_none() {
                // Count first, then look again (as below): the watcher waits for these before
                // it acknowledges a move.
                self.unplanned_in_flight.fetch_add(1, Ordering::SeqCst);
                if Arc::ptr_eq(&v, &self.view()) {
                    return Ok((here, WriteGuard(Some(&self.unplanned_in_flight))));
                }
                self.unplanned_in_flight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            if !v.moves(key) {
                return Ok((here, WriteGuard(None)));
            }
            if v.phase != Phase::Paused && !self.fenced() {
                // Count first, then look again: the watcher stores `paused` and then waits for
                // the count to reach 0, so one of the two always sees the other (SeqCst).
                self.moving_in_flight.fetch_add(1, Ordering::SeqCst);
                let again = self.view();
                if Arc::ptr_eq(&v, &again) && !self.fenced() {
                    return Ok((here, WriteGuard(Some(&self.moving_in_flight))));
                }
                self.moving_in_flight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let mut rx = self.changed.subscribe();
            if !Arc::ptr_eq(&v, &self.view()) {
                continue;
            }
            let wait = tokio::time::timeout_at(deadline, rx.changed());
            let poll = tokio::time::sleep(Duration::from_millis(20)); // a fence lifts without a new view
            tokio::select! {
                r = wait => if r.is_err() { return Err(PausedTooLong(here)) },
                () = poll => if tokio::time::Instant::now() >= deadline { return Err(PausedTooLong(here)) },
            }
        }
    }

    /// Waits for the view to change from `seen`, at most [`PAUSE_LIMIT`]; returns the current
    /// view either way.
    pub async fn wait_change(&self, seen: &Arc<RingView>) -> Arc<RingView> {
        let deadline = tokio::time::Instant::now() + PAUSE_LIMIT;
        loop {
            let mut rx = self.changed.subscribe();
            let now = self.view();
            if !Arc::ptr_eq(seen, &now) || tokio::time::Instant::now() >= deadline {
                return now;
            }
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
        }
    }

    /// Applies a control row; returns true when the view changed.
    fn apply(&self, row: &RingRow) -> Result<bool, String> {
        let need = row.target.unwrap_or(row.shards).max(row.shards) as usize;
        if need > self.known_shards {
            return Err(format!(
                "the ring (version {}) needs {need} shards but this worker's topology has {}; \
                 add the new shard to the topology and reload (SIGHUP)",
                row.version, self.known_shards
            ));
        }
        if self.view().same_as(row) {
            return Ok(false);
        }
        let view = Arc::new(RingView::from_row(row, self.vnodes));
        *self.view.write().unwrap_or_else(std::sync::PoisonError::into_inner) = view;
        self.changed.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Waits (bounded) until no moving-key write of this worker is in flight.
    #[cfg(test)]
    async fn drain_moving(&self, limit: Duration) -> bool {
        Self::drain(&self.moving_in_flight, limit).await
    }

    /// Waits (bounded) until every write begun before a move was announced has finished.
    #[cfg(test)]
    async fn drain_unplanned(&self, limit: Duration) -> bool {
        Self::drain(&self.unplanned_in_flight, limit).await
    }

    #[cfg(test)]
    async fn drain(counter: &AtomicUsize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while counter.load(Ordering::SeqCst) > 0 {
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }
}

/// Polls shard 0's control row for as long as the worker runs, applying and acknowledging
/// each change. Polls every `interval` while the ring is stable and every 20 ms during a move.
/// It does not stop at the start of a drain: a draining worker may still have writes in
/// flight, and the resharder must keep seeing it (the worker deregisters after its drain).
pub async fn watch(state: crate::state::State, interval: Duration) {
    let ctl = &state.ring;
    let worker = control::worker_name();
    let pool = &state.pools.get(ShardId::new(0)).primary;
    let mut acked = {
        let v = ctl.view();
        (v.version, v.phase)
    };
    loop {
        let resharding = ctl.view().phase != Phase::Stable;
        match tokio::time::timeout(Duration::from_secs(1), control::poll(pool, &worker, acked.0, acked.1)).await {
            Ok(Ok(Some(row))) => {
                ctl.last_poll_ms.store(ctl.born.elapsed().as_millis() as u64, Ordering::Relaxed);
                row.record_metrics();
                match ctl.apply(&row) {
                    Ok(changed) => {
                        if changed {
                            tracing::info!(version = row.version, shards = row.shards, target = ?row.target, phase = row.phase.as_str(), "ring view changed");
                        }
                        let want = (row.version, row.phase);
                        if acked != want {
                            // Copying: writes begun before the move was announced must be done.
                            // Paused: also those of moving keys. (A worker that jumps from
                            // stable straight to paused waits for both.)
                            let need_unplanned =
                                acked.1 == Phase::Stable && matches!(row.phase, Phase::Copying | Phase::Paused);
                            let need_moving = row.phase == Phase::Paused;
                            if drain_keeping_alive(ctl, pool, &worker, acked, need_unplanned, need_moving).await {
                                acked = want;
                            }
                            continue; // acknowledge at once
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot apply the ring"),
                }
            }
            Ok(Ok(None)) => {} // not migrated yet: keep the start-up ring
            Ok(Err(e)) => tracing::debug!(error = %e, "ring control poll failed"),
            Err(_) => tracing::debug!("ring control poll timed out"),
        }
        let pause = if resharding { Duration::from_millis(20) } else { interval };
        tokio::time::sleep(pause).await;
    }
}

/// Waits (at most 15 s) for the counted writes to finish, re-sending the previous
/// acknowledgement every 200 ms so the resharder keeps counting this worker as alive.
async fn drain_keeping_alive(
    ctl: &RingControl,
    pool: &sqlx::PgPool,
    worker: &str,
    acked: (i32, Phase),
    unplanned: bool,
    moving: bool,
) -> bool {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let busy = (unplanned && ctl.unplanned_in_flight.load(Ordering::SeqCst) > 0)
            || (moving && ctl.moving_in_flight.load(Ordering::SeqCst) > 0);
        if !busy {
            return true;
        }
        if Instant::now() > until {
            tracing::warn!("writes still in flight after 15 s; not acknowledging the ring change yet");
            tokio::time::sleep(Duration::from_millis(20)).await;
            return false;
        }
        let step = Instant::now() + Duration::from_millis(200);
        while Instant::now() < step {
            let busy = (unplanned && ctl.unplanned_in_flight.load(Ordering::SeqCst) > 0)
                || (moving && ctl.moving_in_flight.load(Ordering::SeqCst) > 0);
            if !busy {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), control::poll(pool, worker, acked.0, acked.1)).await
        {
            ctl.last_poll_ms.store(ctl.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}

/// Removes this worker's acknowledgement row: called once it has stopped serving.
pub async fn deregister(state: &crate::state::State) {
    let pool = &state.pools.get(ShardId::new(0)).primary;
    let _ = tokio::time::timeout(Duration::from_secs(1), control::deregister(pool, &control::worker_name())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(shards: i32, target: Option<i32>, phase: Phase) -> RingRow {
        RingRow { version: 1, shards, target, phase, rows_copied: 0, lag_rows: 0 }
    }

    fn moving_key(ctl: &RingControl) -> String {
        (0..).map(|i| format!("k{i}")).find(|k| ctl.view().moves(k)).unwrap()
    }

    fn steady_key(ctl: &RingControl) -> String {
        (0..).map(|i| format!("k{i}")).find(|k| !ctl.view().moves(k)).unwrap()
    }

    #[tokio::test]
    async fn stable_writes_route_by_the_ring_without_a_guard() {
        let ctl = RingControl::new(None, 5, 100);
        ctl.last_poll_ms.store(u64::MAX / 2, Ordering::Relaxed);
        let (s, g) = ctl.write_shard("user123").await.unwrap();
        assert_eq!(s, Ring::new(5, 100).shard_for_str("user123"));
        assert_eq!(ctl.unplanned_in_flight.load(Ordering::SeqCst), 1, "counted until done");
        drop(g);
        assert_eq!(ctl.unplanned_in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_write_begun_before_the_move_was_announced_holds_the_copying_acknowledgement() {
        let ctl = RingControl::new(None, 6, 100);
        ctl.last_poll_ms.store(u64::MAX / 2, Ordering::Relaxed);
        let (_, g) = ctl.write_shard("user123").await.unwrap();
        ctl.apply(&row(5, Some(6), Phase::Copying)).unwrap();
        assert!(!ctl.drain_unplanned(Duration::from_millis(20)).await, "still in flight");
        let (_, g2) = ctl.write_shard("user123").await.unwrap(); // begun after: not counted there
        drop(g);
        assert!(ctl.drain_unplanned(Duration::from_millis(20)).await);
        drop(g2);
    }

    #[tokio::test]
    async fn a_paused_moving_write_waits_for_the_switch_then_goes_to_the_new_shard() {
        let ctl = Arc::new(RingControl::new(Some(&row(5, Some(6), Phase::Copying)), 6, 100));
        ctl.last_poll_ms.store(u64::MAX / 2, Ordering::Relaxed);
        let key = moving_key(&ctl);
        let steady = steady_key(&ctl);
        {
            let (s, g) = ctl.write_shard(&key).await.unwrap();
            assert_ne!(s.get(), 5, "before the switch a moving key is written to its old shard");
            assert_eq!(ctl.moving_in_flight.load(Ordering::SeqCst), 1);
            drop(g);
        }
        ctl.apply(&row(5, Some(6), Phase::Paused)).unwrap();
        assert!(ctl.drain_moving(Duration::from_millis(10)).await);
        let (s, _g) = ctl.write_shard(&steady).await.unwrap(); // keys that stay are never paused
        assert_eq!(s, Ring::new(5, 100).shard_for_str(&steady));
        let c2 = ctl.clone();
        let k2 = key.clone();
        let waiter = tokio::spawn(async move { c2.write_shard(&k2).await.map(|(s, _)| s).ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a moving write must wait while paused");
        let switched = RingRow { version: 2, ..row(6, None, Phase::Cleaning) };
        ctl.apply(&switched).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(ShardId::new(5)));
    }

    #[tokio::test]
    async fn a_worker_that_cannot_poll_is_fenced_for_moving_keys() {
        let ctl = RingControl::new(Some(&row(5, Some(6), Phase::Copying)), 6, 100);
        // last_poll_ms = 0 and born long enough ago: fenced.
        tokio::time::sleep(FENCE_AFTER + Duration::from_millis(20)).await;
        let key = moving_key(&ctl);
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_millis(100), ctl.write_shard(&key)).await;
        assert!(r.is_err(), "fenced: the write waits");
        assert!(t.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_ring_larger_than_the_topology_is_refused() {
        let ctl = RingControl::new(None, 5, 100);
        assert!(ctl.apply(&row(5, Some(6), Phase::Copying)).is_err());
        assert_eq!(ctl.view().ring.shard_count(), 5);
    }
}
