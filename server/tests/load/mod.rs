//! The mixed load and its ledger, and the row-by-row data check, shared by the chaos suite
//! and the resharding test (`mod load;` in each).
//!
//! `CHAOS_CLIENTS` tasks send a mix of creates, updates, deletes, reads, cache reads,
//! heartbeats and checkout+purchase pairs on fresh connections, keeping a ledger of every
//! acknowledged write; [`check`] then compares the ledger with the primaries.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sharding::Ring;
use sonic_rs::JsonValueTrait;

/// A cluster of a test's own, run by the same `scripts/cluster.sh` as the shared one, on other
/// ports and in another data folder under the repository.
pub struct OwnCluster {
    pub dir: &'static str,
    pub primary_base: u16,
    pub replica_base: u16,
    pub pooler_base: u16,
    /// A Redis of its own (stopped with the cluster), or the shared one on 6379.
    pub redis_port: Option<u16>,
}

impl OwnCluster {
    pub fn dir(&self) -> std::path::PathBuf {
        repo_root().join(self.dir)
    }

    /// `cluster.sh <cmd>` with `shards` shards; panics with its stderr when it fails.
    pub fn run(&self, cmd: &str, shards: u16) {
        let mut c = std::process::Command::new(repo_root().join("scripts/cluster.sh"));
        c.arg(cmd)
            .env("CLUSTER_DIR", self.dir())
            .env("PRIMARY_PORT_BASE", self.primary_base.to_string())
            .env("REPLICA_PORT_BASE", self.replica_base.to_string())
            .env("POOLER_PORT_BASE", self.pooler_base.to_string())
            .env("SHARDS", shards.to_string());
        if let Some(p) = self.redis_port {
            c.env("REDIS_PORT", p.to_string());
        }
        let out = c.output().expect("run scripts/cluster.sh");
        assert!(out.status.success(), "cluster.sh {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn primary_ports(&self, shards: u16) -> Vec<u16> {
        (0..shards).map(|i| self.primary_base + i).collect()
    }
}

fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn clients() -> usize {
    std::env::var("CHAOS_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

// ---------------------------------------------------------------- the load and its ledger

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Kind {
    Create,
    Update,
    Delete,
    Read,
    CacheRead,
    Heartbeat,
    Checkout,
    Purchase,
}

impl Kind {
    pub fn is_write(self) -> bool {
        matches!(self, Kind::Create | Kind::Update | Kind::Delete | Kind::Checkout | Kind::Purchase)
    }
    pub fn redis(self) -> bool {
        matches!(self, Kind::Heartbeat | Kind::Checkout | Kind::Purchase)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// An HTTP answer that is not the expected success: status and error code.
    Status(u16, String),
    /// No connection (refused): the request was never sent.
    Connect,
    /// Sent, but no answer (reset, closed, timed out): the request was in flight.
    InFlight,
}

#[derive(Debug)]
pub struct Rec {
    pub at: Duration,
    pub kind: Kind,
    pub shard: u16,
    pub latency: Duration,
    pub failure: Option<Failure>,
}

/// What a row must look like after the run: exactly one state, or one of two when the
/// response to the write that would move it was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Absent,
    Present(String),
}

#[derive(Default)]
pub struct Ledger {
    pub users: HashMap<String, Vec<Row>>, // one element: acknowledged; two: before/after a lost response
    pub purchases: HashMap<String, (String, String)>, // item -> (code, user), acknowledged
    pub lost_purchases: HashMap<String, (String, String)>, // purchase sent, answer lost
    pub recs: Vec<Rec>,
    /// The scenario's id prefix: every user, item and buyer id of this load starts with it.
    pub run: String,
}

pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub tasks: Vec<tokio::task::JoinHandle<Ledger>>,
    pub t0: Instant,
    pub run: String,
}

pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<String>,
) -> (Result<(u16, sonic_rs::Value), Failure>, Duration) {
    let t = Instant::now();
    let mut rb = client.request(method, url);
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b);
    }
    let r = match rb.send().await {
        Ok(resp) => {
            let st = resp.status().as_u16();
            match resp.text().await {
                Ok(text) => Ok((st, sonic_rs::from_str(&text).unwrap_or_default())),
                Err(_) => Err(Failure::InFlight),
            }
        }
        Err(e) if e.is_connect() => Err(Failure::Connect),
        Err(_) => Err(Failure::InFlight),
    };
    (r, t.elapsed())
}

pub fn failure_of(r: &Result<(u16, sonic_rs::Value), Failure>, ok: &[u16]) -> Option<Failure> {
    match r {
        Ok((st, _)) if ok.contains(st) => None,
        Ok((st, v)) => Some(Failure::Status(*st, v["code"].as_str().unwrap_or("").to_string())),
        Err(f) => Some(f.clone()),
    }
}

impl Load {
    pub fn start(base: &str, run: &str, ring: &Ring, n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let tasks = (0..n)
            .map(|c| {
                let (stop, base, ring) = (stop.clone(), base.to_string(), ring.clone());
                let prefix = format!("{run}{c}"); // short: hotcold-user-api's /v1/users takes ids of at most 20
                tokio::spawn(async move { drive(&base, &prefix, &ring, &stop, t0).await })
            })
            .collect();
        Load { stop, tasks, t0, run: run.to_string() }
    }

    pub async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Ledger { run: self.run, ..Ledger::default() };
        for t in self.tasks {
            let l = t.await.expect("load task");
            all.users.extend(l.users);
            all.purchases.extend(l.purchases);
            all.lost_purchases.extend(l.lost_purchases);
            all.recs.extend(l.recs);
        }
        all
    }
}

/// One client: a fresh connection per request (so "in flight" is exact), ~2 ms apart.
pub async fn drive(base: &str, prefix: &str, ring: &Ring, stop: &AtomicBool, t0: Instant) -> Ledger {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap();
    let mut l = Ledger::default();
    let mut live: Vec<(String, String)> = Vec::new(); // users whose state is acknowledged and present
    let mut n = 0u64;
    let shard = |id: &str| ring.shard_for_str(id).get();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let slot = (n * 7) % 20; // a fixed interleaving of the mix
        let at = t0.elapsed();
        let pick = live.len().checked_sub(1).map(|m| (n as usize * 31) % (m + 1));
        let (kind, sh, latency, failure) = match (slot, pick) {
            (0..=4, _) | (5..=13, None) => {
                let id = format!("{prefix}u{n}");
                let name = format!("v{n}");
                let body = format!(r#"{{"id":"{id}","first_name":"{name}","last_name":"Chaos"}}"#);
                let (r, lat) = call(&client, reqwest::Method::POST, format!("{base}/api/v1/users/"), Some(body)).await;
                let f = failure_of(&r, &[201]);
                match f {
                    None => {
                        l.users.insert(id.clone(), vec![Row::Present(name.clone())]);
                        live.push((id.clone(), name));
                    }
                    // Refused: never sent, so certainly not written.
                    Some(Failure::Connect) => drop(l.users.insert(id.clone(), vec![Row::Absent])),
                    Some(_) => drop(l.users.insert(id.clone(), vec![Row::Absent, Row::Present(name)])),
                }
                (Kind::Create, shard(&id), lat, f)
            }
            (5..=8, Some(i)) => {
                let (id, old) = live[i].clone();
                let name = format!("v{n}");
                let (r, lat) = call(
                    &client,
                    reqwest::Method::PATCH,
                    format!("{base}/api/v1/users/{id}"),
                    Some(format!(r#"{{"first_name":"{name}"}}"#)),
                )
                .await;
                let f = failure_of(&r, &[200]);
                match f {
                    None => {
                        l.users.insert(id.clone(), vec![Row::Present(name.clone())]);
                        live[i].1 = name;
                    }
                    Some(Failure::Connect) => drop(l.users.insert(id.clone(), vec![Row::Present(old)])),
                    Some(_) => {
                        l.users.insert(id.clone(), vec![Row::Present(old), Row::Present(name)]);
                        live.swap_remove(i); // its state is uncertain: not touched again
                    }
                }
                (Kind::Update, shard(&id), lat, f)
            }
            (9, Some(i)) => {
                let (id, old) = live.swap_remove(i);
                let (r, lat) = call(&client, reqwest::Method::DELETE, format!("{base}/api/v1/users/{id}"), None).await;
                let f = failure_of(&r, &[204]);
                let rows = match f {
                    None => vec![Row::Absent],
                    Some(Failure::Connect) => {
                        live.push((id.clone(), old.clone()));
                        vec![Row::Present(old)]
                    }
                    Some(_) => vec![Row::Present(old), Row::Absent],
                };
                l.users.insert(id.clone(), rows);
                (Kind::Delete, shard(&id), lat, f)
            }
            (10..=12, Some(i)) => {
                let id = &live[i].0;
                let (r, lat) = call(&client, reqwest::Method::GET, format!("{base}/api/v1/users/{id}"), None).await;
                (Kind::Read, shard(id), lat, failure_of(&r, &[200]))
            }
            (13, Some(i)) => {
                let id = &live[i].0;
                let (r, lat) = call(&client, reqwest::Method::GET, format!("{base}/v1/users?user_id={id}"), None).await;
                (Kind::CacheRead, shard(id), lat, failure_of(&r, &[200]))
            }
            (14..=16, _) => {
                let id = format!("{prefix}-h{}", n % 50);
                let body = format!(r#"{{"userId":"{id}"}}"#);
                let (r, lat) = call(&client, reqwest::Method::POST, format!("{base}/heartbeat"), Some(body)).await;
                (Kind::Heartbeat, shard(&id), lat, failure_of(&r, &[200]))
            }
            _ => {
                // A checkout on a fresh item by a fresh buyer, then its purchase.
                let (item, user) = (format!("{prefix}-i{n}"), format!("{prefix}-b{n}"));
                let (r, lat) =
                    call(&client, reqwest::Method::POST, format!("{base}/checkout?user_id={user}&id={item}"), None)
                        .await;
                let f = failure_of(&r, &[200]);
                let code = r.ok().and_then(|(_, v)| v["code"].as_str().map(str::to_string));
                match (f, code) {
                    (None, Some(code)) => {
                        l.recs.push(Rec { at, kind: Kind::Checkout, shard: shard(&item), latency: lat, failure: None });
                        let at = t0.elapsed();
                        let (r, lat) =
                            call(&client, reqwest::Method::POST, format!("{base}/purchase?code={code}"), None).await;
                        let f = failure_of(&r, &[200]);
                        match f {
                            None => drop(l.purchases.insert(item.clone(), (code, user))),
                            Some(Failure::Connect) => {} // never sent: the item must stay unsold
                            Some(_) => drop(l.lost_purchases.insert(item.clone(), (code, user))),
                        }
                        l.recs.push(Rec { at, kind: Kind::Purchase, shard: shard(&item), latency: lat, failure: f });
                    }
                    (f, _) => l.recs.push(Rec {
                        at,
                        kind: Kind::Checkout,
                        shard: shard(&item),
                        latency: lat,
                        failure: f.or(Some(Failure::Status(200, "NO_CODE".into()))),
                    }),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
        };
        l.recs.push(Rec { at, kind, shard: sh, latency, failure });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    l
}

// ---------------------------------------------------------------- the data check

#[derive(Default, Debug)]
pub struct Check {
    pub writes_checked: usize,
    pub purchases_checked: usize,
    pub uncertain: usize,
    pub lost_responses_confirmed: usize,
    pub lost: Vec<String>,
}

pub async fn primaries(ports: &[u16]) -> Vec<sqlx::PgPool> {
    let mut pools = Vec::new();
    for port in ports {
        let url = format!("postgres://postgres@127.0.0.1:{port}/shardgate");
        pools.push(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(20))
                .connect(&url)
                .await
                .unwrap_or_else(|e| panic!("connect {url}: {e}")),
        );
    }
    pools
}

pub async fn check(ledger: &mut Ledger, ring: &Ring, base: &str, sale: &str, primary_ports: &[u16]) -> Check {
    let pools = primaries(primary_ports).await;
    let mut c = Check::default();
    // Lost purchase answers: a client retries the idempotent purchase once the service is back.
    let client = reqwest::Client::new();
    for (item, (code, user)) in std::mem::take(&mut ledger.lost_purchases) {
        let mut confirmed = false;
        for _ in 0..20 {
            match call(&client, reqwest::Method::POST, format!("{base}/purchase?code={code}"), None).await.0 {
                Ok((200, _)) => {
                    confirmed = true;
                    break;
                }
                Ok((st, _)) if st < 500 => break, // the hold expired or the item went elsewhere: never bought
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        if confirmed {
            c.lost_responses_confirmed += 1;
            ledger.purchases.insert(item, (code, user));
        } else {
            c.uncertain += 1;
            ledger.lost_purchases.insert(item, (code, user));
        }
    }

    let ids: Vec<String> = ledger.users.keys().cloned().collect();
    let mut found: HashMap<String, Vec<(u16, String)>> = HashMap::new();
    for (s, pool) in pools.iter().enumerate() {
        let rows: Vec<(String, String)> = sqlx::query_as("select id, first_name from users where id = any($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await
            .expect("read users");
        for (id, name) in rows {
            found.entry(id).or_default().push((s as u16, name));
        }
    }
    for (id, expect) in &ledger.users {
        let rows = found.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let owner = ring.shard_for_str(id).get();
        let actual = match rows {
            [] => Row::Absent,
            [(s, name)] if *s == owner => Row::Present(name.clone()),
            more => {
                c.lost.push(format!("{id}: on shards {more:?}, owner {owner}"));
                continue;
            }
        };
        if expect.len() == 1 {
            c.writes_checked += 1;
        } else {
            c.uncertain += 1;
        }
        if !expect.contains(&actual) {
            c.lost.push(format!("{id}: acknowledged {expect:?}, Postgres has {actual:?}"));
        }
    }

    let mut sold: HashMap<String, (u16, String, String)> = HashMap::new();
    for (s, pool) in pools.iter().enumerate() {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "select item_id, code, user_id from sales where sale_id like $1 || '-%' and item_id like $2 || '%'",
        )
        .bind(sale)
        .bind(&ledger.run)
        .fetch_all(pool)
        .await
        .expect("read sales");
        for (item, code, user) in rows {
            if let Some(prev) = sold.insert(item.clone(), (s as u16, code, user)) {
                c.lost.push(format!("item {item} sold twice (also on shard {})", prev.0));
            }
        }
    }
    for (item, (code, user)) in &ledger.purchases {
        c.purchases_checked += 1;
        match sold.get(item) {
            Some((s, dc, du)) if dc == code && du == user && *s == ring.shard_for_str(item).get() => {}
            other => c.lost.push(format!("purchase of {item} acknowledged, Postgres has {other:?}")),
        }
    }
    for item in sold.keys() {
        if !ledger.purchases.contains_key(item) && !ledger.lost_purchases.contains_key(item) {
            c.lost.push(format!("purchase of {item} in Postgres was never acknowledged nor attempted"));
        }
    }
    for p in pools {
        p.close().await;
    }
    c
}

pub fn assert_none_lost(c: &Check) {
    assert!(
        c.lost.is_empty(),
        "{} lost or misplaced writes, first ones: {:?}",
        c.lost.len(),
        &c.lost[..c.lost.len().min(10)]
    );
}

pub fn summarize(recs: &[Rec], took: Duration) -> (usize, f64, BTreeMap<String, usize>) {
    let mut failed = BTreeMap::new();
    for r in recs {
        if let Some(f) = &r.failure {
            let k = match f {
                Failure::Status(st, code) => format!("{:?} {st} {code}", r.kind),
                Failure::Connect => format!("{:?} refused", r.kind),
                Failure::InFlight => format!("{:?} no-answer", r.kind),
            };
            *failed.entry(k).or_default() += 1;
        }
    }
    (recs.len(), recs.len() as f64 / took.as_secs_f64(), failed)
}
