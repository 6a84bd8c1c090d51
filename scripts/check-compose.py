#!/usr/bin/env python3
"""Static checks of docker-compose.yml, runnable without a Docker engine.

    .venv/bin/python scripts/check-compose.py [--file PATH] [--root DIR]

Relative paths in the file are resolved against DIR (default: this script's repository, the
Compose project directory). Checks:

- interpolation: no bare `$` that Compose would reject or fill from the caller's shell
  (a shell `$` in a health check must be written `$$`);
- services shard-i, shard-i-replica, pgbouncer-i exist for every shard of config/topology.toml,
  with redis, migrate and shardgate;
- published host ports are unique and exactly the native cluster's: each shard's primary,
  replica and PgBouncer ports from config/topology.toml, Redis 6379, the API 8080; and each
  published container port is the one the service listens on;
- every bind mount is a relative path that exists and is read-only; named volumes are
  declared, and no two services share one (two servers on one data directory);
- every build context and Dockerfile exists, and so does every COPY source of that
  Dockerfile; the PgBouncer image is built from Debian trixie (bookworm's 1.18 is unsafe);
- every service has a health check, except the one-shot `migrate` (restart: "no");
- depends_on: every target exists, service_healthy targets have a health check, no cycle;
  shardgate waits for every PgBouncer and replica and Redis (healthy) and for migrate
  (completed successfully); migrate waits for every primary; each replica and PgBouncer
  waits for its own primary;
- the API's and migrate's SHARDGATE_SHARD_<i>_{PRIMARY,REPLICA,POOLER} name the right
  service and its port, REDIS_URL names redis, SHARDGATE_LISTEN matches the published port;
- one source of truth: every Postgres container's config_file is database/postgres/postgresql.conf
  and its hba_file exists (through the bind mounts); every PgBouncer renders
  pgbouncer/pgbouncer.ini.tmpl with pgbouncer/userlist.txt; each replica clones its own
  primary with its own replication slot;
- placeholders: the @NAME@ placeholders of pgbouncer/pgbouncer.ini.tmpl are exactly the ones
  the PgBouncer entrypoint's sed replaces, and exactly the ones scripts/cluster.sh replaces;
- `docker compose config -q`, only when `docker compose version` works here.

Needs PyYAML (the Makefile installs it into .venv). Exits 1 listing every failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check-compose: PyYAML is missing: `python3 -m pip install pyyaml` (make installs it into .venv)")

ROOT = Path(__file__).resolve().parent.parent
API_PORT = 8080  # server/src/config.rs: default listen 0.0.0.0:8080
REDIS_PORT = 6379  # scripts/cluster.sh: REDIS_PORT default
PG_PORT = 5432  # the postgres image's port

_spec = importlib.util.spec_from_file_location(
    "check_dockerfile", Path(__file__).resolve().parent / "check-dockerfile.py"
)
dockerfile_lib = importlib.util.module_from_spec(_spec)
assert _spec.loader is not None
sys.modules["check_dockerfile"] = dockerfile_lib  # dataclasses look their module up there
_spec.loader.exec_module(dockerfile_lib)


class Checker:
    def __init__(self, compose_file: Path, root: Path):
        self.file = compose_file
        self.root = root
        self.errors: list[str] = []
        self.notes: list[str] = []

    def err(self, msg: str) -> None:
        self.errors.append(msg)

    # ------------------------------------------------------------ helpers

    def rel(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.root))
        except ValueError:
            return str(p)

    def interpolate(self, node, where: str = ""):
        """Compose's interpolation, applied to every string value: `$$` -> `$`,
        `${VAR:-default}` / `${VAR-default}` -> default (we never rely on the caller's
        environment), anything else is reported."""
        if isinstance(node, dict):
            return {k: self.interpolate(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.interpolate(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node
        out = []
        i = 0
        s = node
        while i < len(s):
            c = s[i]
            if c != "$":
                out.append(c)
                i += 1
                continue
            nxt = s[i + 1] if i + 1 < len(s) else ""
            if nxt == "$":
                out.append("$")
                i += 2
            elif nxt == "{":
                end = s.find("}", i)
                body = s[i + 2 : end] if end != -1 else ""
                m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?::?-(.*))?", body, re.S)
                if end == -1 or not m:
                    self.err(f"{where}: invalid interpolation in {node!r}")
                    out.append(s[i:])
                    break
                if m.group(2) is None:
                    self.err(
                        f"{where}: ${{{m.group(1)}}} would be taken from the caller's environment; "
                        f"give a default (${{{m.group(1)}:-...}}) or write $$ for a literal $"
                    )
                out.append(m.group(2) or "")
                i = end + 1
            elif re.match(r"[A-Za-z_]", nxt):
                name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", s[i + 1 :]).group(0)
                self.err(
                    f"{where}: ${name} would be taken from the caller's environment (write $${name} "
                    f"for the container's shell)"
                )
                i += 1 + len(name)
            else:
                self.err(f"{where}: a bare '$' in {node!r} is invalid in Compose; write '$$'")
                out.append("$")
                i += 1
        return "".join(out)

    @staticmethod
    def env_of(svc: dict) -> dict[str, str]:
        env = svc.get("environment") or {}
        if isinstance(env, list):
            out = {}
            for item in env:
                k, _, v = str(item).partition("=")
                out[k] = v
            return out
        return {str(k): "" if v is None else str(v) for k, v in env.items()}

    @staticmethod
    def depends_of(svc: dict) -> dict[str, str]:
        dep = svc.get("depends_on") or {}
        if isinstance(dep, list):
            return {str(d): "service_started" for d in dep}
        return {str(k): (v or {}).get("condition", "service_started") for k, v in dep.items()}

    @staticmethod
    def words(value) -> list[str]:
        if value is None:
            return []
        if isinstance(value, list):
            return [str(v) for v in value]
        return str(value).split()

    def mounts(self, name: str, svc: dict) -> list[dict]:
        """[{'type': 'bind'|'volume', 'source', 'target', 'read_only'}]"""
        out = []
        for v in svc.get("volumes") or []:
            if isinstance(v, dict):
                out.append(
                    {
                        "type": v.get("type", "volume"),
                        "source": str(v.get("source", "")),
                        "target": str(v.get("target", "")),
                        "read_only": bool(v.get("read_only", False)),
                    }
                )
                continue
            parts = str(v).split(":")
            if len(parts) == 1:
                out.append({"type": "volume", "source": "", "target": parts[0], "read_only": False})
                continue
            src, dst = parts[0], parts[1]
            opts = parts[2].split(",") if len(parts) > 2 else []
            kind = "bind" if src.startswith((".", "/", "~")) else "volume"
            out.append({"type": kind, "source": src, "target": dst, "read_only": "ro" in opts})
        return out

    def host_path(self, svc_name: str, svc: dict, container_path: str) -> Path | None:
        """The repository file a container path comes from, through the bind mounts."""
        best = None
        cp = PurePosixPath(container_path)
        for m in self.mounts(svc_name, svc):
            if m["type"] != "bind":
                continue
            t = PurePosixPath(m["target"])
            if cp == t or t in cp.parents:
                if best is None or len(t.parts) > len(PurePosixPath(best["target"]).parts):
                    best = m
        if best is None:
            return None
        sub = cp.relative_to(PurePosixPath(best["target"]))
        return (self.root / best["source"] / str(sub)).resolve()

    def ports(self, name: str, svc: dict) -> list[tuple[str, int, int]]:
        """[(host_ip, published, target)]"""
        out = []
        for p in svc.get("ports") or []:
            if isinstance(p, dict):
                if p.get("published") is None:
                    self.err(f"{name}: port {p} has no fixed published (host) port")
                    continue
                out.append((str(p.get("host_ip", "")), int(p["published"]), int(p["target"])))
                continue
            s = str(p).split("/")[0]
            ip = ""
            if s.startswith("["):  # [::1]:5440:5432
                ip, _, s = s[1:].partition("]:")
            parts = s.split(":")
            if len(parts) == 3 and not ip:
                ip = parts.pop(0)
            if not 1 <= len(parts) <= 2 or not all(x.isdigit() for x in parts):
                self.err(f"{name}: cannot parse port {p!r} (port ranges are not used here)")
                continue
            published, target = (parts[0] if len(parts) == 2 else None), int(parts[-1])
            if published is None:
                self.err(f"{name}: port {p!r} publishes on a random host port; give the native one")
                continue
            out.append((ip, int(published), target))
        return out

    # ------------------------------------------------------------ the checks

    def run(self) -> None:
        if not self.file.is_file():
            self.err(f"{self.file} does not exist")
            return
        try:
            raw = yaml.safe_load(self.file.read_text())
        except yaml.YAMLError as e:
            self.err(f"{self.file}: not valid YAML: {e}")
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
            self.err(f"{self.file}: no services")
            return
        doc = self.interpolate({k: v for k, v in raw.items() if not str(k).startswith("x-")})
        services: dict[str, dict] = doc["services"]
        topo = tomllib.loads((self.root / "config/topology.toml").read_text())
        shards = sorted(topo["shards"], key=lambda s: s["id"])
        n = len(shards)

        def port_of(addr: str) -> int:
            return int(addr.rsplit(":", 1)[1])

        # -------- services
        expected_ports: dict[str, int] = {"redis": REDIS_PORT, "shardgate": API_PORT}
        for s in shards:
            i = s["id"]
            expected_ports[f"shard-{i}"] = port_of(s["primary"])
            expected_ports[f"shard-{i}-replica"] = port_of(s["replica"])
            expected_ports[f"pgbouncer-{i}"] = port_of(s["pooler"])
        required = list(expected_ports) + ["migrate"]
        missing = [r for r in required if r not in services]
        for r in missing:
            self.err(f"service {r} is missing")
        primaries = [f"shard-{s['id']}" for s in shards]
        replicas = [f"shard-{s['id']}-replica" for s in shards]
        poolers = [f"pgbouncer-{s['id']}" for s in shards]
        self.notes.append(
            f"{len(services)} services: {n} primaries, {n} replicas, {n} PgBouncers, redis, migrate, shardgate"
        )

        # -------- what each service listens on (inside its network)
        pgb_entry = self.pgbouncer_entrypoint(services.get(poolers[0], {})) if poolers[0] in services else None
        pgb_defaults = self.script_defaults(pgb_entry) if pgb_entry else {}

        def listen_port(name: str) -> int | None:
            svc = services.get(name)
            if svc is None:
                return None
            env = self.env_of(svc)
            cmd = " ".join(self.words(svc.get("command")))
            if name in primaries or name in replicas:
                m = re.search(r"(?:-c\s+port=|-p\s+)(\d+)", cmd)
                return int(m.group(1)) if m else PG_PORT
            if name in poolers:
                return int(env.get("LISTEN_PORT") or pgb_defaults.get("LISTEN_PORT") or 0) or None
            if name == "redis":
                m = re.search(r"--port\s+(\d+)", cmd)
                return int(m.group(1)) if m else REDIS_PORT
            if name == "shardgate":
                listen = env.get("SHARDGATE_LISTEN", f"0.0.0.0:{API_PORT}")
                port = int(env["PORT"]) if env.get("PORT") else port_of(listen)
                return port
            return None

        # -------- ports
        seen: dict[int, str] = {}
        for name, svc in services.items():
            for _ip, published, target in self.ports(name, svc):
                if published in seen:
                    self.err(f"host port {published} is published by both {seen[published]} and {name}")
                seen[published] = name
                want = expected_ports.get(name)
                if want is None:
                    self.err(
                        f"{name}: publishes host port {published}, but only the native cluster's ports are expected"
                    )
                elif published != want:
                    self.err(f"{name}: host port {published}, the native cluster uses {want}")
                lp = listen_port(name)
                if lp is not None and target != lp:
                    self.err(f"{name}: publishes container port {target}, but the service listens on {lp}")
        for name, want in expected_ports.items():
            if name in services and want not in [p for _, p, _ in self.ports(name, services[name])]:
                self.err(f"{name}: host port {want} (the native cluster's) is not published")
        self.notes.append(
            f"{len(seen)} host ports, unique and equal to the native cluster's: "
            f"{min(seen) if seen else '-'}..{max(seen) if seen else '-'}"
        )

        # -------- mounts and volumes
        declared_volumes = set((doc.get("volumes") or {}).keys())
        rw_volume_users: dict[str, str] = {}
        n_binds = 0
        for name, svc in services.items():
            for m in self.mounts(name, svc):
                if m["type"] == "bind":
                    n_binds += 1
                    src = m["source"]
                    if not src.startswith("."):
                        self.err(f"{name}: bind mount {src} is not a path inside the repository (write ./...)")
                        continue
                    if not (self.root / src).exists():
                        self.err(f"{name}: bind-mounted path {src} does not exist in the repository")
                    if not m["read_only"]:
                        self.err(f"{name}: bind mount {src} -> {m['target']} is not read-only (:ro)")
                elif m["type"] == "volume" and m["source"]:
                    if m["source"] not in declared_volumes:
                        self.err(f"{name}: volume {m['source']} is not declared under the top-level volumes:")
                    if not m["read_only"]:
                        if m["source"] in rw_volume_users:
                            self.err(
                                f"volume {m['source']} is mounted by both {rw_volume_users[m['source']]} and {name}"
                            )
                        rw_volume_users[m["source"]] = name
        for name in primaries + replicas:
            if name in services and not any(
                m["type"] == "volume" and m["source"] for m in self.mounts(name, services[name])
            ):
                self.err(f"{name}: its data is not on a named volume")
        self.notes.append(
            f"{n_binds} bind mounts exist and are read-only; {len(rw_volume_users)} named data volumes, none shared"
        )

        # -------- builds
        for name, svc in services.items():
            b = svc.get("build")
            if b is None:
                if not svc.get("image"):
                    self.err(f"{name}: neither image nor build")
                continue
            ctx_s, df_s = (
                (b, "Dockerfile") if isinstance(b, str) else (b.get("context", "."), b.get("dockerfile", "Dockerfile"))
            )
            ctx = (self.root / ctx_s).resolve()
            df = ctx / df_s
            if not ctx.is_dir():
                self.err(f"{name}: build context {ctx_s} does not exist")
                continue
            if not df.is_file():
                self.err(f"{name}: Dockerfile {self.rel(df)} does not exist")
                continue
            dockerfile_lib.check_copy_sources(df, ctx, self.errors, f"{name}: {self.rel(df)}")
        for name in poolers[:1]:
            svc = services.get(name) or {}
            df = self.dockerfile_of(svc)
            if df:
                _, stages = dockerfile_lib.parse_dockerfile(df)
                image = stages[-1].image if stages else ""
                if "trixie" not in image and not image.startswith(("debian:1", "debian:sid", "debian:forky")):
                    self.err(f"{name}: {self.rel(df)} is FROM {image}; PgBouncer >= 1.21 needs Debian trixie or later")

        # -------- images
        for name in primaries + replicas:
            img = str((services.get(name) or {}).get("image", ""))
            if name in services and not img.startswith("postgres:15"):
                self.err(f"{name}: image {img!r}, expected postgres:15 (the native cluster's major version)")
        if "redis" in services and not str(services["redis"].get("image", "")).startswith("redis:7"):
            self.err(f"redis: image {services['redis'].get('image')!r}, expected redis:7")

        # -------- health checks
        for name, svc in services.items():
            hc = svc.get("healthcheck")
            disabled = not hc or hc.get("disable") or self.words(hc.get("test"))[:1] == ["NONE"]
            if name == "migrate":
                if svc.get("restart", "no") != "no":
                    self.err(
                        f"migrate: restart is {svc.get('restart')!r}; a one-shot job needs "
                        f'restart: "no" (quoted: bare no is a YAML boolean)'
                    )
                continue
            if disabled:
                self.err(f"{name}: no health check")
                continue
            test = " ".join(self.words(hc.get("test"))[1:])
            lp = listen_port(name)
            for m in re.finditer(r"-p\s+(\d+)|https?://[^/:\s]+:(\d+)", test):
                p = int(m.group(1) or m.group(2))
                if lp is not None and p != lp:
                    self.err(f"{name}: the health check probes port {p}, the service listens on {lp}")
        for name in replicas:
            hc = (services.get(name) or {}).get("healthcheck") or {}
            test = " ".join(self.words(hc.get("test")))
            if "pg_stat_wal_receiver" not in test or "streaming" not in test:
                self.err(f"{name}: the health check does not require the WAL receiver to be streaming")
        if "shardgate" in services and "/ready" not in " ".join(
            self.words((services["shardgate"].get("healthcheck") or {}).get("test"))
        ):
            self.err("shardgate: the health check does not hit /ready")

        # -------- depends_on
        graph = {name: self.depends_of(svc) for name, svc in services.items()}
        for name, deps in graph.items():
            for d, cond in deps.items():
                if d not in services:
                    self.err(f"{name}: depends on {d}, which is not a service")
                elif cond == "service_healthy":
                    hc = services[d].get("healthcheck")
                    if not hc or hc.get("disable"):
                        self.err(f"{name}: waits for {d} to be healthy, but {d} has no health check")
                elif cond == "service_completed_successfully" and services[d].get("restart", "no") != "no":
                    self.err(f"{name}: waits for {d} to complete, but {d} restarts")
        state: dict[str, int] = {}

        def visit(v: str, path: list[str]) -> None:
            state[v] = 1
            for d in graph.get(v, {}):
                if state.get(d) == 1:
                    self.err(f"depends_on cycle: {' -> '.join(path + [d])}")
                elif d in graph and not state.get(d):
                    visit(d, path + [d])
            state[v] = 2

        for v in graph:
            if not state.get(v):
                visit(v, [v])

        def need(svc_name: str, target: str, cond: str) -> None:
            if svc_name in services and graph[svc_name].get(target) != cond:
                self.err(
                    f"{svc_name}: must depend on {target} with condition {cond} "
                    f"(has {graph[svc_name].get(target, 'nothing')})"
                )

        for t in poolers + replicas + ["redis"]:
            need("shardgate", t, "service_healthy")
        need("shardgate", "migrate", "service_completed_successfully")
        for p in primaries:
            need("migrate", p, "service_healthy")
        for p, r, b in zip(primaries, replicas, poolers, strict=True):
            need(r, p, "service_healthy")
            need(b, p, "service_healthy")
        self.notes.append(
            "depends_on: shardgate waits for every PgBouncer, replica and Redis (healthy) and migrate (completed)"
        )

        # -------- the API's and migrate's addresses
        role_service = {"PRIMARY": primaries, "REPLICA": replicas, "POOLER": poolers}
        for name in ("shardgate", "migrate"):
            if name not in services:
                continue
            env = self.env_of(services[name])
            roles = ("PRIMARY", "REPLICA", "POOLER") if name == "shardgate" else ("PRIMARY",)
            for idx, s in enumerate(shards):
                for role in roles:
                    var = f"SHARDGATE_SHARD_{s['id']}_{role}"
                    val = env.get(var)
                    want_svc = role_service[role][idx]
                    if not val:
                        self.err(
                            f"{name}: {var} is not set (config/topology.toml's {s[role.lower()]} is this machine's loopback)"
                        )
                        continue
                    host, _, port = val.rpartition(":")
                    if host not in services:
                        self.err(f"{name}: {var}={val}: {host} is not a service")
                    elif host != want_svc:
                        self.err(f"{name}: {var}={val} names {host}, expected {want_svc}")
                    elif not port.isdigit() or int(port) != listen_port(host):
                        self.err(f"{name}: {var}={val}: {host} listens on {listen_port(host)}")
            for var in env:
                m = re.fullmatch(r"SHARDGATE_SHARD_(\d+)_(\w+)", var)
                if m and (int(m.group(1)) >= n or m.group(2) not in role_service):
                    self.err(
                        f"{name}: {var} does not name a shard role of config/topology.toml (the server refuses it)"
                    )
            url = env.get("REDIS_URL", "")
            m = re.fullmatch(r"rediss?://(?:[^@/]*@)?([^:/]+)(?::(\d+))?(?:/.*)?", url)
            if not m:
                self.err(f"{name}: REDIS_URL={url!r} is not a redis:// URL")
            elif m.group(1) != "redis" or int(m.group(2) or REDIS_PORT) != listen_port("redis"):
                self.err(f"{name}: REDIS_URL={url} does not point at the redis service")
        self.notes.append("API environment: every SHARDGATE_SHARD_<i>_* names the right service and port")

        # -------- one source of truth: Postgres configuration
        for name in primaries + replicas:
            svc = services.get(name)
            if not svc:
                continue
            cmd = self.words(svc.get("command"))
            settings = dict(w.split("=", 1) for w in cmd if re.match(r"^[a-z_]+=", w))
            cf = settings.get("config_file")
            if not cf:
                self.err(f"{name}: no -c config_file=...: database/postgres/postgresql.conf must be the configuration")
            else:
                hp = self.host_path(name, svc, cf)
                if hp != (self.root / "database/postgres/postgresql.conf").resolve():
                    self.err(
                        f"{name}: config_file={cf} is {self.rel(hp) if hp else 'not bind-mounted'}, "
                        f"expected database/postgres/postgresql.conf"
                    )
            hba = settings.get("hba_file")
            if hba:
                hp = self.host_path(name, svc, hba)
                if not hp or not hp.is_file():
                    self.err(
                        f"{name}: hba_file={hba} is {self.rel(hp) if hp else 'not bind-mounted'}, which does not exist"
                    )
            if settings.get("listen_addresses") in (None, "127.0.0.1", "localhost", ""):
                self.err(f"{name}: listen_addresses is loopback only (postgresql.conf's); pass -c listen_addresses=*")
            for w in self.words(svc.get("entrypoint")):
                if w.startswith("/etc/") or w.startswith("/docker"):
                    hp = self.host_path(name, svc, w)
                    if hp is not None and not hp.is_file():
                        self.err(f"{name}: entrypoint {w} is {self.rel(hp)}, which does not exist")
        slots: dict[str, str] = {}
        for p, r in zip(primaries, replicas, strict=True):
            env = self.env_of(services.get(r) or {})
            if r in services:
                if env.get("PRIMARY_HOST") != p:
                    self.err(f"{r}: PRIMARY_HOST={env.get('PRIMARY_HOST')!r}, expected {p}")
                slot = env.get("REPLICA_SLOT", "")
                if not re.fullmatch(r"[a-z0-9_]+", slot):
                    self.err(f"{r}: REPLICA_SLOT={slot!r} is not a valid slot name")
                elif slot in slots:
                    self.err(f"{r}: REPLICA_SLOT={slot} is also used by {slots[slot]}")
                slots[slot] = r
                if "replica-entrypoint" not in " ".join(self.words(services[r].get("entrypoint"))):
                    self.err(
                        f"{r}: entrypoint is not docker/postgres/replica-entrypoint.sh (pg_basebackup on first start)"
                    )
        self.notes.append("every Postgres container: config_file = database/postgres/postgresql.conf")

        # -------- one source of truth: PgBouncer
        template = self.root / "pgbouncer/pgbouncer.ini.tmpl"
        userlist = self.root / "pgbouncer/userlist.txt"
        for p, b in zip(primaries, poolers, strict=True):
            svc = services.get(b)
            if not svc:
                continue
            env = self.env_of(svc)
            if env.get("PRIMARY_HOST") != p:
                self.err(f"{b}: PRIMARY_HOST={env.get('PRIMARY_HOST')!r}, expected {p}")
            pport = env.get("PRIMARY_PORT") or pgb_defaults.get("PRIMARY_PORT")
            if pport and pport.isdigit() and int(pport) != listen_port(p):
                self.err(f"{b}: PRIMARY_PORT={pport}, {p} listens on {listen_port(p)}")
            for var, want in (("PGBOUNCER_TEMPLATE", template), ("AUTH_FILE", userlist)):
                path = env.get(var) or pgb_defaults.get(var)
                if not path:
                    self.err(
                        f"{b}: cannot tell where {var} is (not in its environment nor defaulted by the entrypoint)"
                    )
                    continue
                hp = self.host_path(b, svc, path)
                if hp != want.resolve():
                    self.err(
                        f"{b}: {var}={path} is {self.rel(hp) if hp else 'not bind-mounted'}, expected {self.rel(want)}"
                    )
        self.notes.append("every PgBouncer renders pgbouncer/pgbouncer.ini.tmpl with pgbouncer/userlist.txt")

        # -------- placeholders
        tmpl = self.placeholders_in_template(template)
        cluster = self.sed_placeholders(self.root / "scripts/cluster.sh")
        for label, path in (
            ("the PgBouncer entrypoint", pgb_entry),
            ("scripts/cluster.sh", self.root / "scripts/cluster.sh"),
        ):
            if path is None:
                self.err(f"cannot find {label}")
                continue
            got = self.sed_placeholders(path)
            if not got:
                self.err(f"{self.rel(path)}: no sed substitutions of @NAME@ placeholders found")
            if tmpl - got:
                self.err(f"{self.rel(path)} does not replace {', '.join(sorted(tmpl - got))} of {self.rel(template)}")
            if got - tmpl:
                self.err(
                    f"{self.rel(path)} replaces {', '.join(sorted(got - tmpl))}, which {self.rel(template)} does not have"
                )
        if pgb_entry is not None and cluster != self.sed_placeholders(pgb_entry):
            self.err("scripts/cluster.sh and the PgBouncer entrypoint replace different placeholders")
        self.notes.append(
            f"{len(tmpl)} template placeholders, replaced by both the entrypoint and scripts/cluster.sh: "
            + " ".join(sorted(tmpl))
        )

    # ------------------------------------------------------------ PgBouncer entrypoint

    def dockerfile_of(self, svc: dict) -> Path | None:
        b = svc.get("build")
        if b is None:
            return None
        ctx_s, df_s = (
            (b, "Dockerfile") if isinstance(b, str) else (b.get("context", "."), b.get("dockerfile", "Dockerfile"))
        )
        df = (self.root / ctx_s / df_s).resolve()
        return df if df.is_file() else None

    def pgbouncer_entrypoint(self, svc: dict) -> Path | None:
        """The repository file that the PgBouncer image runs as its entrypoint: the COPY
        source whose destination is the ENTRYPOINT (or the compose entrypoint)."""
        df = self.dockerfile_of(svc)
        if df is None:
            return None
        instrs, _ = dockerfile_lib.parse_dockerfile(df)
        ep = self.words(svc.get("entrypoint")) or next(
            (dockerfile_lib.exec_words(i.args) for i in reversed(instrs) if i.keyword == "ENTRYPOINT"), []
        )
        if not ep:
            self.err(f"{self.rel(df)}: no ENTRYPOINT")
            return None
        shells = ("sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env")
        target = ep[1] if ep[0] in shells and len(ep) > 1 else ep[0]
        for ins in instrs:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            flags, sources, dest = dockerfile_lib.copy_sources(ins)
            if "from" in flags or len(sources) != 1:
                continue
            if dest == target or (dest.endswith("/") and dest + Path(sources[0]).name == target):
                src = (df.parent / sources[0]).resolve()
                if not src.is_file():
                    self.err(f"{self.rel(df)}: the entrypoint's source {self.rel(src)} does not exist")
                    return None
                return src
        self.err(f"{self.rel(df)}: the entrypoint {target} is not a file copied from the build context")
        return None

    @staticmethod
    def script_defaults(path: Path) -> dict[str, str]:
        """VAR="${VAR:-default}" lines of a shell script -> {VAR: default}, with $OTHER expanded."""
        out: dict[str, str] = {}
        for m in re.finditer(r'^\s*([A-Z_]+)="\$\{\1:-([^}]*)\}"', path.read_text(), re.M):
            val = re.sub(r"\$\{?([A-Z_]+)\}?", lambda mm: out.get(mm.group(1), mm.group(0)), m.group(2))
            out[m.group(1)] = val
        return out

    @staticmethod
    def placeholders_in_template(path: Path) -> set[str]:
        found: set[str] = set()
        for line in path.read_text().splitlines():
            if line.lstrip().startswith((";", "#")):
                continue  # the template's header mentions "@NAME@" in prose
            found.update(re.findall(r"@([A-Z][A-Z0-9_]*)@", line))
        return found

    @staticmethod
    def sed_placeholders(path: Path) -> set[str]:
        """Placeholders replaced by sed expressions s<d>@NAME@<d>...<d>g in a shell script."""
        text = path.read_text()
        return {m[1] for m in re.findall(r"""-e\s+["']?s(.)@([A-Z][A-Z0-9_]*)@\1""", text)}

    # ------------------------------------------------------------ docker compose config

    def compose_config(self) -> None:
        if shutil.which("docker") is None:
            self.notes.append("docker compose config -q: skipped (no docker CLI here)")
            return
        try:
            v = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.notes.append(f"docker compose config -q: skipped ({e})")
            return
        if v.returncode != 0:
            why = (v.stderr or v.stdout).strip().splitlines()
            self.notes.append(
                f"docker compose config -q: skipped (`docker compose version` failed: {why[0] if why else v.returncode})"
            )
            return
        r = subprocess.run(
            ["docker", "compose", "-f", str(self.file), "--project-directory", str(self.root), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            self.err(f"docker compose config -q failed:\n{(r.stderr or r.stdout).strip()}")
        else:
            self.notes.append(f"docker compose config -q: OK ({v.stdout.strip()})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--root", type=Path, default=ROOT, help="repository root = Compose project directory (default: %(default)s)"
    )
    ap.add_argument("-f", "--file", type=Path, help="compose file (default: ROOT/docker-compose.yml)")
    a = ap.parse_args()
    root = a.root.resolve()
    c = Checker((a.file or root / "docker-compose.yml").resolve(), root)
    c.run()
    if not c.errors:
        c.compose_config()
    if c.errors:
        print(f"check-compose: {len(c.errors)} problem(s) in {c.file}:", file=sys.stderr)
        for e in c.errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"check-compose: OK ({c.rel(c.file)})")
    for n in c.notes:
        print(f"  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
