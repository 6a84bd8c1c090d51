//! The flash sale (the Flash Sale API) against the real Redis and cluster. Each test runs its own
//! sale: a unique Redis key prefix and sale name, unique item ids (an item sells once, ever).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Proxy, TestApp};
use sonic_rs::JsonValueTrait;

fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

async fn sale_app(extra: &[(&str, String)]) -> (TestApp, String) {
    let t = tag();
    let mut env = vec![("REDIS_KEY_PREFIX", format!("t{t}:")), ("SALE_NAME", format!("s{t}"))];
    env.extend(extra.iter().cloned());
    (TestApp::start_with(2, &env).await, t)
}

async fn post(app: &TestApp, path: &str) -> (u16, sonic_rs::Value) {
    let r = app.client.post(app.url(path)).send().await.unwrap();
    let st = r.status().as_u16();
    (st, sonic_rs::from_str(&r.text().await.unwrap()).unwrap_or_default())
}

fn s<'a>(v: &'a sonic_rs::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

fn n(v: &sonic_rs::Value, k: &str) -> i64 {
    v.get(k).and_then(|x| x.as_i64()).unwrap_or(-1)
}

/// Rows of `sales` for a sale name, over every shard: (item, code, user).
fn sales_in_postgres(sale_name: &str) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for spec in &common::topology().shards {
        let url = format!("postgres://postgres@{}/shardgate", spec.primary);
        let out = std::process::Command::new("psql")
            .args([
                &url,
                "-tAF,",
                "-c",
                &format!("select item_id, code, user_id from sales where sale_id like '{sale_name}-%'"),
            ])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            rows.push((f[0].to_string(), f[1].to_string(), f[2].to_string()));
            // A sale row lives on the shard that owns its item.
            assert_eq!(common::topology().ring().shard_for_str(f[0]), spec.id, "sale of {} on {}", f[0], spec.name);
        }
    }
    rows
}

#[tokio::test]
async fn checkout_purchase_repeat_and_refusals() {
    let (app, t) = sale_app(&[]).await;
    let item = format!("i{t}a");
    let (st, c) = post(&app, &format!("/checkout?user_id=u{t}&id={item}")).await;
    assert_eq!((st, s(&c, "message")), (200, "success"), "{c:?}");
    let code = s(&c, "code").to_string();
    assert!(code.len() == 32 && code.bytes().all(|b| b.is_ascii_hexdigit()), "{code}");
    let (st, e) = post(&app, &format!("/checkout?user_id=v{t}&id={item}")).await;
    assert_eq!((st, s(&e, "code"), s(&e, "error")), (409, "ITEM_RESERVED", "item already reserved"));
    let (st, p) = post(&app, &format!("/purchase?code={code}")).await;
    assert_eq!(
        (st, s(&p, "message"), s(&p, "user"), s(&p, "item")),
        (200, "success", format!("u{t}").as_str(), item.as_str())
    );
    let (st, again) = post(&app, &format!("/purchase?code={code}")).await;
    assert_eq!((st, &again), (200, &p), "idempotent purchase");
    let (st, e) = post(&app, &format!("/checkout?user_id=w{t}&id={item}")).await;
    assert_eq!((st, s(&e, "code"), s(&e, "error")), (409, "ITEM_SOLD", "item already sold"));
    assert_eq!(
        sales_in_postgres(&format!("s{t}")),
        vec![(item.clone(), code.clone(), format!("u{t}"))],
        "one sale row"
    );

    let (st, e) = post(&app, "/purchase?code=0123456789abcdef0123456789abcdef").await;
    assert_eq!((st, s(&e, "code")), (404, "RESERVATION_NOT_FOUND"));
    for (path, code) in [
        ("/checkout?user_id=x", "MISSING_PARAMETER"),
        ("/checkout?id=x", "MISSING_PARAMETER"),
        ("/checkout?user_id=bad!&id=x", "INVALID_ID"),
        ("/purchase", "MISSING_PARAMETER"),
        ("/purchase?code=nothex", "INVALID_CODE"),
    ] {
        let (st, e) = post(&app, path).await;
        assert_eq!((st, s(&e, "code")), (400, code), "{path}");
    }
    let r = app.client.get(app.url("/checkout?user_id=a&id=b")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "POST"));

    let (st, v) = app.get_json("/status").await;
    assert_eq!(st, 200);
    assert_eq!((n(&v, "successful_checkouts"), n(&v, "failed_checkouts")), (1, 2));
    assert_eq!((n(&v, "successful_purchases"), n(&v, "purchased_goods"), n(&v, "scheduled_goods")), (1, 1, 1));
    assert!(n(&v, "failed_purchases") >= 1);
    assert_eq!(s(&v, "sale_status"), "active");
    assert!((0..=3600).contains(&n(&v, "seconds_remaining")));
}

#[tokio::test]
async fn user_limit_sold_out_and_completed() {
    let (app, t) = sale_app(&[("SALE_USER_LIMIT", "2".into()), ("SALE_ITEMS", "3".into())]).await;
    for i in 0..2 {
        assert_eq!(post(&app, &format!("/checkout?user_id=u{t}&id=i{t}{i}")).await.0, 200);
    }
    let (st, e) = post(&app, &format!("/checkout?user_id=u{t}&id=i{t}x")).await;
    assert_eq!((st, s(&e, "code"), s(&e, "error")), (409, "USER_LIMIT", "user limit reached"));
    let (st, c) = post(&app, &format!("/checkout?user_id=v{t}&id=i{t}2")).await;
    assert_eq!(st, 200);
    let (st, e) = post(&app, &format!("/checkout?user_id=w{t}&id=i{t}3")).await;
    assert_eq!((st, s(&e, "code"), s(&e, "error")), (409, "SOLD_OUT", "sale sold out"));
    assert_eq!(post(&app, &format!("/purchase?code={}", s(&c, "code"))).await.0, 200);
    let (_, v) = app.get_json("/status").await;
    assert_eq!((s(&v, "sale_status"), n(&v, "scheduled_goods"), n(&v, "purchased_goods")), ("active", 3, 1));
}

#[tokio::test]
async fn an_expired_hold_frees_the_item_the_allowance_and_the_capacity() {
    let (app, t) = sale_app(&[
        ("RESERVATION_TIMEOUT_SECONDS", "1".into()),
        ("SALE_USER_LIMIT", "1".into()),
        ("SALE_ITEMS", "1".into()),
    ])
    .await;
    let (st, c) = post(&app, &format!("/checkout?user_id=u{t}&id=i{t}a")).await;
    assert_eq!(st, 200);
    assert_eq!(post(&app, &format!("/checkout?user_id=v{t}&id=i{t}b")).await.0, 409, "sale full while held");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, e) = post(&app, &format!("/purchase?code={}", s(&c, "code"))).await;
    assert_eq!((st, s(&e, "code")), (404, "RESERVATION_NOT_FOUND"), "expired");
    // The item, the user's allowance and the sale's capacity are all free again.
    let (st, c2) = post(&app, &format!("/checkout?user_id=u{t}&id=i{t}a")).await;
    assert_eq!(st, 200, "{c2:?}");
    assert_eq!(post(&app, &format!("/purchase?code={}", s(&c2, "code"))).await.0, 200);
    let (_, v) = app.get_json("/status").await;
    assert_eq!((s(&v, "sale_status"), n(&v, "purchased_goods")), ("completed", 1), "sold out: completed");
    // The attempt is audited in Postgres.
    let shard = common::topology().ring().shard_for_str(&format!("i{t}a"));
    let url = format!("postgres://postgres@{}/shardgate", common::topology().shards[shard.index()].primary);
    let out = std::process::Command::new("psql")
        .args([&url, "-tAc", &format!("select count(*) from checkout_attempts where item_id = 'i{t}a'")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

/// Many buyers racing: afterwards Postgres must show no item sold twice, nobody over the
/// limit, the sale within its size, every 200 purchase present and nothing else.
async fn race(app: &TestApp, t: &str, tasks: usize, users: usize, items: usize) -> HashMap<String, (String, String)> {
    let mut handles = Vec::new();
    for k in 0..tasks {
        let (client, base, t) = (app.client.clone(), app.base.clone(), t.to_string());
        handles.push(tokio::spawn(async move {
            let user = format!("u{t}-{}", (k * 7919) % users);
            let item = format!("i{t}-{}", (k * 104_729) % items);
            let r = client.post(format!("{base}/checkout?user_id={user}&id={item}")).send().await.unwrap();
            let st = r.status().as_u16();
            // 503: a pool wait ran out on a loaded machine (1,000 buyers against pools of 4);
            // the hold is released, so it counts as no checkout. Anything else is a bug.
            assert!(st == 200 || st == 409 || st == 503, "checkout answered {st}");
            if st != 200 {
                return None;
            }
            let v: sonic_rs::Value = sonic_rs::from_str(&r.text().await.unwrap()).unwrap();
            let code = v.get("code").and_then(|c| c.as_str()).unwrap().to_string();
            tokio::time::sleep(Duration::from_millis((k as u64 * 37) % 1500)).await;
            // A purchase is idempotent: a 503 (outcome unknown) is retried with the same code,
            // as a client would, so every 200 below is final.
            let mut st = 503;
            for _ in 0..20 {
                let r = client.post(format!("{base}/purchase?code={code}")).send().await.unwrap();
                st = r.status().as_u16();
                if st != 503 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            assert!(st == 200 || st == 404, "purchase answered {st}");
            (st == 200).then_some((code, (user, item)))
        }));
    }
    let mut acked = HashMap::new();
    for h in handles {
        if let Some((code, ui)) = h.await.unwrap() {
            acked.insert(code, ui);
        }
    }
    acked
}

/// Deletes every Redis key of the test's sale, as a restart without persistence would.
fn lose_sale_keys(t: &str) {
    let keys =
        std::process::Command::new("redis-cli").args(["--scan", "--pattern", &format!("t{t}:*")]).output().unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&keys.stdout).lines().map(String::from).collect();
    assert!(!keys.is_empty());
    for chunk in keys.chunks(200) {
        std::process::Command::new("redis-cli").arg("del").args(chunk).output().unwrap();
    }
}

fn check_invariants(t: &str, acked: &HashMap<String, (String, String)>, user_limit: usize, sale_items: usize) {
    let rows = sales_in_postgres(&format!("s{t}"));
    let items: HashSet<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(items.len(), rows.len(), "no item sold twice");
    assert!(rows.len() <= sale_items, "{} sold > {sale_items}", rows.len());
    let mut per_user: HashMap<&String, usize> = HashMap::new();
    for r in &rows {
        *per_user.entry(&r.2).or_default() += 1;
    }
    assert!(per_user.values().all(|&c| c <= user_limit), "a user over the limit: {per_user:?}");
    let in_db: HashMap<&String, (&String, &String)> = rows.iter().map(|r| (&r.1, (&r.2, &r.0))).collect();
    for (code, (user, item)) in acked {
        assert_eq!(in_db.get(code), Some(&(user, item)), "acknowledged purchase {code} is in Postgres");
    }
    assert_eq!(in_db.len(), acked.len(), "no purchase in Postgres without a 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_buyers_never_oversell_or_lose_a_purchase() {
    let (app, t) = sale_app(&[
        ("SALE_ITEMS", "60".into()),
        ("SALE_USER_LIMIT", "2".into()),
        ("RESERVATION_TIMEOUT_SECONDS", "1".into()),
    ])
    .await;
    let acked = race(&app, &t, 1000, 200, 100).await;
    assert!(!acked.is_empty());
    check_invariants(&t, &acked, 2, 60);
    let (_, v) = app.get_json("/status").await;
    assert_eq!(n(&v, "purchased_goods") as usize, acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_flushed_mid_sale_is_rebuilt_from_postgres() {
    let (app, t) = sale_app(&[("SALE_ITEMS", "40".into()), ("SALE_USER_LIMIT", "2".into())]).await;
    let mut acked = race(&app, &t, 300, 60, 80).await;
    // A live hold that must survive the flush.
    let (st, hold) = post(&app, &format!("/checkout?user_id=h{t}&id=i{t}-hold")).await;
    let live_code = if st == 200 { Some(s(&hold, "code").to_string()) } else { None };
    lose_sale_keys(&t);
    // Items sold before the flush are still refused; the sale goes on within its limits.
    if let Some((_, (_, item))) = acked.iter().next() {
        let (st, e) = post(&app, &format!("/checkout?user_id=z{t}&id={item}")).await;
        assert_eq!((st, s(&e, "code")), (409, "ITEM_SOLD"), "{e:?}");
    }
    if let Some(code) = live_code {
        let (st, p) = post(&app, &format!("/purchase?code={code}")).await;
        assert_eq!(st, 200, "a live hold survives the rebuild: {p:?}");
        acked.insert(code, (format!("h{t}"), format!("i{t}-hold")));
    }
    let more = race(&app, &t, 300, 60, 80).await;
    acked.extend(more);
    check_invariants(&t, &acked, 2, 40);
}

#[tokio::test]
async fn redis_down_means_503_and_nothing_half_written() {
    let proxy = Proxy::start("127.0.0.1:6379".into()).await;
    let (app, t) =
        sale_app(&[("REDIS_URL", format!("redis://{}/", proxy.addr())), ("HEALTH_INTERVAL_MS", "200".into())]).await;
    let (st, c) = post(&app, &format!("/checkout?user_id=u{t}&id=i{t}a")).await;
    assert_eq!(st, 200);
    proxy.disable();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, e) = post(&app, &format!("/checkout?user_id=u{t}&id=i{t}b")).await;
    assert_eq!((st, s(&e, "code")), (503, "DEPENDENCY_UNAVAILABLE"));
    let (st, _) = post(&app, &format!("/purchase?code={}", s(&c, "code"))).await;
    assert_eq!(st, 503);
    assert_eq!(app.get_json("/status").await.0, 503);
    assert!(sales_in_postgres(&format!("s{t}")).is_empty(), "no sale without a 200");
    proxy.enable();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (st, p) = post(&app, &format!("/purchase?code={}", s(&c, "code"))).await;
        if st == 200 {
            assert_eq!(s(&p, "item"), format!("i{t}a"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no recovery: {st} {p:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sales_in_postgres(&format!("s{t}")).len(), 1);
}

#[tokio::test]
async fn sale_rate_limits_answer_429_with_retry_after() {
    // Per client: 5 requests/s (burst 5). One keep-alive client sends 20 at once.
    let (app, t) = sale_app(&[("SALE_CLIENT_RATE_LIMIT", "5".into())]).await;
    let mut codes = std::collections::HashMap::<u16, usize>::new();
    let mut retry_after = Vec::new();
    for i in 0..20 {
        let r = app.client.post(app.url(&format!("/checkout?user_id=rl{t}u{i}&id=rl{t}i{i}"))).send().await.unwrap();
        let st = r.status().as_u16();
        if st == 429 {
            retry_after.push(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap());
            let v: sonic_rs::Value = sonic_rs::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(s(&v, "code"), "RATE_LIMITED");
        }
        *codes.entry(st).or_default() += 1;
    }
    let limited = codes.get(&429).copied().unwrap_or(0);
    // Two workers, each with its own bucket of 5: at most 10 (+ refill) get through.
    assert!(limited >= 8, "most of the burst over the limit is refused: {codes:?}");
    assert!(codes.get(&200).copied().unwrap_or(0) >= 5, "the first five pass: {codes:?}");
    assert!(retry_after.iter().all(|&s| s >= 1), "{retry_after:?}");
    // The sale's GET /status is not limited.
    assert_eq!(app.client.get(app.url("/status")).send().await.unwrap().status(), 200);

    // Service-wide: 2/s over two workers = 1 per worker.
    let (app, t) = sale_app(&[("SALE_RATE_LIMIT", "2".into())]).await;
    let mut limited = 0;
    for i in 0..10 {
        let st = post(&app, &format!("/checkout?user_id=rg{t}u{i}&id=rg{t}i{i}")).await.0;
        limited += usize::from(st == 429);
    }
    assert!(limited >= 6, "global limit refuses the rest: {limited} of 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_purchase_all_answer_the_same_200() {
    // A client that lost its answer retries; twenty at once behind a barrier, fifteen times.
    let (app, t) = sale_app(&[]).await;
    for trial in 0..15 {
        let (st, c) = post(&app, &format!("/checkout?user_id=r{t}-{trial}&id=i{t}-r{trial}")).await;
        assert_eq!(st, 200, "{c:?}");
        let url = app.url(&format!("/purchase?code={}", s(&c, "code")));
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (url, health, barrier) = (url.clone(), app.url("/health"), barrier.clone());
            tasks.push(tokio::spawn(async move {
                // A connection of its own, opened before the barrier.
                let client = reqwest::Client::new();
                let _ = client.get(health).send().await;
                barrier.wait().await;
                let r = client.post(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }));
        }
        let mut bodies = HashSet::new();
        for task in tasks {
            let (st, body) = task.await.unwrap();
            assert_eq!(st, 200, "trial {trial}: {body}");
            bodies.insert(body);
        }
        assert_eq!(bodies.len(), 1, "trial {trial}: one answer for one purchase: {bodies:?}");
    }
    assert_eq!(sales_in_postgres(&format!("s{t}")).len(), 15);
}

#[tokio::test]
async fn status_after_redis_lost_the_sale_reports_postgres_not_zeros() {
    let (app, t) = sale_app(&[("SALE_ITEMS", "10".into())]).await;
    for i in 0..3 {
        let (st, c) = post(&app, &format!("/checkout?user_id=st{t}-{i}&id=i{t}-st{i}")).await;
        assert_eq!(st, 200);
        assert_eq!(post(&app, &format!("/purchase?code={}", s(&c, "code"))).await.0, 200);
    }
    let (st, held) = post(&app, &format!("/checkout?user_id=st{t}-h&id=i{t}-sth")).await;
    assert_eq!(st, 200, "{held:?}");
    lose_sale_keys(&t);
    let (st, v) = app.get_json("/status").await;
    assert_eq!(st, 200, "{v:?}");
    assert_eq!(
        (n(&v, "purchased_goods"), n(&v, "successful_purchases"), n(&v, "scheduled_goods")),
        (3, 3, 4),
        "the figures Postgres holds, not a fresh zero: {v:?}"
    );
    assert_eq!(n(&v, "successful_checkouts"), 4, "{v:?}");
    assert_eq!(s(&v, "sale_status"), "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_that_timed_out_leaves_no_hold_when_redis_runs_it_late() {
    // Redis stalls (as under CLIENT PAUSE): every byte to it waits 2.5 s, past the sale's
    // 1 s deadline, so both checkouts answer 503 and their scripts run afterwards.
    let proxy = Proxy::start("127.0.0.1:6379".into()).await;
    let (app, t) =
        sale_app(&[("REDIS_URL", format!("redis://{}/", proxy.addr())), ("HEALTH_INTERVAL_MS", "60000".into())]).await;
    assert_eq!(app.get_json("/status").await.0, 200, "the sale is loaded before the stall");
    proxy.set_latency(2500);
    let (path_a, path_b) =
        (format!("/checkout?user_id=u{t}&id=i{t}-late-a"), format!("/checkout?user_id=u{t}&id=i{t}-late-b"));
    let (a, b) = tokio::join!(post(&app, &path_a), post(&app, &path_b));
    assert_eq!((a.0, b.0), (503, 503), "{a:?} {b:?}");
    proxy.set_latency(0);
    let holds = |status: &str| -> usize {
        let keys = std::process::Command::new("redis-cli")
            .args(["--scan", "--pattern", &format!("t{t}:sale:hold:*")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&keys.stdout)
            .lines()
            .filter(|k| {
                let st = std::process::Command::new("redis-cli").args(["hget", k, "status"]).output().unwrap();
                String::from_utf8_lossy(&st.stdout).trim() == status
            })
            .count()
    };
    // The late scripts ran (their records exist) and were undone (released), nothing held.
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while holds("released") < 2 {
        assert!(
            std::time::Instant::now() < until,
            "late scripts: {} held, {} released",
            holds("held"),
            holds("released")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holds("held"), 0, "no hold left by a failed answer");
    let (st, v) = app.get_json("/status").await;
    assert_eq!((st, n(&v, "scheduled_goods"), n(&v, "successful_checkouts")), (200, 0, 0), "{v:?}");
    // The items are free for the next buyer.
    assert_eq!(post(&app, &format!("/checkout?user_id=v{t}&id=i{t}-late-a")).await.0, 200);
}

/// Sets every key of the test's sale matching `pattern` (after the prefix) to 0 in Redis.
fn zero_keys(t: &str, pattern: &str) {
    let keys = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("t{t}:sale:{pattern}")])
        .output()
        .unwrap();
    for k in String::from_utf8_lossy(&keys.stdout).lines() {
        std::process::Command::new("redis-cli").args(["set", k, "0"]).output().unwrap();
    }
}

#[tokio::test]
async fn postgres_refuses_a_purchase_past_the_stock_or_the_limit_whatever_redis_says() {
    let (app, t) = sale_app(&[("SALE_ITEMS", "2".into()), ("SALE_USER_LIMIT", "1".into())]).await;
    for i in 0..2 {
        let (st, c) = post(&app, &format!("/checkout?user_id=u{t}-{i}&id=i{t}-{i}")).await;
        assert_eq!(st, 200);
        assert_eq!(post(&app, &format!("/purchase?code={}", s(&c, "code"))).await.0, 200);
    }
    // Redis forgets the sale's counters (as a wrong or partly lost Redis would): it lets a
    // third buyer, and a second purchase of the first buyer, through.
    zero_keys(&t, "*:taken");
    zero_keys(&t, "*:user:*");
    let (st, c) = post(&app, &format!("/checkout?user_id=u{t}-2&id=i{t}-2")).await;
    assert_eq!(st, 200, "Redis now believes there is room: {c:?}");
    let (st, e) = post(&app, &format!("/purchase?code={}", s(&c, "code"))).await;
    assert_eq!((st, s(&e, "code")), (409, "SOLD_OUT"), "the stock counted in Postgres refuses it");
    let (st, c) = post(&app, &format!("/checkout?user_id=u{t}-0&id=i{t}-3")).await;
    assert_eq!(st, 200, "{c:?}");
    let (st, e) = post(&app, &format!("/purchase?code={}", s(&c, "code"))).await;
    assert!(st == 409 && ["SOLD_OUT", "USER_LIMIT"].contains(&s(&e, "code")), "{st} {e:?}");
    assert_eq!(sales_in_postgres(&format!("s{t}")).len(), 2, "never more sales than items");
}
