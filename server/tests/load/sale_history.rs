//! A Jepsen-style check of the flash sale: concurrent buyers record every answer they get (a
//! history) while Redis loses its data or stalls; afterwards a checker proves, over the whole
//! history and against the primaries and Redis:
//!
//! - acknowledged purchases <= the sale's items, no item sold twice, no user over the limit;
//! - every acknowledged purchase is in Postgres as acknowledged, and every sale row in Postgres
//!   was acknowledged (or its purchase's answer never came);
//! - every repeated answer to one purchase is the same 200, and a purchase sent within the
//!   hold's lifetime finds the hold that its checkout acknowledged;
//! - no hold is left by a failed answer: every checkout row in Postgres and every hold Redis
//!   still holds belongs to a checkout that answered 200;
//! - `/status` equals Postgres (purchases, checkouts and, once every hold has expired, goods
//!   in use), and the stock count in Postgres agrees with the sales.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonic_rs::JsonValueTrait;

/// The sale under test: small enough that buyers exhaust it and race for the last items.
pub struct SaleSpec {
    pub name: String,
    pub items: usize,
    pub user_limit: usize,
    pub catalogue: usize,
    pub users: usize,
    pub hold_secs: u64,
}

impl SaleSpec {
    /// Server environment for this sale.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SALE_NAME", self.name.clone()),
            ("SALE_ITEMS", self.items.to_string()),
            ("SALE_USER_LIMIT", self.user_limit.to_string()),
            ("RESERVATION_TIMEOUT_SECONDS", self.hold_secs.to_string()),
            // One window for the whole run, whatever the time of day.
            ("SALE_WINDOW_SECONDS", "31536000".into()),
            // Buyers here are many per client address.
            ("SALE_CLIENT_RATE_LIMIT", "0".into()),
        ]
    }
}

#[derive(Default, Debug)]
pub struct History {
    /// Every request sent, with its outcome ("200", "409 SOLD_OUT", "503 ...", "no answer").
    pub outcomes: HashMap<String, usize>,
    pub ops: usize,
    /// Checkouts answered 200: code -> (user, item).
    pub checkouts: HashMap<String, (String, String)>,
    /// Purchases answered 200: code -> the body (every repeat must be the same).
    pub purchases: HashMap<String, String>,
    /// Purchases never answered definitely (every retry failed): code.
    pub uncertain: HashSet<String>,
    /// Two different 200 bodies for one code.
    pub differing: Vec<String>,
    /// Acknowledged holds that a purchase found missing well within their lifetime.
    pub lost_holds: Vec<(String, String)>,
}

impl History {
    fn note(&mut self, what: String) {
        self.ops += 1;
        *self.outcomes.entry(what).or_default() += 1;
    }

    fn merge(&mut self, o: History) {
        self.ops += o.ops;
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.checkouts.extend(o.checkouts);
        self.purchases.extend(o.purchases);
        self.uncertain.extend(o.uncertain);
        self.differing.extend(o.differing);
        self.lost_holds.extend(o.lost_holds);
    }
}

pub struct Buyers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<History>>,
    pub t0: Instant,
}

fn outcome(r: &Result<(u16, String), ()>) -> String {
    match r {
        Ok((200, _)) => "200".into(),
        Ok((st, body)) => {
            let v: sonic_rs::Value = sonic_rs::from_str(body).unwrap_or_default();
            format!("{st} {}", v.get("code").and_then(|c| c.as_str()).unwrap_or(""))
        }
        Err(()) => "no answer".into(),
    }
}

async fn post(client: &reqwest::Client, url: String) -> Result<(u16, String), ()> {
    let r = client.post(url).send().await.map_err(|_| ())?;
    let st = r.status().as_u16();
    Ok((st, r.text().await.map_err(|_| ())?))
}

impl Buyers {
    /// `n` buyers, each a loop of checkouts; 80% of the holds are bought at once or after
    /// up to 300 ms, the rest left to expire.
    pub fn start(base: &str, spec: &SaleSpec, n: usize) -> Buyers {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let tasks = (0..n)
            .map(|_| {
                let (stop, base) = (stop.clone(), base.to_string());
                let (name, catalogue, users) = (spec.name.clone(), spec.catalogue, spec.users);
                // A purchase sent this soon after its checkout's 200 must find the hold.
                let alive = Duration::from_secs(spec.hold_secs).saturating_sub(Duration::from_millis(300));
                tokio::spawn(async move {
                    // Longer than the server's own deadline: every answer is seen.
                    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
                    let mut h = History::default();
                    while !stop.load(Ordering::Relaxed) {
                        let user = format!("{name}u{}", rand::random::<u64>() as usize % users);
                        let item = format!("{name}i{}", rand::random::<u64>() as usize % catalogue);
                        // The hold's lifetime runs from (before) the checkout's start.
                        let asked_at = Instant::now();
                        let r = post(&client, format!("{base}/checkout?user_id={user}&id={item}")).await;
                        h.note(format!("checkout {}", outcome(&r)));
                        let Ok((200, body)) = r else {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        let v: sonic_rs::Value = sonic_rs::from_str(&body).unwrap();
                        let code = v.get("code").and_then(|c| c.as_str()).unwrap().to_string();
                        h.checkouts.insert(code.clone(), (user, item));
                        if rand::random::<u8>() % 10 >= 8 {
                            continue;
                        }
                        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 300)).await;
                        // A buyer retries while the outcome is unknown (503, no answer), as the
                        // idempotent purchase allows; a second try after a 200 must repeat it.
                        let (mut settled, mut not_found) = (false, 0);
                        for attempt in 0..40 {
                            let (sent, at) = (asked_at.elapsed(), t0.elapsed());
                            let r = post(&client, format!("{base}/purchase?code={code}")).await;
                            if matches!(r, Ok((404, _))) && sent < alive && not_found == 0 {
                                let what = format!(
                                    "purchase sent at +{:.2} s, {} ms after its checkout, answered 404",
                                    at.as_secs_f64(),
                                    sent.as_millis()
                                );
                                h.lost_holds.push((code.clone(), what));
                            }
                            h.note(format!("purchase {}", outcome(&r)));
                            match r {
                                Ok((200, body)) => {
                                    if let Some(before) = h.purchases.insert(code.clone(), body.clone()) {
                                        if before != body {
                                            h.differing.push(format!("{code}: {before} then {body}"));
                                        }
                                    }
                                    if attempt > 0 || rand::random::<u8>() % 4 != 0 {
                                        settled = true;
                                        break;
                                    }
                                }
                                // A buyer told "no reservation" right after a 200 checkout tries
                                // again a little later (as the buyers who found the oversell did).
                                Ok((404, _)) if not_found < 3 => {
                                    not_found += 1;
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                }
                                Ok((404 | 409, _)) => {
                                    settled = true;
                                    break;
                                }
                                _ => tokio::time::sleep(Duration::from_millis(250)).await,
                            }
                        }
                        if !settled && !h.purchases.contains_key(&code) {
                            h.uncertain.insert(code);
                        }
                    }
                    h
                })
            })
            .collect();
        Buyers { stop, tasks, t0 }
    }

    pub async fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = History::default();
        for t in self.tasks {
            all.merge(t.await.expect("buyer task"));
        }
        all
    }
}

/// What the checker found (every count is over the whole history).
#[derive(Debug, Default)]
pub struct Verdict {
    pub sold: usize,
    pub attempts: usize,
    pub violations: Vec<String>,
}

/// The sale as Postgres has it: (item, code, user) of each sale, the codes of each checkout
/// row, and the stock's count of tickets.
async fn postgres(pools: &[sqlx::PgPool], name: &str) -> (Vec<(String, String, String)>, HashSet<String>, i64) {
    let pattern = format!("{name}-%");
    let (mut sales, mut attempts) = (Vec::new(), HashSet::new());
    for pool in pools {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("select item_id, code, user_id from sales where sale_id like $1")
                .bind(&pattern)
                .fetch_all(pool)
                .await
                .unwrap();
        sales.extend(rows);
        let codes: Vec<(String,)> =
            sqlx::query_as("select code from checkout_attempts where sale_id like $1 and not undone")
                .bind(&pattern)
                .fetch_all(pool)
                .await
                .unwrap();
        attempts.extend(codes.into_iter().map(|c| c.0));
    }
    let tickets: i64 = sqlx::query_scalar("select count(*) from sale_tickets where sale_id like $1")
        .bind(&pattern)
        .fetch_one(&pools[0])
        .await
        .unwrap();
    (sales, attempts, tickets)
}

/// Every hold record Redis has under `prefix`: code -> status.
fn redis_holds(redis_port: u16, prefix: &str) -> HashMap<String, String> {
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli").arg("-p").arg(redis_port.to_string()).args(args).output();
        String::from_utf8_lossy(&out.unwrap().stdout).to_string()
    };
    let pattern = format!("{prefix}sale:hold:*");
    cli(&["--scan", "--pattern", &pattern])
        .lines()
        .filter_map(|k| Some((k.rsplit(':').next()?.to_string(), cli(&["hget", k, "status"]).trim().to_string())))
        .collect()
}

/// Runs the checker. Waits first until every hold has expired (so `/status` can be compared
/// exactly) and the undo of every failed checkout has run.
pub async fn check(
    h: &History,
    spec: &SaleSpec,
    base: &str,
    pools: &[sqlx::PgPool],
    redis_port: u16,
    prefix: &str,
) -> Verdict {
    tokio::time::sleep(Duration::from_secs(spec.hold_secs) + Duration::from_millis(700)).await;
    let client = reqwest::Client::new();
    let mut v = Verdict::default();
    // /status sweeps expired holds (500 per call); ask until it settles, then compare.
    let mut status = sonic_rs::Value::default();
    let until = Instant::now() + Duration::from_secs(20);
    let (mut sales, mut attempts, mut tickets);
    loop {
        let r = client.get(format!("{base}/status")).send().await.unwrap();
        let ok = r.status() == 200;
        status = if ok { sonic_rs::from_str(&r.text().await.unwrap()).unwrap() } else { status };
        (sales, attempts, tickets) = postgres(pools, &spec.name).await;
        let n = |k: &str| status.get(k).and_then(|x| x.as_i64()).unwrap_or(-1);
        let settled = ok
            && n("purchased_goods") == sales.len() as i64
            && n("scheduled_goods") == sales.len() as i64
            && n("successful_checkouts") == attempts.len() as i64
            && attempts.iter().all(|c| h.checkouts.contains_key(c));
        if settled || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    v.sold = sales.len();
    v.attempts = attempts.len();
    let mut bad = |cond: bool, what: String| {
        if !cond {
            v.violations.push(what);
        }
    };
    bad(
        h.purchases.len() <= spec.items,
        format!("{} purchases acknowledged for {} items", h.purchases.len(), spec.items),
    );
    bad(sales.len() <= spec.items, format!("{} sales in Postgres for {} items", sales.len(), spec.items));
    let items: HashSet<&String> = sales.iter().map(|s| &s.0).collect();
    bad(items.len() == sales.len(), "an item sold twice".into());
    let acked_items: HashSet<&str> =
        h.purchases.keys().filter_map(|c| h.checkouts.get(c)).map(|(_, i)| i.as_str()).collect();
    bad(acked_items.len() == h.purchases.len(), "two acknowledged purchases of one item".into());
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for s in &sales {
        *per_user.entry(s.2.as_str()).or_default() += 1;
    }
    let over: Vec<_> = per_user.iter().filter(|(_, &n)| n > spec.user_limit).collect();
    bad(over.is_empty(), format!("users over the limit of {}: {over:?}", spec.user_limit));
    let in_db: HashMap<&str, (&str, &str)> =
        sales.iter().map(|s| (s.1.as_str(), (s.2.as_str(), s.0.as_str()))).collect();
    for (code, body) in &h.purchases {
        let (user, item) = &h.checkouts[code];
        bad(
            in_db.get(code.as_str()) == Some(&(user.as_str(), item.as_str())),
            format!("acknowledged purchase {code} ({user}, {item}) is not in Postgres as acknowledged"),
        );
        bad(body.contains(item.as_str()) && body.contains(user.as_str()), format!("purchase {code} answered {body}"));
    }
    for (code, _) in in_db.iter() {
        bad(
            h.purchases.contains_key(*code) || h.uncertain.contains(*code),
            format!("sale {code} in Postgres was never acknowledged"),
        );
    }
    let holds = redis_holds(redis_port, prefix);
    let lost: Vec<String> = h
        .lost_holds
        .iter()
        .take(3)
        .map(|(code, what)| {
            let redis = holds.get(code).map_or("none", String::as_str);
            let sold = if in_db.contains_key(code.as_str()) { "sold" } else { "not sold" };
            format!(
                "{code}: {what}; Redis now {redis}; row {}; {sold}",
                if attempts.contains(code) { "kept" } else { "gone" }
            )
        })
        .collect();
    bad(
        h.lost_holds.is_empty(),
        format!("{} acknowledged holds were not found within their lifetime: {lost:?}", h.lost_holds.len()),
    );
    for d in &h.differing {
        bad(false, format!("one purchase, two answers: {d}"));
    }
    let phantom_rows: Vec<&String> = attempts.iter().filter(|c| !h.checkouts.contains_key(*c)).collect();
    bad(phantom_rows.is_empty(), format!("{} checkout rows of failed answers: {:?}", phantom_rows.len(), phantom_rows));
    // A failed checkout's hold, if Redis ever placed it, must have been released (not left
    // to be held, and then expire, or be bought).
    let phantom_holds: Vec<(&String, &String)> =
        holds.iter().filter(|(c, st)| !h.checkouts.contains_key(*c) && st.as_str() != "released").collect();
    bad(
        phantom_holds.is_empty(),
        format!(
            "{} holds in Redis of failed answers: {:?}",
            phantom_holds.len(),
            &phantom_holds[..phantom_holds.len().min(5)]
        ),
    );
    let held = holds.values().filter(|st| st.as_str() == "held").count();
    bad(held == 0, format!("{held} holds still held after every hold expired"));
    let n = |k: &str| status.get(k).and_then(|x| x.as_i64()).unwrap_or(-1);
    for (k, want) in [
        ("purchased_goods", sales.len()),
        ("successful_purchases", sales.len()),
        ("scheduled_goods", sales.len()),
        ("successful_checkouts", attempts.len()),
    ] {
        bad(n(k) == want as i64, format!("/status {k} = {} but Postgres says {want}", n(k)));
    }
    bad(tickets == sales.len() as i64, format!("the stock counts {tickets} tickets for {} sales", sales.len()));
    v
}
