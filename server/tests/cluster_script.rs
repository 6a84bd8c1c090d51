//! The native cluster script, run the way a user runs it.

use std::process::Command;

fn script() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh")
}

#[test]
fn status_reports_every_piece_of_the_running_cluster() {
    let out = Command::new(script()).arg("status").output().expect("run cluster.sh status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status exit {:?}:\n{text}", out.status);
    for i in 0..5 {
        let line = text.lines().find(|l| l.starts_with(&format!("shard-{i} "))).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(line.matches("up 127.0.0.1").count(), 3, "{line}");
        assert!(line.contains(" B, "), "replica lag shown: {line}");
    }
    assert!(text.contains("redis    up"), "{text}");
}

#[test]
fn up_refuses_a_port_held_by_someone_else_and_names_it() {
    // A one-shard cluster of its own (own folder, own ports) whose primary port is held by
    // a plain TCP listener: the script must stop and say which port, not start around it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("sg-cluster-{}", std::process::id()));
    let run = |cmd: &str| {
        Command::new(script())
            .arg(cmd)
            .env("CLUSTER_DIR", &dir)
            .env("SHARDS", "1")
            .env("PRIMARY_PORT_BASE", port.to_string())
            .env("REPLICA_PORT_BASE", (port - 1).to_string())
            .env("POOLER_PORT_BASE", (port - 2).to_string())
            .output()
            .expect("run cluster.sh")
    };
    let out = run("up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse: {err}");
    assert!(err.contains(&format!("port {port}")), "names the port: {err}");
    let _ = run("clean");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn up_adopts_its_own_pgbouncer_whose_pid_file_was_lost() {
    // A run killed halfway can leave this cluster's PgBouncer running without its pid file;
    // `up` must take it back (it runs from this cluster's own configuration), not refuse the
    // port as someone else's.
    let pidfile =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cluster/shard-3/pgbouncer/pgbouncer.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("the shared cluster's pgbouncer-3 pid file");
    std::fs::remove_file(&pidfile).unwrap();
    let out = Command::new(script()).arg("up").output().expect("run cluster.sh up");
    let err = String::from_utf8_lossy(&out.stderr);
    let back = std::fs::read_to_string(&pidfile).unwrap_or_default();
    if back.is_empty() {
        std::fs::write(&pidfile, &pid).unwrap(); // leave the cluster as it was found
    }
    // (Not the exit status: `up` ends with a status check that a replica catching up at that
    // moment can fail, which says nothing about the adoption.)
    assert!(err.contains("adopted the running PgBouncer"), "{err}");
    assert!(!err.contains("is not our PgBouncer"), "up refused its own PgBouncer:\n{err}");
    assert_eq!(back.trim(), pid.trim(), "the running PgBouncer adopted: {err}");
}
