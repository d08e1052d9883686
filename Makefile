# The two set-up commands of README.md. Each installs what the build needs (liblz4-dev, for
# the LZ4 frame format through the system library) when it is missing, then runs.
#
#   make bench   release build, then the load benchmark on defaults (credits bench)
#   make test    debug build, then every test (swift test)

SWIFT ?= swift

.PHONY: bench test deps build-release

deps:
	@if ! pkg-config --exists liblz4 2>/dev/null; then \
		echo "installing liblz4-dev and pkg-config (needed by the CLZ4 system library target)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq liblz4-dev pkg-config >/dev/null; \
	fi

build-release: deps
	$(SWIFT) build -c release --product credits

bench: build-release
	$$($(SWIFT) build -c release --show-bin-path)/credits bench

test: deps
	$(SWIFT) test
