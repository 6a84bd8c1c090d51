# The shardgate binary (server/, package `shardgate`) in a small runtime image.
# Build context: the repository root (see .dockerignore). Checked by scripts/check-dockerfile.py.
#
#   docker build -t shardgate:local .
#   docker run --rm shardgate:local config check     # any subcommand; CMD is `serve`
#
# Used by docker-compose.yml for the API (`serve`) and the one-shot `migrate up` job. The
# migrations are compiled into the binary (sqlx::migrate! in database/src/migrate.rs).

# ---------------------------------------------------------------- build
FROM rust:1-bookworm AS build
WORKDIR /src

# 1. Dependencies only, cached until Cargo.toml / Cargo.lock change: the workspace
#    manifests with empty stand-ins for the workspace's own sources. Every target a
#    manifest declares explicitly needs a stand-in, or cargo refuses to load it
#    (server: [lib] and [[bin]]; sharding: [[bench]] ring).
COPY Cargo.toml Cargo.lock ./
COPY sharding/Cargo.toml sharding/Cargo.toml
COPY database/Cargo.toml database/Cargo.toml
COPY server/Cargo.toml server/Cargo.toml
RUN set -eux; \
    mkdir -p sharding/src sharding/benches database/src server/src; \
    touch sharding/src/lib.rs database/src/lib.rs server/src/lib.rs; \
    echo 'fn main() {}' > server/src/main.rs; \
    echo 'fn main() {}' > sharding/benches/ring.rs; \
    cargo build --release -p shardgate --locked; \
    rm -rf sharding/src sharding/benches database/src server/src

# 2. The real sources. COPY keeps the files' modification times, which can be older than
#    the stand-ins' build: cargo would then take the stand-ins' artifacts for up to date.
#    Touching the sources makes cargo rebuild the three workspace crates (only them).
COPY sharding sharding
COPY database database
COPY server server
# server/build.rs compiles the gRPC contract (protox: no protoc needed in the image).
COPY proto proto
RUN set -eux; \
    find sharding database server -type f -exec touch {} +; \
    cargo build --release -p shardgate --locked; \
    install -D -m 0755 target/release/shardgate /out/shardgate; \
    /out/shardgate --help | grep -q 'migrate'   # the real binary, not the stand-in

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime

# ca-certificates for TLS clients, curl for the health check.
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 shardgate; \
    useradd --system --uid 10001 --gid shardgate --home-dir /app --no-create-home --shell /usr/sbin/nologin shardgate

WORKDIR /app
COPY --from=build /out/shardgate /usr/local/bin/shardgate
# config/topology.toml is read relative to the working directory (server/src/config.rs);
# docker-compose.yml points the shards at its containers with SHARDGATE_SHARD_<i>_* variables.
COPY config/ /app/config/

USER 10001:10001
ENV SHARDGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
# /ready: every primary reachable (through its PgBouncer) and Redis up. The port is the one
# above; change both when serving on another PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/ready || exit 1
# WORKERS is not set: one worker process per CPU.
ENTRYPOINT ["shardgate"]
CMD ["serve"]
