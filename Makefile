# Quick start: `make demo` (serve echo, drive load through it, report; then every bundled
# service over TCP and UDP) and `make test`.
# Both install libevent-dev through apt-get when pkg-config cannot find libevent_core.

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
REACTOR := .build/release/reactor

.PHONY: all deps servers build release test examples examples-async docs demo bench bench-echo bench-framing bench-udp bench-slo bench-micro bench-async bench-executor bench-tools fuzz fuzz-ci test-asan test-tsan soak soak-ci faults faults-deps valgrind budgets budgets-check budgets-update budgets-selftest clean

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
# (redis-benchmark), memcached, nginx-light and wrk, and the PROXY protocol tests put
# Debian's haproxy in front of `reactor serve`; installed with apt-get when missing.
# A policy-rc.d that refuses keeps the packages from starting their system services (on
# ports 80, 6379, 11211, and haproxy's): the tests start their own on free ports.
SERVER_PACKAGES := redis-server redis-tools memcached nginx-light wrk haproxy
servers:
	@if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || \
		! command -v memcached >/dev/null || ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || \
		! command -v haproxy >/dev/null; then \
		echo "redis, memcached, nginx, wrk or haproxy not found: installing $(SERVER_PACKAGES) with apt-get"; \
		policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d && policy=1; fi; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVER_PACKAGES); status=$$?; \
		if [ -n "$$policy" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; exit $$status; \
	fi

# The framing interop tests run Twisted clients: pip's twisted, installed when missing; the
# bench tests read our HdrHistogram logs with PyPI's hdrhistogram, and the metrics test reads
# `serve --metrics` with PyPI's prometheus_client.
test: deps tools servers
	@python3 -c "import twisted" 2>/dev/null || python3 -m pip install --quiet twisted
	@python3 -c "import hdrh" 2>/dev/null || python3 -m pip install --quiet hdrhistogram
	@python3 -c "import prometheus_client" 2>/dev/null || python3 -m pip install --quiet prometheus_client
	$(SWIFT) build --build-tests
	$(SWIFT) test
	@$(MAKE) --no-print-directory examples
	@$(MAKE) --no-print-directory examples-async

# The examples (Examples/: a package of their own that depends on this one as a library
# user would, with no traits), built and then talked to over sockets by Examples/smoke.py.
# A library-only dependent must not resolve the command's dependencies: that fails here.
examples: deps
	$(SWIFT) build --package-path Examples
	@test -f Examples/Package.resolved || { echo "Examples/Package.resolved was not written"; exit 1; }
	@if grep -qE '"identity" : "(swift-argument-parser|hdrhistogram-swift|swift-metrics|swift-prometheus)"' Examples/Package.resolved; then \
		echo "Examples/, a library-only dependent, resolved swift-argument-parser, hdrhistogram-swift, swift-metrics or swift-prometheus"; exit 1; fi
	python3 Examples/smoke.py Examples/.build/debug

# Examples/AsyncClient and Examples/ReactorActor: programs that serve and check themselves,
# exiting non-zero on a wrong answer.
EXAMPLES := AsyncClientExample ReactorActorExample
examples-async:
	$(SWIFT) build $(foreach example,$(EXAMPLES),--product $(example))
	@for example in $(EXAMPLES); do echo "== $$example"; timeout 60 .build/debug/$$example || exit 1; done

# The DocC catalog of every library product (Sources/M/M.docc), built by swift-docc-plugin
# with --warnings-as-errors, then every public symbol checked for a doc comment and a
# topic (scripts/docs.sh, scripts/check-docs.py); the archives go to .build/docs.
docs: deps
	@bash scripts/docs.sh

# The same suite under AddressSanitizer or ThreadSanitizer (the cross-thread handle), each
# in its own build folder; the `reactor` the tests spawn is built with the same sanitizer.
# The suppression files say what they hide and why. Under either the tests run one at a
# time: everything is 2x (ASan) to 5-15x (TSan) slower, and tests that wait on sockets
# starve each other otherwise (in parallel under ASan on the busy 2-core machine, every
# suite ran into its time limit at once; one at a time all passed).
# ASAN_TEST_ARGS narrows the run (CI: `--skip` the two targets that drive child processes,
# whose executable runs code the in-process suites also run, to keep CI under its time limit).
ASAN_TEST_ARGS ?=
test-asan: deps tools servers
	@python3 -c "import twisted" 2>/dev/null || python3 -m pip install --quiet twisted
	@python3 -c "import prometheus_client" 2>/dev/null || python3 -m pip install --quiet prometheus_client
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/.lsan-suppressions \
		$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan --no-parallel $(ASAN_TEST_ARGS)

test-tsan: deps tools servers
	@python3 -c "import twisted" 2>/dev/null || python3 -m pip install --quiet twisted
	@python3 -c "import prometheus_client" 2>/dev/null || python3 -m pip install --quiet prometheus_client
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

# The async layer against the callback echo and SwiftNIO's NIOAsyncChannel (issue 12), and
# the reactor's executor against SwiftNIO's event loop executor; each builds what it runs,
# its SwiftNIO side in Benchmarks/swift on first use (docs/async.md, "Performance").
bench-async: deps
	@bash Benchmarks/async/async-bench.sh

bench-executor: deps
	@bash Benchmarks/async/executor-bench.sh

# package-benchmark micro-benchmarks: framer decode throughput, allocations per frame.
bench-micro: deps
	$(SWIFT) package --package-path Benchmarks/swift benchmark

# libFuzzer targets for the framing decoders (Fuzz/run-fuzz.sh), the UDP services
# (Fuzz/run-fuzz-udp.sh) and the PROXY protocol header parser (Fuzz/run-fuzz-proxy.sh),
# FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash Fuzz/run-fuzz.sh
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash Fuzz/run-fuzz-udp.sh
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash Fuzz/run-fuzz-proxy.sh

# The short run CI does: 15 s per decoder, enough to replay the corpus and catch a
# regression without stretching CI (the issue's 60 s each would add minutes).
fuzz-ci:
	@FUZZ_SECONDS=15 bash Fuzz/run-fuzz.sh
	@FUZZ_SECONDS=15 bash Fuzz/run-fuzz-udp.sh
	@FUZZ_SECONDS=15 bash Fuzz/run-fuzz-proxy.sh

# Mixed load against reactor serve all for SOAK_SECONDS, then fds, RSS, lost bytes and a
# clean SIGTERM checked (scripts/soak.sh); soak-ci is the short run CI does (~20 s).
SOAK_SECONDS ?= 60
soak: release
	@SOAK_SECONDS=$(SOAK_SECONDS) REACTOR_BIN=$(REACTOR) bash scripts/soak.sh

soak-ci: release
	@SOAK_SECONDS=12 SOAK_WARMUP=4 REACTOR_BIN=$(REACTOR) bash scripts/soak.sh

# The hostile network (scripts/faults/faults.sh): servers in a network namespace of their own,
# clients in another, 2 % loss, 40 ms +- 20 ms delay with reordering, 1 % duplication, a 10 s
# partition and a peer that vanishes; root only, about 2.5 min. The faults need iproute2,
# nftables, iptables (its NFQUEUE target: the kernel has no netem) and Python's
# NetfilterQueue (pip, built against Debian's libnetfilter-queue-dev): installed when missing.
faults-deps:
	@if ! command -v ip >/dev/null || ! command -v nft >/dev/null || ! command -v iptables-nft >/dev/null || \
		! [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ]; then \
		echo "ip, nft, iptables-nft or libnetfilter-queue-dev not found: installing them with apt-get"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables iptables libnetfilter-queue-dev build-essential; \
	fi
	@python3 -c "import netfilterqueue" 2>/dev/null || python3 -m pip install --quiet NetfilterQueue

faults: release faults-deps
	$(SUDO) env REACTOR_BIN=$(REACTOR) bash scripts/faults/faults.sh

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
