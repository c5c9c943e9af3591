# sockjoin: the commands of the README. Every target that needs packages
# installs them first (Debian, apt-get), so each works on a fresh machine.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_TARGETS = fuzz_side fuzz_cli_options fuzz_relay_protocol fuzz_mux_frame fuzz_relay_link fuzz_auth_line \
               fuzz_seal_frame fuzz_expose_control fuzz_ws_handshake fuzz_ws_frame
PYTEST     ?= /usr/bin/python3 -m pytest
JOBS       ?= $(shell nproc)

# Build, unit tests, black-box tests and benchmarks.
DEPS_BUILD = build-essential cmake pkg-config libuv1-dev libcmocka-dev libssl-dev libsodium-dev \
             libwslay-dev
DEPS_TEST  = python3 python3-pytest ncat socat iperf3 iproute2 procps clang libclang-rt-14-dev \
             openssl curl openssh-server openssh-client
DEPS_BENCH = haproxy nginx libnginx-mod-stream sockperf wrk stunnel4 redis-server redis-tools nats-server
DEPS       = $(DEPS_BUILD) $(DEPS_TEST)

.PHONY: all deps deps-bench build run test unit e2e asan valgrind fuzz-build fuzz-replay fuzz bench clean

all: build

# Installs only when something is missing, so repeated runs stay quick.
deps:
	@./scripts/install-deps $(DEPS)

deps-bench:
	@./scripts/install-deps $(DEPS) $(DEPS_BENCH)

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DSJ_WERROR=ON

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

# The seed's demo: two listening sides, traffic shown. Try it with
# `ncat localhost 9000` and `ncat localhost 8000` in two terminals.
run: deps build
	./$(BUILD)/sockjoin --verbose --log-traffic listen:9000 listen:8000

unit: build
	cd $(BUILD) && ctest --output-on-failure

e2e: build
	SOCKJOIN_BIN=$(CURDIR)/$(BUILD)/sockjoin $(PYTEST) -q tests/e2e

# The whole suite again under AddressSanitizer, UndefinedBehaviorSanitizer
# and LeakSanitizer; any report fails the run.
asan:
	cmake -S . -B $(BUILD_ASAN) -DSJ_WERROR=ON -DSJ_SANITIZE=ON -DSJ_TESTS=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && ctest --output-on-failure
	SOCKJOIN_BIN=$(CURDIR)/$(BUILD_ASAN)/sockjoin SOCKJOIN_SANITIZED=1 $(PYTEST) -q tests/e2e

# The e2e suite with the binary under valgrind's memcheck (slow; not part of
# make test, which has the sanitizers).
valgrind: deps build
	@./scripts/install-deps valgrind
	SOCKJOIN_BIN=$(CURDIR)/scripts/valgrind-sockjoin SOCKJOIN_SANITIZED=1 SOCKJOIN_VALGRIND=1 \
	  SOCKJOIN_WS_PEER=$(CURDIR)/$(BUILD)/tests/unit/ws_peer \
	  $(PYTEST) -q tests/e2e

# libFuzzer targets (clang), one per codec; corpora live in tests/fuzz/corpus/NAME
# for target fuzz_NAME.
fuzz-build:
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DSJ_FUZZ=ON -DSJ_TESTS=OFF \
	  -DSJ_EXAMPLES=OFF -DSJ_WERROR=ON
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target $(FUZZ_TARGETS)

# Every checked-in corpus input once: a regression test.
fuzz-replay: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  if ./$(BUILD_FUZZ)/tests/fuzz/$$t -runs=0 tests/fuzz/corpus/$${t#fuzz_} \
	       > $(BUILD_FUZZ)/$$t.log 2>&1; then \
	    echo "$$t: $$(tail -n 1 $(BUILD_FUZZ)/$$t.log)"; \
	  else cat $(BUILD_FUZZ)/$$t.log; exit 1; fi; \
	done

# Fuzzes each target for FUZZ_SECONDS, then merges what it found into the
# checked-in corpus.
fuzz: deps fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD_FUZZ)/found/$$t; \
	  ./$(BUILD_FUZZ)/tests/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=1024 \
	    $(BUILD_FUZZ)/found/$$t tests/fuzz/corpus/$${t#fuzz_} 2>&1 | tail -n 1 | sed "s/^/$$t: /"; \
	  ./$(BUILD_FUZZ)/tests/fuzz/$$t -merge=1 tests/fuzz/corpus/$${t#fuzz_} \
	    $(BUILD_FUZZ)/found/$$t > /dev/null 2>&1; \
	done

test: deps build unit e2e asan fuzz-replay

bench: deps-bench build
	./bench/run
	./bench/relay
	./bench/secure
	./bench/expose
	./bench/tunnel

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
