# One Makefile for the inner loop, CI and benchmarks. `make test` works on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help venv dev wheel lint fmt test test-rust test-python conformance interop bench demo clean

help:
	@echo "make demo   - the whole system: STT container + gateway + 30 s Locust speech load test"
	@echo "make test   - set up .venv, build the extension, run cargo test + pytest"
	@echo "make lint   - ruff, mypy, stubtest, cargo fmt --check, clippy -D warnings"
	@echo "make bench  - run the benchmarks (peers side by side, ratios)"
	@echo "make dev    - (re)build the extension into .venv"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet 'maturin>=1.9,<2'
	touch $(STAMP)

venv: $(STAMP)

# Release build: the benchmarks and the timing-sensitive servers need it, and it takes ~1 min.
dev: venv
	$(VENV)/bin/maturin develop --release --quiet --extras transcribe,loadtest,test,dev,bench

# The wheel the container image installs (container/Dockerfile).
wheel: venv
	$(VENV)/bin/maturin build --release --out dist

test-rust:
	cargo test --quiet

test-python: dev
	$(PY) -m pytest

test: test-rust test-python

# The main job: STT container + gateway + a 30 s Locust speech load test through the gateway
# (the official client's wire path); prints the summary, writes demo-report/, stops everything.
demo: dev
	$(PY) -m sagebidi_perf.cli demo $(DEMO_ARGS)

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest sagebidi_perf._native --allowlist .stubtest-allowlist
	cargo fmt --all -- --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --all-targets --features python --quiet -- -D warnings

# Autobahn|Testsuite (Python 2.7, installed into .venv-autobahn) against the echo container.
conformance: dev
	conformance/setup_autobahn.sh
	$(PY) conformance/run_autobahn.py

# The official SageMaker client (Python 3.12 venv .venv-sdk312) against the gateway.
interop: dev
	$(SHELL) tests/interop/setup_sdk_venv.sh
	$(PY) -m pytest tests/test_gateway_interop.py

fmt:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	cargo fmt --all

bench: dev
	$(SHELL) benchmarks/setup_peers.sh && $(PY) benchmarks/run.py $(BENCH_ARGS)

# End to end: our container's echo server beside trio-websocket, websockets, aiohttp and picows
# (each pinned to a core, load client on the other; ~10 min). Kept out of `make bench`.
.PHONY: bench-container
bench-container: dev
	$(PY) benchmarks/container_bench.py $(BENCH_ARGS)

# The gateway relay: direct ws vs through the gateway (added latency, CPU per relayed frame,
# real-time session capacity); container + gateway on one core, load client on the other.
.PHONY: bench-gateway
bench-gateway: dev
	$(PY) benchmarks/gateway_bench.py $(BENCH_ARGS)

# Speech-to-text: `sagebidi serve --model transcribe --workers 2` under 1, 2, 4, 6 real-time streams
# (RTF, final-result latency) beside the bare pocketsphinx loop on the same audio (~4 min).
.PHONY: bench-transcribe
bench-transcribe: dev
	$(PY) benchmarks/transcribe_bench.py $(BENCH_ARGS)

# The load generator: real-time echo sessions (3.2 KB / 100 ms) one Locust worker core keeps on
# time (send jitter p99 <= 2 ms), ours vs the same user on websocket-client (~4 min).
.PHONY: bench-loadtest
bench-loadtest: dev
	$(PY) benchmarks/loadtest_bench.py $(BENCH_ARGS)

clean:
	rm -rf target $(VENV) python/sagebidi_perf/*.so
