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
    // A second cluster in its own folder collides with the running one on port 5440: the
    // script must stop and say which port, not adopt a server that is not its own.
    let dir = std::env::temp_dir().join(format!("sg-cluster-{}", std::process::id()));
    let out = Command::new(script())
        .arg("up")
        .env("CLUSTER_DIR", &dir)
        .env("SHARDS", "1")
        .output()
        .expect("run cluster.sh up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse: {err}");
    assert!(err.contains("5440"), "names the port: {err}");
    let _ = Command::new(script()).arg("clean").env("CLUSTER_DIR", &dir).env("SHARDS", "1").output();
    let _ = std::fs::remove_dir_all(&dir);
}
