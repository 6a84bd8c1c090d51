//! The admin commands, run as a user runs them.

mod common;

use std::process::Command;

fn shardgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(args)
        .current_dir(common::repo_root())
        .env_remove("SHARDGATE_CONFIG")
        .output()
        .expect("run shardgate")
}

#[test]
fn shards_prints_five_healthy_shards_with_their_ring_shares() {
    let out = shardgate(&["shards", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: sonic_rs::Value = sonic_rs::from_slice(&out.stdout).unwrap();
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};
    let shards = v.get("shards").unwrap().as_array().unwrap();
    assert_eq!(shards.len(), 5);
    let expected = [20.02, 19.84, 20.16, 19.55, 20.43];
    for (s, want) in shards.iter().zip(expected) {
        assert_eq!(s.get("healthy").and_then(|x| x.as_bool()), Some(true), "{s:?}");
        let share = s.get("ring_share").and_then(|x| x.as_f64()).unwrap() * 100.0;
        assert!((share - want).abs() < 0.005, "{share} vs {want}");
    }
    let table = shardgate(&["shards"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("shard-4") && text.contains("20.43%") && text.contains("5 of 5 shards healthy"), "{text}");
}

#[test]
fn shards_with_one_primary_down_still_prints_the_other_four() {
    let dead = common::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["shards"])
        .current_dir(common::repo_root())
        .env("SHARDGATE_SHARD_2_PRIMARY", format!("127.0.0.1:{dead}"))
        .env("SHARDGATE_SHARD_2_POOLER", format!("127.0.0.1:{}", common::free_port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "an unhealthy shard makes the command fail");
    assert!(text.contains("4 of 5 shards healthy"), "{text}");
    let line = text.lines().find(|l| l.starts_with("shard-2")).unwrap();
    assert!(line.contains("DOWN"), "{line}");
}

#[test]
fn shard_of_and_db_url_agree_with_the_ring() {
    let out = shardgate(&["shard-of", "user123"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("user123 -> shard-2 "));
    let out = shardgate(&["db-url", "3", "--replica"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres://postgres@127.0.0.1:5453/shardgate");
    let out = shardgate(&["db-url", "3"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres://postgres@127.0.0.1:5443/shardgate");
    let out = shardgate(&["db-url", "9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shard 9"));
}

#[test]
fn config_check_validates_and_names_the_bad_setting() {
    let out = shardgate(&["config", "check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("config ok"));
    let bad = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["config", "check"])
        .current_dir(common::repo_root())
        .env("WORKERS", "lots")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("WORKERS"));
    let dir = std::env::temp_dir().join(common::unique("topo"));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("t.toml");
    std::fs::write(&topo, "database = \"shardgate\"\nuser = \"postgres\"\n[[shards]]\nid = 0\nprimary = \"127.0.0.1:5440\"\nreplica = \"127.0.0.1:5440\"\npooler = \"127.0.0.1:6430\"\n").unwrap();
    let bad = shardgate(&["--topology", topo.to_str().unwrap(), "config", "check"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("127.0.0.1:5440"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn serve_refuses_a_port_held_by_another_program() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = shardgate(&["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port.to_string()));
}

#[tokio::test]
async fn serve_refuses_a_second_shardgate_on_the_same_port() {
    // SO_REUSEPORT would let both bind; the per-port lock must refuse the second.
    let app = common::TestApp::start(1).await;
    let out = shardgate(&["serve", "--listen", &format!("127.0.0.1:{}", app.port), "--workers", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serving port"), "{err}");
    assert!(err.contains(&app.pid().to_string()), "names the running pid: {err}");
}

#[test]
fn serve_refuses_a_transaction_mode_pgbouncer_older_than_1_21() {
    // A real PgBouncer 1.18 (Debian bookworm's, unpacked by the script) in transaction mode
    // in front of shard 0's primary: the server must refuse to start and name both.
    let out = Command::new(common::repo_root().join("scripts/old-pgbouncer.sh")).output().expect("old-pgbouncer.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = common::free_port();
    let dir = std::env::temp_dir().join(common::unique("oldpgb"));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = Command::new("chmod").args(["777", dir.to_str().unwrap()]).status();
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\nshardgate = host=127.0.0.1 port=5440 dbname=shardgate\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n\
             auth_file = {}\nadmin_users = postgres\npool_mode = transaction\n\
             ignore_startup_parameters = extra_float_digits\nlogfile = {}\n",
            common::repo_root().join("pgbouncer/userlist.txt").display(),
            dir.join("pgbouncer.log").display()
        ),
    )
    .unwrap();
    let as_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0");
    let mut pgb = if as_root {
        Command::new("runuser").args(["-u", "postgres", "--", &bin, ini.to_str().unwrap()]).spawn().unwrap()
    } else {
        Command::new(&bin).arg(&ini).spawn().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "PgBouncer 1.18 did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let serve = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", common::free_port()), "--workers", "1"])
        .current_dir(common::repo_root())
        .env("SHARDGATE_SHARD_0_POOLER", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let _ = Command::new("kill").arg(pgb.id().to_string()).status();
    let _ = pgb.wait();
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "must refuse to start: {err}");
    assert!(err.contains("shard-0") && err.contains("PgBouncer 1.18"), "names the shard and the version: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}
