//! Topology loading, validation and environment overrides.

use std::path::{Path, PathBuf};

use sharding::{Addr, Error, ShardId, Topology, DEFAULT_VNODES};

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/topology.toml")
}

/// A valid 3-shard topology in TOML, with `extra` appended to shard 1's table and
/// `header` inserted before the shards.
fn toml3(header: &str) -> String {
    format!(
        r#"
database = "shardgate"
user = "postgres"
{header}
[[shards]]
id = 0
primary = "127.0.0.1:5440"
replica = "127.0.0.1:5450"
pooler = "127.0.0.1:6430"
[[shards]]
id = 1
primary = "127.0.0.1:5441"
replica = "127.0.0.1:5451"
pooler = "127.0.0.1:6431"
[[shards]]
id = 2
primary = "127.0.0.1:5442"
replica = "127.0.0.1:5452"
pooler = "127.0.0.1:6432"
"#
    )
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Asserts `result` is an error whose message contains every one of `needles`.
#[track_caller]
fn assert_err_mentions<T: std::fmt::Debug>(result: Result<T, Error>, needles: &[&str]) -> String {
    let msg = result.expect_err("expected an error").to_string();
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
    }
    msg
}

/// Validation of a hand-edited copy of the 5-shard local default.
#[track_caller]
fn refused_after(edit: impl FnOnce(&mut Topology), needles: &[&str]) -> String {
    let mut t = Topology::local_default(5);
    edit(&mut t);
    let result = t.validate();
    assert!(matches!(result, Err(Error::InvalidTopology(_))), "{result:?}");
    assert_err_mentions(result, needles)
}

// ---- the committed file and the defaults ------------------------------------------------

#[test]
fn committed_topology_matches_local_default() {
    let t = Topology::load(&committed_path()).expect("config/topology.toml loads");
    assert_eq!(t.len(), 5);
    assert_eq!(t, Topology::local_default(5));
    assert_eq!(t.vnodes, DEFAULT_VNODES);
    let s3 = t.shard(ShardId::new(3));
    assert_eq!(s3.name, "shard-3");
    assert_eq!(s3.primary.to_string(), "127.0.0.1:5443");
    assert_eq!(s3.replica.to_string(), "127.0.0.1:5453");
    assert_eq!(s3.pooler.to_string(), "127.0.0.1:6433");
    let ring = t.ring();
    assert_eq!((ring.shard_count(), ring.vnodes()), (5, 1000));
    assert_eq!(ring.shard_for_str("user123"), ShardId::new(2));
}

#[test]
fn local_default_ports() {
    let t = Topology::local_default(10);
    for (i, s) in t.shards.iter().enumerate() {
        assert_eq!(s.id, ShardId::new(i as u16));
        assert_eq!(s.name, format!("shard-{i}"));
        assert_eq!(s.primary, Addr::new("127.0.0.1", 5440 + i as u16));
        assert_eq!(s.replica, Addr::new("127.0.0.1", 5450 + i as u16));
        assert_eq!(s.pooler, Addr::new("127.0.0.1", 6430 + i as u16));
    }
    assert_eq!(t.database, "shardgate");
    assert_eq!(t.user, "postgres");
    assert_eq!(t.password, "");
    assert_eq!(t.shard_ids().collect::<Vec<_>>(), (0..10).map(ShardId::new).collect::<Vec<_>>());
}

#[test]
#[should_panic(expected = "1..=10")]
fn local_default_refuses_eleven_shards() {
    let _ = Topology::local_default(11);
}

#[test]
fn optional_fields_default_and_shards_are_sorted() {
    // No vnodes, password or names; shards listed out of order.
    let text = r#"
database = "db"
user = "u"
[[shards]]
id = 1
primary = "h:1"
replica = "h:2"
pooler = "h:3"
[[shards]]
id = 0
primary = "h:4"
replica = "h:5"
pooler = "h:6"
"#;
    let t = Topology::from_toml_str(text).unwrap();
    assert_eq!(t.vnodes, DEFAULT_VNODES);
    assert_eq!(t.password, "");
    assert_eq!(t.shards[0].id, ShardId::new(0));
    assert_eq!(t.shards[0].name, "shard-0");
    assert_eq!(t.shards[1].name, "shard-1");
    assert_eq!(t.shard(ShardId::new(1)).primary, Addr::new("h", 1));
    assert!(t.get(ShardId::new(2)).is_none());
}

#[test]
fn debug_hides_the_password() {
    let mut t = Topology::local_default(1);
    t.password = "hunter2".into();
    let dbg = format!("{t:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
}

// ---- addresses ---------------------------------------------------------------------------

#[test]
fn addr_parses_and_displays() {
    let a: Addr = "127.0.0.1:5440".parse().unwrap();
    assert_eq!(a, Addr::new("127.0.0.1", 5440));
    assert_eq!(a.to_string(), "127.0.0.1:5440");
    let h: Addr = "db.internal:6432".parse().unwrap();
    assert_eq!((h.host.as_str(), h.port), ("db.internal", 6432));
    let v6: Addr = "[::1]:5432".parse().unwrap();
    assert_eq!(v6, Addr::new("::1", 5432));
    assert_eq!(v6.to_string(), "[::1]:5432");
}

#[test]
fn addr_refuses_bad_text_naming_it() {
    for (text, why) in [
        (":5440", "empty host"),
        ("127.0.0.1", "missing port"),
        ("127.0.0.1:", "missing port"),
        ("127.0.0.1:0", "port 0"),
        ("127.0.0.1:abc", "not a number"),
        ("127.0.0.1:-1", "not a number"),
        ("127.0.0.1:70000", "out of range"),
        ("", "missing port"),
        ("::1:5432", "brackets"),
        ("[::1:5432", "missing ']'"),
        ("bad host:1", "whitespace"),
    ] {
        let err = text.parse::<Addr>().unwrap_err();
        assert!(matches!(err, Error::InvalidAddr { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{text:?}")), "{msg:?} does not name {text:?}");
        assert!(msg.contains(why), "{msg:?} does not say {why:?}");
    }
}

#[test]
fn bad_address_in_toml_is_refused_with_its_location() {
    let text = toml3("").replace("127.0.0.1:5451", "127.0.0.1:port");
    let msg = assert_err_mentions(Topology::from_toml_str(&text), &["127.0.0.1:port", "not a number"]);
    assert!(msg.contains("line"), "{msg}");
}

// ---- parse and read errors -----------------------------------------------------------------

#[test]
fn load_error_names_the_path() {
    let path = Path::new("/nonexistent/shardgate/topology.toml");
    let result = Topology::load(path);
    assert!(matches!(result, Err(Error::Read { .. })));
    assert_err_mentions(result, &["/nonexistent/shardgate/topology.toml"]);
}

#[test]
fn parse_error_names_the_path() {
    let dir = std::env::temp_dir().join(format!("sharding-topology-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.toml");
    std::fs::write(&path, "vnodes = \"many\"\n").unwrap();
    let result = Topology::load(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(result, Err(Error::Parse { .. })));
    assert_err_mentions(result, &["broken.toml", "vnodes"]);
}

#[test]
fn unknown_field_is_refused() {
    let text = toml3("replicas = 2");
    assert_err_mentions(Topology::from_toml_str(&text), &["replicas"]);
}

// ---- validation refusals -------------------------------------------------------------------

#[test]
fn refuses_zero_shards() {
    assert_err_mentions(Topology::from_toml_str("database = \"d\"\nuser = \"u\"\n"), &["no shards"]);
    refused_after(|t| t.shards.clear(), &["no shards"]);
}

#[test]
fn refuses_zero_vnodes() {
    assert_err_mentions(Topology::from_toml_str(&toml3("vnodes = 0")), &["vnodes is 0"]);
}

#[test]
fn refuses_duplicate_shard_id() {
    let text = toml3("").replace("id = 2", "id = 1");
    assert_err_mentions(Topology::from_toml_str(&text), &["duplicate shard id 1"]);
}

#[test]
fn refuses_ids_not_0_to_n_minus_1() {
    let text = toml3("").replace("id = 2", "id = 7");
    assert_err_mentions(Topology::from_toml_str(&text), &["0..3", "missing 2", "unexpected 7"]);
    let text = toml3("").replace("id = 0", "id = 3");
    assert_err_mentions(Topology::from_toml_str(&text), &["missing 0", "unexpected 3"]);
}

#[test]
fn refuses_shards_out_of_id_order_when_built_by_hand() {
    refused_after(|t| t.shards.swap(0, 1), &["id order", "position 0 holds shard 1"]);
}

#[test]
fn refuses_duplicate_names() {
    let text = toml3("").replacen("id = 2\n", "id = 2\nname = \"shard-1\"\n", 1);
    assert_err_mentions(Topology::from_toml_str(&text), &["duplicate shard name \"shard-1\"", "shards 1 and 2"]);
}

#[test]
fn refuses_a_name_other_than_shard_id() {
    let text = toml3("").replacen("id = 2\n", "id = 2\nname = \"eu-west\"\n", 1);
    assert_err_mentions(Topology::from_toml_str(&text), &["\"eu-west\"", "must be named \"shard-2\"", "vnode labels"]);
}

#[test]
fn refuses_a_bad_address_built_by_hand() {
    refused_after(|t| t.shards[2].replica.host.clear(), &["shard 2 replica", "empty host"]);
    refused_after(|t| t.shards[4].pooler.port = 0, &["shard 4 pooler", "port 0"]);
}

#[test]
fn refuses_the_same_address_twice() {
    let text = toml3("").replace("127.0.0.1:6431", "127.0.0.1:5440");
    assert_err_mentions(
        Topology::from_toml_str(&text),
        &["127.0.0.1:5440", "used twice", "shard 0 primary", "shard 1 pooler"],
    );
    // Within one shard too.
    refused_after(
        |t| t.shards[3].replica = t.shards[3].primary.clone(),
        &["127.0.0.1:5443", "shard 3 primary", "shard 3 replica"],
    );
}

// ---- environment overrides ----------------------------------------------------------------

#[test]
fn env_overrides_apply() {
    let t = Topology::local_default(5)
        .with_env_overrides(vars(&[
            ("PATH", "/usr/bin"),
            ("SHARDGATE_LISTEN", "0.0.0.0:8080"),
            ("SHARDGATE_SHARD_COUNT", "5"),
            ("SHARDGATE_VNODES", "200"),
            ("SHARDGATE_DB_NAME", "other"),
            ("SHARDGATE_DB_USER", "app"),
            ("SHARDGATE_DB_PASSWORD", "secret"),
            ("SHARDGATE_SHARD_0_PRIMARY", "10.0.0.1:5432"),
            ("SHARDGATE_SHARD_4_REPLICA", "replica4.internal:5432"),
            ("SHARDGATE_SHARD_2_POOLER", "[::1]:6432"),
        ]))
        .unwrap();
    assert_eq!(t.vnodes, 200);
    assert_eq!(t.database, "other");
    assert_eq!(t.user, "app");
    assert_eq!(t.password, "secret");
    assert_eq!(t.shards[0].primary, Addr::new("10.0.0.1", 5432));
    assert_eq!(t.shards[4].replica, Addr::new("replica4.internal", 5432));
    assert_eq!(t.shards[2].pooler, Addr::new("::1", 6432));
    // Untouched fields stay.
    assert_eq!(t.shards[0].replica, Addr::new("127.0.0.1", 5450));
    assert_eq!(t.ring().vnodes(), 200);
}

#[test]
fn no_env_overrides_is_identity() {
    let t = Topology::local_default(5);
    assert_eq!(t.clone().with_env_overrides(Vec::new()).unwrap(), t);
}

#[test]
fn env_override_for_a_missing_shard_is_refused() {
    let result =
        Topology::local_default(5).with_env_overrides(vars(&[("SHARDGATE_SHARD_7_PRIMARY", "127.0.0.1:7000")]));
    assert!(matches!(result, Err(Error::InvalidOverride { .. })));
    assert_err_mentions(result, &["SHARDGATE_SHARD_7_PRIMARY", "no shard 7"]);
}

#[test]
fn bad_env_overrides_are_refused() {
    let t = Topology::local_default(5);
    assert_err_mentions(
        t.clone().with_env_overrides(vars(&[("SHARDGATE_SHARD_1_REPLICA", "localhost")])),
        &["SHARDGATE_SHARD_1_REPLICA", "\"localhost\"", "missing port"],
    );
    assert_err_mentions(
        t.clone().with_env_overrides(vars(&[("SHARDGATE_VNODES", "lots")])),
        &["SHARDGATE_VNODES", "\"lots\""],
    );
    assert_err_mentions(
        t.clone().with_env_overrides(vars(&[("SHARDGATE_SHARD_1_PRIMAY", "127.0.0.1:1")])),
        &["SHARDGATE_SHARD_1_PRIMAY", "unknown shard setting"],
    );
    assert_err_mentions(
        t.clone().with_env_overrides(vars(&[("SHARDGATE_SHARD_x_POOLER", "127.0.0.1:1")])),
        &["SHARDGATE_SHARD_x_POOLER", "\"x\" is not a number"],
    );
    // Parses, but then fails validation.
    assert_err_mentions(t.clone().with_env_overrides(vars(&[("SHARDGATE_VNODES", "0")])), &["vnodes is 0"]);
    assert_err_mentions(
        t.with_env_overrides(vars(&[("SHARDGATE_SHARD_1_POOLER", "127.0.0.1:5440")])),
        &["used twice", "shard 0 primary", "shard 1 pooler"],
    );
}
