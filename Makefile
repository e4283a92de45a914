# Quick start: `make demo` (serve echo, drive load through it, report; then every bundled
# service over TCP and UDP) and `make test`.
# Both install libevent-dev through apt-get when pkg-config cannot find libevent_core.

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
REACTOR := .build/release/reactor

.PHONY: all deps servers build release test demo bench bench-echo bench-framing bench-udp bench-slo bench-micro bench-tools fuzz fuzz-ci test-asan test-tsan soak soak-ci valgrind budgets budgets-check budgets-update budgets-selftest clean

all: build

# libevent for the reactor; zlib for ReactorBench's HdrHistogram encodings (CZlib).
deps:
	@if ! pkg-config --exists libevent_core 2>/dev/null; then \
		echo "libevent_core not found: installing libevent-dev with apt-get"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libevent-dev pkg-config; \
	fi
	@if ! pkg-config --exists zlib 2>/dev/null; then \
		echo "zlib not found: installing zlib1g-dev with apt-get"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zlib1g-dev; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product reactor

# The services tests and `make demo` talk to the services with real clients: socat and
# rdate (Debian packages), installed with apt-get when missing.
.PHONY: tools
tools:
	@if ! command -v socat >/dev/null || ! command -v rdate >/dev/null; then \
		echo "socat or rdate not found: installing them with apt-get"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat rdate; \
	fi

# The bench tests load real servers nobody here wrote: Debian's redis-server, redis-tools
# (redis-benchmark), memcached, nginx-light and wrk, installed with apt-get when missing.
# A policy-rc.d that refuses keeps the packages from starting their system services (on
# ports 80, 6379, 11211): the tests start their own on free ports.
SERVER_PACKAGES := redis-server redis-tools memcached nginx-light wrk
servers:
	@if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || \
		! command -v memcached >/dev/null || ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then \
		echo "redis, memcached, nginx or wrk not found: installing $(SERVER_PACKAGES) with apt-get"; \
		policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d && policy=1; fi; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVER_PACKAGES); status=$$?; \
		if [ -n "$$policy" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; exit $$status; \
	fi

# The framing interop tests run Twisted clients: pip's twisted, installed when missing; the
# bench tests read our HdrHistogram logs with PyPI's hdrhistogram.
test: deps tools servers
	@python3 -c "import twisted" 2>/dev/null || python3 -m pip install --quiet twisted
	@python3 -c "import hdrh" 2>/dev/null || python3 -m pip install --quiet hdrhistogram
	$(SWIFT) build --build-tests
	$(SWIFT) test

# The same suite under AddressSanitizer or ThreadSanitizer (the cross-thread handle), each
# in its own build folder; the `reactor` the tests spawn is built with the same sanitizer.
# The suppression files say what they hide and why. Under TSan the tests run one at a time:
# everything is 5-15x slower, and tests that wait on sockets starve each other otherwise.
test-asan: deps tools servers
	@python3 -c "import twisted" 2>/dev/null || python3 -m pip install --quiet twisted
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/.lsan-suppressions \
		$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan

test-tsan: deps tools servers
	@python3 -c "import twisted" 2>/dev/null || python3 -m pip install --quiet twisted
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS="suppressions=$(CURDIR)/.tsan-suppressions halt_on_error=1" \
		$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --no-parallel

demo: release tools
	@bash scripts/demo.sh $(REACTOR)

# The side-by-side suite (issue 5): reactor serve against every peer of
# Benchmarks/peers.txt; builds the peers first. The report goes to Benchmarks/results/.
bench: release
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/suite.sh

bench-echo: release
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/echo-bench.sh

# Framed echo (line, int32) against the C libevent and SwiftNIO references; builds the
# SwiftNIO server in Benchmarks/swift on first use.
bench-framing: release
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/framing-bench.sh

# UDP echo against the C libevent reference (reactor's per-source rate limit off).
bench-udp: release
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/udp-bench.sh

# reactor bench against redis-benchmark and wrk on real redis-server and nginx (issue 10):
# server on CPU 0, load tool on CPU 1, ROUNDS rounds, medians (docs/performance.md).
bench-tools: release servers
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/bench-tools.sh

# reactor bench --slo against bin/serial_server, a server of known capacity (issue 10).
bench-slo: release
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/slo-bench.sh

# package-benchmark micro-benchmarks: framer decode throughput, allocations per frame.
bench-micro: deps
	$(SWIFT) package --package-path Benchmarks/swift benchmark

# libFuzzer targets for the framing decoders (Fuzz/run-fuzz.sh) and the UDP services
# (Fuzz/run-fuzz-udp.sh), FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash Fuzz/run-fuzz.sh
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash Fuzz/run-fuzz-udp.sh

# The short run CI does: 15 s per decoder, enough to replay the corpus and catch a
# regression without stretching CI (the issue's 60 s each would add minutes).
fuzz-ci:
	@FUZZ_SECONDS=15 bash Fuzz/run-fuzz.sh
	@FUZZ_SECONDS=15 bash Fuzz/run-fuzz-udp.sh

# Mixed load against reactor serve all for SOAK_SECONDS, then fds, RSS, lost bytes and a
# clean SIGTERM checked (scripts/soak.sh); soak-ci is the short run CI does (~20 s).
SOAK_SECONDS ?= 60
soak: release
	@SOAK_SECONDS=$(SOAK_SECONDS) REACTOR_BIN=$(REACTOR) bash scripts/soak.sh

soak-ci: release
	@SOAK_SECONDS=12 SOAK_WARMUP=4 REACTOR_BIN=$(REACTOR) bash scripts/soak.sh

# Instructions (callgrind) and heap allocations per request of the release reactor against
# Benchmarks/budgets/budgets.json (docs/performance.md, "Budgets"): `budgets` prints the
# table, `budgets-check` (CI) fails when a metric is more than 3% over its budget,
# `budgets-update` rewrites the budgets from a fresh measurement, `budgets-selftest` shows
# that the comparison fails at 4% over and passes at 2%. valgrind comes from apt-get.
valgrind:
	@if ! command -v valgrind >/dev/null; then \
		echo "valgrind not found: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; \
	fi

budgets: release valgrind
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/budgets/budgets.sh table

budgets-check: release valgrind budgets-selftest
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/budgets/budgets.sh check

budgets-update: release valgrind
	@REACTOR_BIN=$(REACTOR) bash Benchmarks/budgets/budgets.sh update

budgets-selftest:
	@bash Benchmarks/budgets/selftest.sh

clean:
	rm -rf .build Benchmarks/bin Benchmarks/results
