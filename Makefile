# Thin wrapper around CMake, in the manner of Neovim's: `make run`, `make test`.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
DEBIAN_PACKAGES := build-essential cmake pkg-config liburing-dev libwolfssl-dev \
	libconfig-dev libcriterion-dev
# HAProxy is the idle-sensitive proxy of the keepalive integration test.
TEST_PACKAGES := haproxy

.PHONY: all deps test-deps build build-asan run test test-unit test-node test-asan clean

all: build

# Installs what is missing when run as root on Debian; otherwise only checks.
define install_missing
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages:$$missing (run 'sudo make deps')"; exit 1; \
		fi; \
	fi
endef

deps:
	$(call install_missing,$(DEBIAN_PACKAGES))

test-deps: deps
	$(call install_missing,$(TEST_PACKAGES))
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null || \
		{ echo "the integration tests need Node.js 20 or later (node --version: $$(node --version 2>&1))"; exit 1; }

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD_DIR) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=Debug -DWR_SANITIZE=ON
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)

run: build
	bench/run_with_mock.sh $(BUILD_DIR)

test: build test-deps
	$(MAKE) test-unit test-node WR_BUILD_DIR=$(abspath $(BUILD_DIR))

test-unit:
	ctest --test-dir $(or $(WR_BUILD_DIR),$(BUILD_DIR)) --output-on-failure

test-node:
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	WR_BUILD_DIR=$(or $(WR_BUILD_DIR),$(abspath $(BUILD_DIR))) node --test --test-concurrency=1 tests/node/

test-asan: build-asan test-deps
	$(MAKE) test-unit test-node WR_BUILD_DIR=$(abspath $(ASAN_BUILD_DIR))

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR)

# Benchmark of wsrelay against nginx, HAProxy and no relay; see bench/README.md.
.PHONY: bench bench-quick
bench: build
	bench/compare.sh --build-dir $(BUILD_DIR)

bench-quick: build
	bench/compare.sh --quick --build-dir $(BUILD_DIR)
