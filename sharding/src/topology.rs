//! The cluster topology: where each shard's Postgres primary, streaming replica and
//! PgBouncer listen, loaded from TOML (`config/topology.toml`) plus environment overrides.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Ring, ShardId, DEFAULT_VNODES};

/// Highest shard count [`Topology::local_default`] supports: with more, shard 10's primary
/// port (5450) would collide with shard 0's replica.
const LOCAL_MAX_SHARDS: usize = 10;

/// A TCP address, `host:port`. The host is a name or IP address and is not resolved:
/// `localhost:5440` and `127.0.0.1:5440` are different addresses to this crate.
///
/// Parses from and displays as `host:port`; an IPv6 host is written in brackets
/// (`[::1]:5440`) and stored without them. Serializes as that string.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Addr {
    /// Host name or IP address, never empty.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl Addr {
    /// An address from its parts (not checked; [`Topology::validate`] checks it).
    pub fn new(host: impl Into<String>, port: u16) -> Addr {
        Addr { host: host.into(), port }
    }

    /// Why this address is unusable, if it is.
    fn problem(&self) -> Option<String> {
        if self.host.is_empty() {
            Some("empty host".into())
        } else if self.host.chars().any(char::is_whitespace) {
            Some(format!("host {:?} contains whitespace", self.host))
        } else if self.host.contains(['[', ']', '/']) {
            Some(format!("host {:?} contains '[', ']' or '/'", self.host))
        } else if self.port == 0 {
            Some("port 0 is not a usable port".into())
        } else {
            None
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Addr {
    type Err = Error;

    /// Parses `host:port` or `[ipv6]:port`. Refuses an empty host and a missing, zero or
    /// non-numeric port; the error names the text.
    fn from_str(s: &str) -> Result<Addr, Error> {
        let bad = |reason: String| Error::InvalidAddr { value: s.to_string(), reason };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']' after the IPv6 host".into()))?;
            let port = after.strip_prefix(':').ok_or_else(|| bad("missing port; expected [host]:port".into()))?;
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("missing port; expected host:port".into()))?;
            if host.contains(':') {
                return Err(bad("an IPv6 host must be in brackets, like [::1]:5432".into()));
            }
            (host, port)
        };
        if port.is_empty() {
            return Err(bad("missing port; expected host:port".into()));
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("port {port:?} is not a number")));
        }
        let port: u16 = port.parse().map_err(|_| bad(format!("port {port} is out of range (1..=65535)")))?;
        let addr = Addr::new(host, port);
        match addr.problem() {
            Some(reason) => Err(bad(reason)),
            None => Ok(addr),
        }
    }
}

impl TryFrom<String> for Addr {
    type Error = Error;

    fn try_from(s: String) -> Result<Addr, Error> {
        s.parse()
    }
}

impl From<Addr> for String {
    fn from(addr: Addr) -> String {
        addr.to_string()
    }
}

/// One shard: its id, its name, and where its three endpoints listen.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ShardSpec {
    /// The shard's id, `0..shard_count`.
    pub id: ShardId,
    /// Always `shard-{id}` in a valid topology (the ring's vnode labels derive from it).
    pub name: String,
    /// Postgres primary, direct (migrations, admin commands; the request path and the health
    /// monitor go through the pooler).
    pub primary: Addr,
    /// Postgres streaming replica (reads).
    pub replica: Addr,
    /// PgBouncer in transaction mode in front of the primary (writes).
    pub pooler: Addr,
}

impl ShardSpec {
    /// The three endpoints with their role names, in a fixed order.
    fn roles(&self) -> [(&'static str, &Addr); 3] {
        [("primary", &self.primary), ("replica", &self.replica), ("pooler", &self.pooler)]
    }

    fn role_mut(&mut self, role: Role) -> &mut Addr {
        match role {
            Role::Primary => &mut self.primary,
            Role::Replica => &mut self.replica,
            Role::Pooler => &mut self.pooler,
        }
    }
}

#[derive(Clone, Copy)]
enum Role {
    Primary,
    Replica,
    Pooler,
}

/// The whole cluster: ring size, database credentials, and one [`ShardSpec`] per shard.
///
/// Every constructor validates (see [`Topology::validate`]); in a valid topology
/// `shards[i].id == i`. The `Debug` output hides the password.
///
/// TOML form (`config/topology.toml`):
///
/// ```toml
/// vnodes = 1000            # optional, default 1000
/// database = "shardgate"
/// user = "postgres"
/// password = ""            # optional, default ""
/// [[shards]]
/// id = 0
/// name = "shard-0"         # optional, default "shard-{id}"
/// primary = "127.0.0.1:5440"
/// replica = "127.0.0.1:5450"
/// pooler  = "127.0.0.1:6430"
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Topology {
    /// Ring points per shard.
    pub vnodes: usize,
    /// Database name, the same on every shard.
    pub database: String,
    /// Database user, the same on every shard.
    pub user: String,
    /// Database password, the same on every shard (may be empty).
    pub password: String,
    /// The shards, in id order.
    pub shards: Vec<ShardSpec>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Topology")
            .field("vnodes", &self.vnodes)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &password)
            .field("shards", &self.shards)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default = "default_vnodes")]
    vnodes: usize,
    database: String,
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    shards: Vec<RawShard>,
}

fn default_vnodes() -> usize {
    DEFAULT_VNODES
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShard {
    id: ShardId,
    name: Option<String>,
    primary: Addr,
    replica: Addr,
    pooler: Addr,
}

impl Topology {
    /// Parses and validates a topology from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Topology, Error> {
        Self::parse(text, "<string>")
    }

    /// Reads, parses and validates the topology file at `path`. Errors name the path.
    pub fn load(path: &Path) -> Result<Topology, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<Topology, Error> {
        let raw: RawTopology =
            toml::from_str(text).map_err(|e| Error::Parse { origin: origin.to_string(), source: Box::new(e) })?;
        let mut shards: Vec<ShardSpec> = raw
            .shards
            .into_iter()
            .map(|s| ShardSpec {
                id: s.id,
                name: s.name.unwrap_or_else(|| s.id.name()),
                primary: s.primary,
                replica: s.replica,
                pooler: s.pooler,
            })
            .collect();
        shards.sort_by_key(|s| s.id);
        let topology =
            Topology { vnodes: raw.vnodes, database: raw.database, user: raw.user, password: raw.password, shards };
        topology.validate()?;
        Ok(topology)
    }

    /// The local native cluster: shard `i` has its primary on `127.0.0.1:544i`, its replica
    /// on `127.0.0.1:545i` and its PgBouncer on `127.0.0.1:643i`; 1000 vnodes, database
    /// `shardgate`, user `postgres`, empty password.
    ///
    /// # Panics
    ///
    /// Unless `1 <= shard_count <= 10` (beyond 10 the port scheme collides).
    pub fn local_default(shard_count: usize) -> Topology {
        assert!(
            (1..=LOCAL_MAX_SHARDS).contains(&shard_count),
            "local_default supports 1..={LOCAL_MAX_SHARDS} shards, not {shard_count}"
        );
        let local = |port: usize| Addr::new("127.0.0.1", port as u16);
        let shards = (0..shard_count)
            .map(|i| {
                let id = ShardId::new(i as u16);
                ShardSpec {
                    id,
                    name: id.name(),
                    primary: local(5440 + i),
                    replica: local(5450 + i),
                    pooler: local(6430 + i),
                }
            })
            .collect();
        let topology = Topology {
            vnodes: DEFAULT_VNODES,
            database: "shardgate".into(),
            user: "postgres".into(),
            password: String::new(),
            shards,
        };
        topology.validate().expect("the local default topology is valid");
        topology
    }

    /// Applies environment overrides, then validates again. Pass `std::env::vars()` in
    /// production and a literal list in tests.
    ///
    /// Recognized variables (all others, including other `SHARDGATE_*` ones, are ignored):
    ///
    /// | variable | overrides |
    /// | --- | --- |
    /// | `SHARDGATE_VNODES` | `vnodes` |
    /// | `SHARDGATE_DB_NAME` | `database` |
    /// | `SHARDGATE_DB_USER` | `user` |
    /// | `SHARDGATE_DB_PASSWORD` | `password` |
    /// | `SHARDGATE_SHARD_<i>_PRIMARY` | shard `i`'s `primary` |
    /// | `SHARDGATE_SHARD_<i>_REPLICA` | shard `i`'s `replica` |
    /// | `SHARDGATE_SHARD_<i>_POOLER` | shard `i`'s `pooler` |
    ///
    /// Refused: a value that does not parse, a shard `i` that is not in the topology, and a
    /// `SHARDGATE_SHARD_<i>_<X>` whose `<X>` is none of the three roles (a likely typo).
    /// When a variable appears twice, the last value wins.
    pub fn with_env_overrides<I>(mut self, vars: I) -> Result<Topology, Error>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        for (var, value) in vars {
            let bad = |reason: String| Error::InvalidOverride { var: var.clone(), value: value.clone(), reason };
            match var.as_str() {
                "SHARDGATE_VNODES" => {
                    self.vnodes = value.parse().map_err(|_| bad("not a non-negative integer".into()))?;
                }
                "SHARDGATE_DB_NAME" => self.database = value,
                "SHARDGATE_DB_USER" => self.user = value,
                "SHARDGATE_DB_PASSWORD" => self.password = value,
                _ => {
                    let Some((id, role)) = parse_shard_var(&var).map_err(bad)? else {
                        continue;
                    };
                    let addr: Addr = value.parse().map_err(|e| match e {
                        Error::InvalidAddr { reason, .. } => bad(reason),
                        other => bad(other.to_string()),
                    })?;
                    let count = self.shards.len();
                    let shard = self.shards.iter_mut().find(|s| s.id.get() == id).ok_or_else(|| {
                        bad(format!("there is no shard {id} (the topology has {count} shards, ids 0..{count})"))
                    })?;
                    *shard.role_mut(role) = addr;
                }
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks that the topology describes a usable cluster. Refuses, naming the problem:
    /// no shards; `vnodes == 0`; a duplicate shard id; ids that are not exactly
    /// `0..n` in order; a duplicate name; a name other than `shard-{id}`; an empty host or
    /// zero port; the same address used by two endpoints.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |msg: String| Err(Error::InvalidTopology(msg));
        let n = self.shards.len();
        if n == 0 {
            return invalid("no shards: the topology needs at least one [[shards]] entry".into());
        }
        if self.vnodes == 0 {
            return invalid("vnodes is 0: each shard needs at least one ring point".into());
        }

        let mut ids = BTreeSet::new();
        for s in &self.shards {
            if !ids.insert(s.id) {
                return invalid(format!("duplicate shard id {}", s.id));
            }
        }
        let missing: Vec<String> = (0..n)
            .filter(|&i| u16::try_from(i).is_err() || !ids.contains(&ShardId::new(i as u16)))
            .map(|i| i.to_string())
            .collect();
        if !missing.is_empty() {
            let unexpected: Vec<String> = ids.iter().filter(|id| id.index() >= n).map(|id| id.to_string()).collect();
            return invalid(format!(
                "shard ids must be exactly 0..{n} (0 to {}) for {n} shards; missing {}; unexpected {}",
                n - 1,
                missing.join(", "),
                unexpected.join(", ")
            ));
        }
        if let Some((pos, s)) = self.shards.iter().enumerate().find(|(pos, s)| s.id.index() != *pos) {
            return invalid(format!("shards must be listed in id order, but position {pos} holds shard {}", s.id));
        }

        let mut names: HashMap<&str, ShardId> = HashMap::new();
        for s in &self.shards {
            if let Some(first) = names.insert(&s.name, s.id) {
                return invalid(format!("duplicate shard name {:?} (shards {first} and {})", s.name, s.id));
            }
        }
        for s in &self.shards {
            let expected = s.id.name();
            if s.name != expected {
                return invalid(format!(
                    "shard {} is named {:?} but must be named {expected:?}: the ring's vnode \
                     labels are \"{expected}#j\", so a different name would change which keys \
                     the shard owns",
                    s.id, s.name
                ));
            }
        }

        let mut seen: HashMap<&Addr, (ShardId, &'static str)> = HashMap::new();
        for s in &self.shards {
            for (role, addr) in s.roles() {
                if let Some(reason) = addr.problem() {
                    return invalid(format!("shard {} {role} address {:?}: {reason}", s.id, addr.to_string()));
                }
                if let Some((first_id, first_role)) = seen.insert(addr, (s.id, role)) {
                    return invalid(format!(
                        "address {addr} is used twice: by shard {first_id} {first_role} and by shard {} {role}",
                        s.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The ring for this topology: `len()` shards with `vnodes` points each.
    pub fn ring(&self) -> Ring {
        Ring::new(self.shards.len(), self.vnodes)
    }

    /// The shard with id `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not in the topology (`id.index() >= self.len()`).
    pub fn shard(&self, id: ShardId) -> &ShardSpec {
        self.get(id).unwrap_or_else(|| panic!("shard {id} is not in the topology ({} shards)", self.shards.len()))
    }

    /// The shard with id `id`, or `None` if there is none.
    pub fn get(&self, id: ShardId) -> Option<&ShardSpec> {
        self.shards.get(id.index()).filter(|s| s.id == id)
    }

    /// The shard ids, `0..len()`.
    pub fn shard_ids(&self) -> impl ExactSizeIterator<Item = ShardId> + '_ {
        self.shards.iter().map(|s| s.id)
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are no shards (never true for a validated topology).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

/// Parses `SHARDGATE_SHARD_<i>_<ROLE>`. `Ok(None)`: not a shard override at all.
fn parse_shard_var(var: &str) -> Result<Option<(u16, Role)>, String> {
    const ROLES: [(&str, Role); 3] =
        [("_PRIMARY", Role::Primary), ("_REPLICA", Role::Replica), ("_POOLER", Role::Pooler)];
    let Some(rest) = var.strip_prefix("SHARDGATE_SHARD_") else {
        return Ok(None);
    };
    let with_role = ROLES.iter().find_map(|&(suffix, role)| rest.strip_suffix(suffix).map(|number| (number, role)));
    match with_role {
        Some((number, role)) => {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "shard id {number:?} is not a number; expected \
                     SHARDGATE_SHARD_<i>_PRIMARY|REPLICA|POOLER"
                ));
            }
            number.parse::<u16>().map(|id| Some((id, role))).map_err(|_| format!("shard id {number} is out of range"))
        }
        None => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let setting = &rest[digits..];
            if digits > 0 && setting.starts_with('_') {
                Err(format!("unknown shard setting {setting:?}; expected _PRIMARY, _REPLICA or _POOLER"))
            } else {
                // Some other SHARDGATE_SHARD_* variable: not ours.
                Ok(None)
            }
        }
    }
}
