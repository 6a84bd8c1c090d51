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
