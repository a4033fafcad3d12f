# l2mesh: `make demo` runs the real thing, `make test` runs the test suite.
# Both set themselves up on a fresh Debian 12 machine (as root): Debian
# packages the tests use, a virtual environment, and l2mesh installed in it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Build needs (python-pytun compiles a C extension) and the real programs the
# tests and benchmarks drive. miniupnpd-nftables is the bare binary (no service,
# no debconf questions): the port-mapping tests run their own, in a lab namespace.
BUILD_DEBS := python3-venv python3-dev gcc
TEST_DEBS := iproute2 iputils-ping iputils-arping iperf3 nftables dnsmasq-base tcpdump \
             tinc avahi-daemon avahi-utils procps kmod miniupnpd-nftables bind9-dnsutils postgresql \
             chromium chromium-driver
# tests/integration/test_install.py installs a built wheel with pipx, as README tells users to.
TEST_DEBS += pipx
.PHONY: all test unit integration bench demo deps clean

all: test

deps:
	@scripts/install-debs.sh $(BUILD_DEBS) $(TEST_DEBS)

# `l2mesh daemon` runs under -OO -X no_debug_ranges (l2mesh/edge/reexec.py): its *.opt-2.pyc bytecode is
# compiled here (~5 s), not by the first daemons.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -OO -X no_debug_ranges -m compileall -q -j0 l2mesh "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null \
		|| echo "some -OO bytecode not compiled: daemons compile it at start-up"
	@touch $@

test: deps $(VENV)/.installed
	scripts/run-tests.sh

unit: $(VENV)/.installed
	scripts/run-tests.sh tests/unit

integration: deps $(VENV)/.installed
	scripts/run-tests.sh tests/integration

bench: deps $(VENV)/.installed
	$(PY) benchmarks/micro.py
	$(PY) benchmarks/net.py
	$(PY) benchmarks/control.py
	$(PY) benchmarks/relay_churn.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/flood.py
	$(PY) benchmarks/idle_peers.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/python_floor.py

# Crash loops at full length: 200 SIGKILLs each of the controller (SQLite, PostgreSQL) and of a node
# daemon, every restart checked against what was acknowledged (`make test` runs a shorter loop).
CRASH_N ?= 200
.PHONY: crashloop
crashloop: deps $(VENV)/.installed
	CRASH_N=$(CRASH_N) scripts/run-tests.sh -rP tests/integration/test_crash_loops.py

# Fuzzing at scale (issue 16): FUZZ_N inputs spread over every parser and state-machine entry point
# (tests/fuzz); a table per target, repro files in fuzz-findings/, exit 1 on any unhandled exception.
FUZZ_N ?= 1000000
FUZZ_SEED ?= 1
.PHONY: fuzz
fuzz: $(VENV)/.installed
	$(PY) -m tests.fuzz --iterations $(FUZZ_N) --seed $(FUZZ_SEED)

# Churn on a 10-member namespace network for SOAK_S seconds (default 1800) and a
# trend test on every daemon's RSS, fds, threads and sessions (benchmarks/README.md).
.PHONY: soak
soak: deps $(VENV)/.installed
	SOAK_S=$${SOAK_S:-1800} $(PY) benchmarks/soak.py

# The per-frame modules compiled with mypyc against pure Python, interleaved (benchmarks/compiled_ab.py, ~8 min;
# measured, not shipped: see benchmarks/README.md, latency.py).
.PHONY: bench-compiled
bench-compiled: deps $(VENV)/.installed
	$(PY) benchmarks/compiled_ab.py --daemons

demo: deps $(VENV)/.installed
	$(PY) demo/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
