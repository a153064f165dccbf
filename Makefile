# One command runs the service (`make run`), one passes the tests (`make test`).
# Every target sets up .venv itself from the committed uv.lock.

VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
UV_VERSION := 0.13.9
SYNCED := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# `uv sync` compiles every module to bytecode: with PYTHONDONTWRITEBYTECODE set (as on
# this machine) Python would otherwise recompile them at every start (issue 15).
export UV_COMPILE_BYTECODE := 1

.PHONY: help venv run test pytest gen check-gen lint format clean bench-logs bench-stats bench bench-cpu bench-fairness demo bench-gateway proto-snapshot bench-auth-limits bench-signing bench-filters screenshots bench-ordering

help:
	@echo "make run        gRPC API (127.0.0.1:50051) + REST gateway (127.0.0.1:8080) on SQLite"
	@echo "make test       lint + check-gen + the whole test suite"
	@echo "make gen        regenerate Python stubs and the gateway descriptor from protos/"
	@echo "make check-gen  fail if generated files differ from protos/"
	@echo "make proto-snapshot  record the protos as the contract (refuses breaking changes)"
	@echo "make lint       ruff + mypy (strict)"
	@echo "make demo       deliver signed events to a local receiver and print the log"
	@echo "make bench      delivery throughput, latency and isolation, CPU per delivery, then stats, limits, signing, filters, ordering"
	@echo "make bench-cpu  CPU per delivery: serve (SQLite, PostgreSQL), workers vs a raw loop"
	@echo "make bench-signing  ed25519 vs HMAC: sign/verify CPU and CPU per delivery, same run"
	@echo "make bench-fairness  a tenant's flood to a hanging receiver vs another's latency"
	@echo "make bench-gateway  GET /webhooks/configs through Envoy vs direct gRPC"
	@echo "make bench-auth-limits  cost per call of the limits shared by every serve process"

	@echo "make bench-filters  publish CPU per event, 100 filtered configs vs type matching alone"

	@echo "make screenshots  the dashboard's browser tests, writing docs/screenshots/ (commit them)"
	@echo "make bench-ordering  an ordered endpoint (1,000 keys) vs the same unordered"

$(UV):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

$(SYNCED): $(UV) uv.lock pyproject.toml service/pyproject.toml clients/python/pyproject.toml
	$(UV) sync --frozen --inexact --quiet
	@touch $@

venv: $(SYNCED)

# API + worker + the Envoy REST gateway; a new database gets a demo org and key.
run: $(SYNCED)
	$(VENV)/bin/webhooks run $(RUN_ARGS)

gen: $(SYNCED)
	$(PY) scripts/codegen.py

check-gen: $(SYNCED)
	@$(PY) scripts/codegen.py --check 2>/dev/null

# Record the current protos as the contract snapshot that tests/test_payload_evolution.py
# checks against; refuses (and names) changes that break the evolution rules.
proto-snapshot: check-gen
	$(PY) scripts/proto_snapshot.py

lint: $(SYNCED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy service/webhooks_service clients/python/webhooks_client scripts tests

format: $(SYNCED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The suite in $(PYTEST_WORKERS) processes (pytest-xdist, a test file per process at a
# time: module fixtures start once), then the `serial` tests alone (they restart the
# shared PostgreSQL). Exit code 5 is "none selected" (e.g. PYTEST_ARGS names a file).
PYTEST_WORKERS ?= 3
pytest: $(SYNCED)
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m serial $(PYTEST_ARGS) || test $$? -eq 5

test: lint check-gen pytest

# The dashboard's browser tests (SQLite), their screenshots into docs/screenshots/.
screenshots: $(SYNCED)
	WEBHOOKS_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest tests/test_dashboard_browser.py -q -k sqlite

# Benchmark (not a test): seeds 1,000,000 delivery attempts on SQLite and
# PostgreSQL and prints p50/p99 of ListDeliveryLogs. BENCH_ARGS="--rows 200000".
bench-logs: $(SYNCED)
	$(PY) scripts/bench_logs.py $(BENCH_ARGS)

# Benchmark (not a test): GetEndpointStats on an endpoint with 1,000,000 attempts in the last
# 24 h (the hourly aggregates) vs the same answer scanned from the attempts, and the hot-path
# cost of folding a batch in. BENCH_ARGS="--rows 200000".
bench-stats: $(SYNCED)
	$(PY) scripts/bench_stats.py $(BENCH_ARGS)

# Delivery throughput vs a raw client, publish-to-receipt latency, isolation (SQLite, PostgreSQL);
# then the CPU benchmark below, and the stats, limits, signing, filters and ordering ones
# (bench-ordering: an ordered endpoint with 1,000 keys vs unordered, target >= 0.8x).
bench: $(SYNCED)
	$(PY) scripts/bench_delivery.py $(BENCH_ARGS)
	$(PY) scripts/bench_cpu.py $(CPU_ARGS)
	$(PY) scripts/bench_stats.py $(STATS_ARGS)
	$(PY) scripts/bench_auth_limits.py
	$(PY) scripts/bench_signing.py $(SIGNING_ARGS)
	$(PY) scripts/bench_filters.py $(FILTER_ARGS)
	$(PY) scripts/bench_ordering.py $(ORDERING_ARGS)

# What a limit shared by every serve process costs per call (issue 26), vs the in-process bucket.
bench-auth-limits: $(SYNCED)
	$(PY) scripts/bench_auth_limits.py $(BENCH_ARGS)

# CPU s per 1,000 deliveries of `webhooks serve` (SQLite; PostgreSQL with its processes) and of
# serve + N `webhooks worker`, against a raw aiohttp loop (issue 15).
# CPU_ARGS="--events 3000 --rounds 2 --workers 0,1,2".
bench-cpu: $(SYNCED)
	$(PY) scripts/bench_cpu.py $(CPU_ARGS)

# ed25519 (v1a) vs HMAC (v1): sign/verify CPU and the worker's CPU per delivery.
bench-signing: $(SYNCED)
	$(PY) scripts/bench_signing.py $(SIGNING_ARGS)

# Fairness (issue 9): org A floods 100 configs on a never-answering receiver while org B
# publishes 20 ev/s; B's publish-to-receipt p50/p99 with and without A (SQLite, PostgreSQL).
bench-fairness: $(SYNCED)
	$(PY) scripts/bench_delivery.py --phases fairness $(BENCH_ARGS)

# Service on SQLite + a local receiver: signed deliveries, a 500-then-recovering and a 400 endpoint.
demo: $(SYNCED)
	$(PY) scripts/demo.py

# REST through Envoy vs direct gRPC, same run. BENCH_ARGS="--duration 10 --concurrency 64".
bench-gateway: $(SYNCED)
	$(PY) scripts/bench_gateway.py $(BENCH_ARGS)

# Payload filters (issue 21): publish CPU per event with 100 configs of one organisation, each
# with a CEL filter, vs the same without filters, same run (SQLite, PostgreSQL). Target <= 1.2x.
# FILTER_ARGS="--backend sqlite --events 300 --rounds 3".
bench-filters: $(SYNCED)
	$(PY) scripts/bench_filters.py $(FILTER_ARGS)

clean:
	rm -rf $(VENV) .webhooks .pytest_cache .mypy_cache .ruff_cache

# Ordered delivery (issue 22): an ordered endpoint with 1,000 ordering keys vs the same events
# to an unordered one, live (hand-off) and from a backlog, alternating rounds (target >= 0.8x).
bench-ordering: $(SYNCED)
	$(PY) scripts/bench_ordering.py $(ORDERING_ARGS)
