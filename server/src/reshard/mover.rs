//! `shardgate reshard add | verify | rollback | status`: the process that adds a shard while
//! the service keeps serving (docs/SHARDING_GUIDE.md).
//!
//! `add`, in phases (the control row on shard 0 records the phase, so a second `add` resumes
//! where an interrupted one stopped):
//! 1. **prepare**: migrate the new shard; change capture (a trigger per sharded table on every
//!    old shard, writing `(table, pk, route)` to `shardgate_changes`); phase `copying`.
//! 2. **copy**: every row whose routing key the new ring gives to the new shard is upserted
//!    there (batches of [`BATCH`], whole rows as JSON, so one code path serves every table).
//! 3. **catch up**: changed keys are taken off the change log (`DELETE … RETURNING`, so a
//!    change that commits late is still there next time) and replayed by re-reading the
//!    source row: upsert it, or delete it on the new shard when it is gone. Replays are
//!    idempotent, so order does not matter and a resumed move simply replays again.
//! 4. **verify before the pause**: every moving row compared, source against copy.
//! 5. **cutover**: phase `paused`; every live worker acknowledges once its in-flight writes
//!    of moving keys are done (new ones wait); the last changes drain; the rows changed since
//!    step 4 are compared again; one UPDATE makes the new ring current (version + 1). Writes
//!    of moving keys resume on each worker as it sees it. Reads never pause.
//! 6. **clean up**: change capture off; moved rows deleted from their old shards; placement
//!    verified on every shard; phase `stable`.
//!
//! `rollback` (before the cutover only): the old ring stays, change capture off, the new
//! shard emptied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use database::{connect_options, Endpoint};
use sharding::{Ring, ShardId, Topology};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::control::{self, Phase, RingRow};

/// Rows per copy, replay and clean-up batch.
const BATCH: i64 = 2000;
/// The copy catches up until a pass replays fewer changes than this, then pauses.
const CUTOVER_WHEN_BELOW: usize = 200;

/// A sharded table: its primary key and the column it is routed by.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    pub name: &'static str,
    pub pk: &'static str,
    pub route: &'static str,
}

/// Every sharded table (: sale records by item id, the rest by user id).
pub const TABLES: [Table; 3] = [
    Table { name: "users", pk: "id", route: "id" },
    Table { name: "sales", pk: "item_id", route: "item_id" },
    Table { name: "checkout_attempts", pk: "code", route: "item_id" },
];

struct Cluster {
    topo: Topology,
    pools: Vec<PgPool>,
}

impl Cluster {
    async fn connect(topo: &Topology) -> anyhow::Result<Cluster> {
        let mut pools = Vec::new();
        for s in topo.shard_ids() {
            // UTC: rows are compared as md5(to_jsonb(row)::text), which renders timestamps in
            // the session's time zone; both sides must render them alike.
            let pool = PgPoolOptions::new()
                .max_connections(6)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(connect_options(topo, s, Endpoint::Primary).options([("TimeZone", "UTC")]))
                .await
                .with_context(|| format!("connect to {}'s primary", s.name()))?;
            pools.push(pool);
        }
        Ok(Cluster { topo: topo.clone(), pools })
    }

    fn pool(&self, s: u16) -> &PgPool {
        &self.pools[s as usize]
    }

    fn control(&self) -> &PgPool {
        &self.pools[0]
    }
}

async fn set_phase(c: &Cluster, sets: &str, binds: &[i64]) -> anyhow::Result<()> {
    let sql = format!("UPDATE shardgate_ring SET {sets}, updated_at = now() WHERE id = 1");
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(c.control()).await?;
    Ok(())
}

async fn progress(c: &Cluster, copied: i64, lag: i64) {
    let _ = sqlx::query("UPDATE shardgate_ring SET rows_copied = $1, lag_rows = $2 WHERE id = 1")
        .bind(copied)
        .bind(lag)
        .execute(c.control())
        .await;
}

async fn columns(pool: &PgPool, table: &str) -> anyhow::Result<Vec<String>> {
    let cols: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    if cols.is_empty() {
        bail!("table {table} not found (migrations applied?)");
    }
    Ok(cols)
}

/// Upserts the rows `pks` of `t` from `src` into `dst`; deletes on `dst` the ones `src` no
/// longer has. Returns (upserted, deleted).
async fn replay(src: &PgPool, dst: &PgPool, t: Table, cols: &[String], pks: &[String]) -> anyhow::Result<(u64, u64)> {
    if pks.is_empty() {
        return Ok((0, 0));
    }
    let rows: Vec<(String, sqlx::types::JsonValue)> = sqlx::query_as(&format!(
        "SELECT {pk}::text, to_jsonb(t) FROM {tbl} t WHERE {pk} = ANY($1)",
        pk = t.pk,
        tbl = t.name
    ))
    .bind(pks)
    .fetch_all(src)
    .await?;
    let found: HashSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    let gone: Vec<&str> = pks.iter().map(String::as_str).filter(|k| !found.contains(k)).collect();
    let mut up = 0;
    if !rows.is_empty() {
        let list = cols.join(", ");
        let excluded = cols.iter().map(|c| format!("excluded.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "INSERT INTO {tbl} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{tbl}, $1)
             ON CONFLICT ({pk}) DO UPDATE SET ({list}) = ROW({excluded})",
            tbl = t.name,
            pk = t.pk
        );
        let arr = sqlx::types::JsonValue::Array(rows.into_iter().map(|(_, j)| j).collect());
        up = sqlx::query(&sql).bind(arr).execute(dst).await?.rows_affected();
    }
    let mut del = 0;
    if !gone.is_empty() {
        del = sqlx::query(&format!("DELETE FROM {} WHERE {} = ANY($1)", t.name, t.pk))
            .bind(&gone)
            .execute(dst)
            .await?
            .rows_affected();
    }
    Ok((up, del))
}

/// Keys of `t` on `pool`, in pk order, a batch after `after`: (pk, route).
async fn page(pool: &PgPool, t: Table, after: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {pk}::text, {route}::text FROM {tbl} WHERE {pk}::text > $1 ORDER BY {pk}::text LIMIT $2",
        pk = t.pk,
        route = t.route,
        tbl = t.name
    ))
    .bind(after)
    .bind(BATCH)
    .fetch_all(pool)
    .await?)
}

/// Walks the keys of one table on one shard in pk order, [`BATCH`] at a time.
struct Pager {
    t: Table,
    after: String,
    done: bool,
}

impl Pager {
    fn new(t: Table) -> Pager {
        Pager { t, after: String::new(), done: false }
    }

    /// The next batch of (pk, route), or `None` after the last.
    async fn next(&mut self, pool: &PgPool) -> anyhow::Result<Option<Vec<(String, String)>>> {
        if self.done {
            return Ok(None);
        }
        let keys = page(pool, self.t, &self.after).await?;
        self.done = (keys.len() as i64) < BATCH;
        match keys.last() {
            Some(last) => {
                self.after = last.0.clone();
                Ok(Some(keys))
            }
            None => Ok(None),
        }
    }
}

/// Compares `pks` of `t` on `src` and `dst` (md5 of the whole row); returns those that differ.
async fn diff(src: &PgPool, dst: &PgPool, t: Table, pks: &[String]) -> anyhow::Result<Vec<String>> {
    let sql =
        format!("SELECT {pk}::text, md5(to_jsonb(t)::text) FROM {tbl} t WHERE {pk} = ANY($1)", pk = t.pk, tbl = t.name);
    let a: HashMap<String, String> = sqlx::query_as(&sql).bind(pks).fetch_all(src).await?.into_iter().collect();
    let b: HashMap<String, String> = sqlx::query_as(&sql).bind(pks).fetch_all(dst).await?.into_iter().collect();
    Ok(pks.iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect())
}

struct Move {
    old: Ring,
    new: Ring,
    target: u16,
    cols: HashMap<&'static str, Vec<String>>,
    copied: i64,
    replayed: i64,
    /// Keys replayed since the pre-pause verification started: compared again in the pause.
    dirty: BTreeMap<(u16, &'static str), HashSet<String>>,
    track_dirty: bool,
    /// Ids of the users moved (copied or replayed): their cache entries are dropped once every
    /// worker routes by the new ring.
    moved_users: HashSet<String>,
}

impl Move {
    /// A move from a ring of `old_n` shards to one of `target` (the new shard is `target - 1`).
    async fn new(c: &Cluster, topo: &Topology, old_n: u16, target: i32) -> anyhow::Result<Move> {
        let mut cols = HashMap::new();
        for t in TABLES {
            cols.insert(t.name, columns(c.control(), t.name).await?);
        }
        Ok(Move {
            old: Ring::new(old_n as usize, topo.vnodes),
            new: Ring::new(target as usize, topo.vnodes),
            target: (target - 1) as u16,
            cols,
            copied: 0,
            replayed: 0,
            dirty: BTreeMap::new(),
            track_dirty: false,
            moved_users: HashSet::new(),
        })
    }

    fn moves(&self, route: &str) -> bool {
        self.new.shard_for_str(route).get() == self.target
    }

    async fn copy(&mut self, c: &Cluster) -> anyhow::Result<()> {
        let t0 = Instant::now();
        for s in 0..self.old.shard_count() as u16 {
            for t in TABLES {
                let mut pages = Pager::new(t);
                while let Some(keys) = pages.next(c.pool(s)).await? {
                    let pks: Vec<String> = keys.iter().filter(|(_, r)| self.moves(r)).map(|(p, _)| p.clone()).collect();
                    let (up, _) = replay(c.pool(s), c.pool(self.target), t, &self.cols[t.name], &pks).await?;
                    self.copied += up as i64;
                    if t.name == "users" {
                        self.moved_users.extend(pks);
                    }
                    progress(c, self.copied, 0).await;
                }
            }
            println!("  copied from shard-{s}: {} rows so far ({:.1} s)", self.copied, t0.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// One pass over one old shard's change log: the moving keys it replayed, per table.
    async fn catch_up_shard(&self, c: &Cluster, s: u16) -> anyhow::Result<Vec<(&'static str, Vec<String>)>> {
        let mut out = Vec::new();
        loop {
            // Read, replay, and only then delete exactly the entries replayed: a failed replay
            // leaves them for the next pass, and an entry that commits late (a lower sequence
            // number than one already read) is still there next time.
            let changes: Vec<(i64, String, String, String)> =
                sqlx::query_as("SELECT seq, tbl, pk, route FROM shardgate_changes ORDER BY seq LIMIT $1")
                    .bind(BATCH)
                    .fetch_all(c.pool(s))
                    .await?;
            let n = changes.len();
            let seqs: Vec<i64> = changes.iter().map(|c| c.0).collect();
            let mut by_table: HashMap<&str, HashSet<String>> = HashMap::new();
            for (_, tbl, pk, route) in changes {
                if let Some(t) = TABLES.iter().find(|t| t.name == tbl).filter(|_| self.moves(&route)) {
                    by_table.entry(t.name).or_default().insert(pk);
                }
            }
            for t in TABLES {
                let Some(pks) = by_table.remove(t.name) else { continue };
                let pks: Vec<String> = pks.into_iter().collect();
                replay(c.pool(s), c.pool(self.target), t, &self.cols[t.name], &pks).await?;
                out.push((t.name, pks));
            }
            if !seqs.is_empty() {
                sqlx::query("DELETE FROM shardgate_changes WHERE seq = ANY($1)").bind(&seqs).execute(c.pool(s)).await?;
            }
            if (n as i64) < BATCH {
                return Ok(out);
            }
        }
    }

    /// One pass over every old shard's change log (the shards at once); returns how many
    /// moving changes it replayed. `lag`: also count what is left (not during the pause).
    async fn catch_up(&mut self, c: &Cluster, lag: bool) -> anyhow::Result<usize> {
        let shards = 0..self.old.shard_count() as u16;
        let passes = futures_util::future::join_all(shards.clone().map(|s| self.catch_up_shard(c, s))).await;
        let mut moving = 0;
        for (s, r) in shards.zip(passes) {
            for (t, pks) in r? {
                moving += pks.len();
                self.replayed += pks.len() as i64;
                if t == "users" {
                    self.moved_users.extend(pks.iter().cloned());
                }
                if self.track_dirty {
                    self.dirty.entry((s, t)).or_default().extend(pks);
                }
            }
        }
        if lag {
            let mut left = 0i64;
            for s in 0..self.old.shard_count() as u16 {
                left +=
                    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM shardgate_changes").fetch_one(c.pool(s)).await?;
            }
            progress(c, self.copied, left).await;
        }
        Ok(moving)
    }

    /// Rows on the new shard whose old shard no longer has them (a delete not replayed):
    /// removed from the new shard. Returns how many.
    async fn sweep_orphans(&self, c: &Cluster) -> anyhow::Result<u64> {
        let mut removed = 0;
        for t in TABLES {
            let mut pages = Pager::new(t);
            while let Some(keys) = pages.next(c.pool(self.target)).await? {
                let mut by_old: HashMap<u16, Vec<String>> = HashMap::new();
                for (pk, route) in &keys {
                    by_old.entry(self.old.shard_for_str(route).get()).or_default().push(pk.clone());
                }
                for (s, pks) in by_old {
                    let on_src: HashSet<String> = sqlx::query_scalar(&format!(
                        "SELECT {pk}::text FROM {tbl} WHERE {pk} = ANY($1)",
                        pk = t.pk,
                        tbl = t.name
                    ))
                    .bind(&pks)
                    .fetch_all(c.pool(s))
                    .await?
                    .into_iter()
                    .collect();
                    let gone: Vec<String> = pks.into_iter().filter(|k| !on_src.contains(k)).collect();
                    removed += replay(c.pool(s), c.pool(self.target), t, &self.cols[t.name], &gone).await?.1;
                }
            }
        }
        Ok(removed)
    }

    /// Every moving row on its old shard compared with its copy; returns the keys that differ.
    async fn verify_all(&self, c: &Cluster) -> anyhow::Result<(u64, Vec<(u16, &'static str, String)>)> {
        let (mut checked, mut bad) = (0u64, Vec::new());
        for s in 0..self.old.shard_count() as u16 {
            for t in TABLES {
                let mut pages = Pager::new(t);
                while let Some(keys) = pages.next(c.pool(s)).await? {
                    let pks: Vec<String> = keys.iter().filter(|(_, r)| self.moves(r)).map(|(p, _)| p.clone()).collect();
                    checked += pks.len() as u64;
                    bad.extend(
                        diff(c.pool(s), c.pool(self.target), t, &pks).await?.into_iter().map(|k| (s, t.name, k)),
                    );
                }
            }
        }
        Ok((checked, bad))
    }
}

async fn capture(c: &Cluster, old_shards: u16, on: bool) -> anyhow::Result<()> {
    for s in 0..old_shards {
        for t in TABLES {
            let sql = if on {
                format!(
                    "CREATE OR REPLACE TRIGGER shardgate_capture AFTER INSERT OR UPDATE OR DELETE ON {tbl}
                     FOR EACH ROW EXECUTE FUNCTION shardgate_capture('{pk}', '{route}')",
                    tbl = t.name,
                    pk = t.pk,
                    route = t.route
                )
            } else {
                format!("DROP TRIGGER IF EXISTS shardgate_capture ON {}", t.name)
            };
            sqlx::query(&sql).execute(c.pool(s)).await?;
        }
        if !on {
            sqlx::query("TRUNCATE shardgate_changes").execute(c.pool(s)).await?;
        }
    }
    Ok(())
}

async fn wait_for_workers(c: &Cluster, version: i32, phase: Phase, limit: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    // Entering a move: every worker seen in the last minute (not deregistered). Later phases:
    // workers alive now (a silent one is fenced for moving keys, see `FENCE_AFTER`).
    let window = if phase == Phase::Copying { control::REGISTERED_WINDOW_S } else { control::LIVE_WINDOW_S };
    loop {
        let left = control::laggards(c.control(), version, phase, window).await?;
        if left.is_empty() {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("workers did not acknowledge {} of version {version}: {left:?}", phase.as_str());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Deletes the cache entries (`<prefix>user:<id>`) of `ids`; returns how many existed.
async fn drop_cached(cfg: &crate::config::Config, ids: &HashSet<String>) -> anyhow::Result<u64> {
    let client = redis::Client::open(cfg.redis_url.as_str())?;
    let mut conn = tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection()).await??;
    let keys: Vec<String> = ids.iter().map(|id| format!("{}user:{id}", cfg.redis_key_prefix)).collect();
    let mut n = 0;
    for chunk in keys.chunks(1000) {
        n += redis::cmd("DEL").arg(chunk).query_async::<u64>(&mut conn).await?;
    }
    Ok(n)
}

/// One `reshard` command at a time: a session advisory lock on shard 0's primary, held by a
/// connection of its own until the command ends.
async fn exclusive(topo: &Topology) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&connect_options(topo, ShardId::new(0), Endpoint::Primary))
        .await
        .context("connect to shard-0's primary")?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(7261203)").fetch_one(&mut conn).await?;
    if !got {
        bail!("another `shardgate reshard` command is running");
    }
    Ok(conn)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn current(c: &Cluster) -> anyhow::Result<RingRow> {
    control::read(c.control()).await?.context("no control row on shard 0: run `shardgate migrate up` first")
}

/// `shardgate reshard add`: moves the rows the next ring gives to the topology's last shard.
///
/// # Errors
/// A shard unreachable, workers that do not acknowledge, a verification that finds a
/// difference (the move stops before the cutover; run `add` again or `rollback`).
pub async fn add(cfg: &crate::config::Config, topo: &Topology) -> anyhow::Result<()> {
    let t_start = Instant::now();
    let _lock = exclusive(topo).await?;
    let mut row = {
        let c = Cluster::connect(topo).await?;
        current(&c).await?
    };
    if row.phase == Phase::Stable && row.shards as usize >= topo.len() {
        bail!(
            "the ring already has all {} shards of the topology; add the new shard to the topology first \
             (scripts/cluster.sh up with SHARDS={}, then config/topology.toml)",
            row.shards,
            topo.len() + 1
        );
    }
    // Bring the new shard's schema up (every shard: idempotent).
    for r in database::migrate::up(topo).await {
        r.context("migrate")?;
    }
    let c = Cluster::connect(topo).await?;
    // After the cutover (cleaning) the ring already has the new shard; before it, `target`.
    let target = match row.phase {
        Phase::Cleaning => row.shards,
        _ => row.target.unwrap_or(row.shards + 1),
    };
    if target as usize > topo.len() {
        bail!("the move targets {target} shards but the topology has {}", topo.len());
    }
    let old_n = if row.phase == Phase::Cleaning { row.shards - 1 } else { row.shards } as u16;
    let mut mv = Move::new(&c, topo, old_n, target).await?;
    println!(
        "reshard: ring version {} with {} shards -> {} shards (new shard-{}); phase {}",
        row.version,
        old_n,
        target,
        mv.target,
        row.phase.as_str()
    );

    let mut pause = Duration::ZERO;
    if row.phase != Phase::Cleaning {
        if row.phase == Phase::Paused {
            println!("  resuming an interrupted cutover: writes resume, the copy is checked again");
            set_phase(&c, "phase = 'copying'", &[]).await?;
        }
        if row.phase == Phase::Stable {
            // The new shard is not on the ring: anything on it is left from an abandoned move.
            for t in TABLES {
                sqlx::query(&format!("DELETE FROM {}", t.name)).execute(c.pool(mv.target)).await?;
            }
            capture(&c, old_n, false).await?; // a clean log
            capture(&c, old_n, true).await?;
            set_phase(&c, "phase = 'copying', target = $1::int, rows_copied = 0, lag_rows = 0", &[target.into()])
                .await?;
            println!("  prepare: shard-{} migrated, change capture on shards 0..{}", mv.target, old_n - 1);
        }
        row = current(&c).await?;
        wait_for_workers(&c, row.version, Phase::Copying, Duration::from_secs(90)).await?;

        let t_copy = Instant::now();
        mv.copy(&c).await?;
        let copy_s = t_copy.elapsed().as_secs_f64();
        println!("  copy: {} rows in {:.2} s ({:.0} rows/s)", mv.copied, copy_s, mv.copied as f64 / copy_s.max(1e-3));
        for pass in 1.. {
            let n = mv.catch_up(&c, true).await?;
            println!("  catch-up pass {pass}: {n} changed moving rows replayed");
            if n < CUTOVER_WHEN_BELOW || pass >= 20 {
                break;
            }
        }
        mv.track_dirty = true;
        let orphans = mv.sweep_orphans(&c).await?;
        if orphans > 0 {
            println!("  {orphans} rows on shard-{} whose source is gone removed", mv.target);
        }
        let (checked, bad) = mv.verify_all(&c).await?;
        for (s, t, k) in &bad {
            mv.dirty.entry((*s, t)).or_default().insert(k.clone());
        }
        println!(
            "  verify before the pause: {checked} moving rows compared, {} changed since (checked again in the pause)",
            bad.len()
        );
        mv.catch_up(&c, true).await?;
        if std::env::var("SHARDGATE_RESHARD_STOP_BEFORE_CUTOVER").is_ok() {
            // For tests and rehearsals: leave the move in `copying`, as an interrupted run would.
            println!("  stopping before the cutover (SHARDGATE_RESHARD_STOP_BEFORE_CUTOVER): run add again to resume");
            return Ok(());
        }

        // Cutover.
        let t_pause = Instant::now();
        set_phase(&c, "phase = 'paused'", &[]).await?;
        if let Err(e) = wait_for_workers(&c, row.version, Phase::Paused, Duration::from_secs(5)).await {
            set_phase(&c, "phase = 'copying'", &[]).await?;
            return Err(e.context("cutover abandoned, writes resumed; run `shardgate reshard add` again"));
        }
        // Everything inside the pause: on any error, writes resume (phase back to copying).
        let cut: anyhow::Result<(Duration, Duration, usize)> = async {
            let acked = t_pause.elapsed();
            while mv.catch_up(&c, false).await? > 0 {}
            let drained = t_pause.elapsed();
            let dirty = std::mem::take(&mut mv.dirty);
            let rechecked: usize = dirty.values().map(HashSet::len).sum();
            let checks = dirty.into_iter().map(|((s, tname), keys)| {
                let t = TABLES.iter().find(|t| t.name == tname).copied().expect("known table");
                let keys: Vec<String> = keys.into_iter().collect();
                let c = &c;
                async move { diff(c.pool(s), c.pool(mv.target), t, &keys).await.map(|d| d.len()) }
            });
            let mut differ = 0;
            for d in futures_util::future::join_all(checks).await {
                differ += d?;
            }
            if differ > 0 {
                bail!("{differ} moved rows differ from their source after the last changes");
            }
            let switched = sqlx::query(
                "UPDATE shardgate_ring SET version = version + 1, shards = target, previous = shards, target = NULL,
                        phase = 'cleaning', updated_at = now()
                 WHERE id = 1 AND phase = 'paused' AND version = $1",
            )
            .bind(row.version)
            .execute(c.control())
            .await?;
            if switched.rows_affected() != 1 {
                bail!("the control row changed under the cutover");
            }
            Ok((acked, drained, rechecked))
        }
        .await;
        let (acked, drained, rechecked) = match cut {
            Ok(x) => x,
            Err(e) => {
                let _ = sqlx::query("UPDATE shardgate_ring SET phase = 'copying' WHERE id = 1 AND phase = 'paused'")
                    .execute(c.control())
                    .await;
                return Err(e.context("cutover abandoned, writes resumed; run `shardgate reshard add` again"));
            }
        };
        pause = t_pause.elapsed();
        println!(
            "  cutover: writes of moving keys paused {:.1} ms (workers acknowledged at {:.1} ms, last changes drained at {:.1} ms; \
             {rechecked} rows checked again, 0 differ)",
            ms(pause),
            ms(acked),
            ms(drained)
        );
        row = current(&c).await?;
        let seen = wait_for_workers(&c, row.version, Phase::Cleaning, Duration::from_secs(10)).await?;
        println!("  every worker on ring version {} within {:.1} ms", row.version, ms(seen));
        // A worker that read a moved user from its old shard just before it switched may have
        // cached it; no worker reads old shards now, so dropping those entries is final.
        match drop_cached(cfg, &mv.moved_users).await {
            Ok(n) => println!("  cache: {n} moved users' entries dropped"),
            Err(e) => {
                println!("  cache: could not drop moved users' entries ({e}); they expire with CACHE_TTL_SECONDS")
            }
        }
    }

    // Clean up.
    capture(&c, old_n, false).await?;
    let mut removed = 0u64;
    for s in 0..old_n {
        for t in TABLES {
            let mut pages = Pager::new(t);
            while let Some(keys) = pages.next(c.pool(s)).await? {
                let pks: Vec<&str> = keys.iter().filter(|(_, r)| mv.moves(r)).map(|(p, _)| p.as_str()).collect();
                if !pks.is_empty() {
                    removed += sqlx::query(&format!("DELETE FROM {} WHERE {} = ANY($1)", t.name, t.pk))
                        .bind(&pks)
                        .execute(c.pool(s))
                        .await?
                        .rows_affected();
                }
            }
        }
    }
    println!("  clean-up: {removed} moved rows removed from their old shards");
    let report = placement(&c, &mv.new, c.topo.len() as u16).await?;
    print_placement(&report);
    if report.iter().any(|r| r.misplaced > 0) {
        bail!("placement check failed after the clean-up");
    }
    set_phase(&c, "phase = 'stable', previous = NULL, lag_rows = 0", &[]).await?;
    println!(
        "reshard: done in {:.1} s — ring version {}, {} shards; {} rows moved, {} changes replayed, pause {:.1} ms",
        t_start.elapsed().as_secs_f64(),
        row.version,
        target,
        mv.copied,
        mv.replayed,
        ms(pause)
    );
    Ok(())
}

/// Per shard and table: rows, and rows whose key another shard owns.
#[derive(Debug)]
pub struct Placement {
    pub shard: u16,
    pub table: &'static str,
    pub rows: u64,
    pub misplaced: u64,
}

/// Placement on shards `0..shards` (every shard of the topology, or only the old ones while a
/// move's copies sit on the new shard).
async fn placement(c: &Cluster, ring: &Ring, shards: u16) -> anyhow::Result<Vec<Placement>> {
    let mut out = Vec::new();
    let mut seen: HashMap<(&str, String), u16> = HashMap::new();
    for s in 0..shards {
        for t in TABLES {
            let mut p = Placement { shard: s, table: t.name, rows: 0, misplaced: 0 };
            let mut pages = Pager::new(t);
            while let Some(keys) = pages.next(c.pool(s)).await? {
                for (pk, route) in &keys {
                    p.rows += 1;
                    let on_ring = (s as usize) < ring.shard_count();
                    if !on_ring || ring.shard_for_str(route) != ShardId::new(s) {
                        p.misplaced += 1;
                    }
                    if let Some(other) = seen.insert((t.name, pk.clone()), s) {
                        println!("  {} {pk} is on shard-{other} and shard-{s}", t.name);
                        p.misplaced += 1;
                    }
                }
            }
            out.push(p);
        }
    }
    Ok(out)
}

fn print_placement(report: &[Placement]) {
    println!("  {:<8} {:<18} {:>9} {:>10}", "shard", "table", "rows", "misplaced");
    for p in report {
        println!("  shard-{:<2} {:<18} {:>9} {:>10}", p.shard, p.table, p.rows, p.misplaced);
    }
}

/// `shardgate reshard verify`: every row of every sharded table on the shard that owns it
/// under the current ring, and on no other (exit 1 otherwise). During a move (copying or
/// paused) it also compares every moving row with its copy on the new shard.
///
/// # Errors
/// A shard unreachable, or a difference found.
pub async fn verify(topo: &Topology) -> anyhow::Result<()> {
    let c = Cluster::connect(topo).await?;
    let row = current(&c).await?;
    println!("ring version {} with {} shards, phase {}", row.version, row.shards, row.phase.as_str());
    let mut failed = false;
    if let (Phase::Copying | Phase::Paused, Some(target)) = (row.phase, row.target) {
        let mv = Move::new(&c, topo, row.shards as u16, target).await?;
        let (checked, bad) = mv.verify_all(&c).await?;
        println!(
            "moving rows compared with their copy: {checked}, differ: {} (changes not yet replayed count here)",
            bad.len()
        );
        // The new shard holds copies only: check placement against the current ring, skipping it.
        let on_old = placement(&c, &mv.old, row.shards as u16).await?;
        print_placement(&on_old);
        failed |= on_old.iter().any(|p| p.misplaced > 0);
    } else {
        let ring = Ring::new(row.shards as usize, topo.vnodes);
        let report = placement(&c, &ring, c.topo.len() as u16).await?;
        print_placement(&report);
        failed |= report.iter().any(|p| p.misplaced > 0);
        if row.phase == Phase::Cleaning {
            println!("(phase cleaning: moved rows not yet removed from their old shards count as misplaced)");
        }
    }
    if failed {
        bail!("verification failed");
    }
    println!("verified: every row on the shard that owns it, and nowhere else");
    Ok(())
}

/// `shardgate reshard rollback`: abandons a move before its cutover.
///
/// # Errors
/// After the cutover (phase cleaning) there is nothing to roll back: run `add` to finish.
pub async fn rollback(topo: &Topology) -> anyhow::Result<()> {
    let _lock = exclusive(topo).await?;
    let c = Cluster::connect(topo).await?;
    let row = current(&c).await?;
    let target = match (row.phase, row.target) {
        (Phase::Copying | Phase::Paused, Some(t)) => t,
        // Stable with a shard beyond the ring: finish an earlier rollback (idempotent).
        (Phase::Stable, _) if topo.len() > row.shards as usize => row.shards + 1,
        (Phase::Stable, _) => bail!("no move to roll back (phase stable, no shard beyond the ring)"),
        _ => bail!("phase {}: the cutover has happened; run `shardgate reshard add` to finish", row.phase.as_str()),
    };
    let changed = sqlx::query(
        "UPDATE shardgate_ring SET phase = 'stable', target = NULL, rows_copied = 0, lag_rows = 0, updated_at = now()
         WHERE id = 1 AND version = $1 AND phase IN ('stable', 'copying', 'paused')",
    )
    .bind(row.version)
    .execute(c.control())
    .await?;
    if changed.rows_affected() != 1 {
        bail!("the control row changed under the rollback; look with `shardgate reshard status`");
    }
    wait_for_workers(&c, row.version, Phase::Stable, Duration::from_secs(10)).await?;
    capture(&c, row.shards as u16, false).await?;
    let new = (target - 1) as u16;
    for t in TABLES {
        sqlx::query(&format!("DELETE FROM {}", t.name)).execute(c.pool(new)).await?;
    }
    println!(
        "rolled back: ring version {} with {} shards; shard-{new} emptied, change capture off",
        row.version, row.shards
    );
    Ok(())
}

/// `shardgate reshard status`: the control row and the workers' acknowledgements.
///
/// # Errors
/// Shard 0 unreachable.
pub async fn status(topo: &Topology) -> anyhow::Result<()> {
    let c = Cluster::connect(topo).await?;
    let row = current(&c).await?;
    println!(
        "ring version {}, {} shards, target {:?}, phase {}, rows copied {}, change-log lag {} rows",
        row.version,
        row.shards,
        row.target,
        row.phase.as_str(),
        row.rows_copied,
        row.lag_rows
    );
    let workers: Vec<(String, i32, String, f64)> = sqlx::query_as(
        "SELECT worker, version, phase, extract(epoch from now() - seen_at)::float8 FROM shardgate_ring_workers
         WHERE seen_at > now() - interval '1 minute' ORDER BY worker",
    )
    .fetch_all(c.control())
    .await?;
    for (w, v, p, age) in workers {
        println!("  worker {w}: version {v}, {p}, seen {age:.1} s ago");
    }
    Ok(())
}
