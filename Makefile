# cl-unshare: build, install and test. Tests that start levels need root.
PREFIX  ?= /usr/local
GO      ?= go
BIN     := bin/cl-unshare
# urfave_cli_no_docs drops the man-page generator and its init cost.
TAGS    := urfave_cli_no_docs
# The version --version prints: git describe where there is a checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
UNIT    := ./cmd/... ./internal/... ./level/... ./mirror/... ./mounts/... ./nsexec/... ./procview/...

.PHONY: all build install test test-vm unit integration bench stress lint clean verify-deps fuzz

all: build

# The man page and the shell completions are written by the binary from
# its own flag table, so they never miss a flag.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cl-unshare
	$(BIN) _doc man > bin/cl-unshare.1
	$(BIN) _doc bash > bin/cl-unshare.bash
	$(BIN) _doc zsh > bin/_cl-unshare

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/cl-unshare
	install -D -m 0644 bin/cl-unshare.1 $(DESTDIR)$(PREFIX)/share/man/man1/cl-unshare.1
	install -D -m 0644 bin/cl-unshare.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/cl-unshare
	install -D -m 0644 bin/_cl-unshare $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_cl-unshare

# The README's test command: unit tests, then integration tests that start
# real levels (as root; they skip with the reason otherwise, and fail
# instead of skipping when CL_UNSHARE_NO_SKIP=1, as in CI).
test: unit integration

# The unit tests and the Go API's integration tests run with the race
# detector too (it needs cgo: gcc, as on the development machines).
unit:
	$(GO) test -count=1 -race $(UNIT)

integration:
	$(GO) test -count=1 -timeout 5m ./tests
	$(GO) test -count=1 -race -timeout 5m -run '^TestAPI' ./tests

# Median start latency beside util-linux unshare, measured in one run,
# on the empty host and then with BENCH_LEVELS levels running.
BENCH_LEVELS ?= 0,100,500
bench:
	$(GO) test -run '^$$' -bench 'StartLatency|ProcViewRead' -benchtime 100x ./tests
	CL_BENCH_LEVELS=$(BENCH_LEVELS) $(GO) test -run '^$$' -bench Scale -benchtime 1x -timeout 30m ./tests

# Churn: STRESS_LEVELS levels, 20 at a time, each ended at a random
# moment in one of the ways a level ends; then gc, and a list of what is
# left (must be nothing). Needs root.
STRESS_LEVELS ?= 1000
stress: build
	$(GO) run ./tests/stress -bin $(BIN) -levels $(STRESS_LEVELS)

# Each fuzz target for FUZZTIME (their seeds run with the unit tests).
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list $(UNIT)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# staticcheck comes through the module proxy at a pinned version; it is a
# tool, not a dependency of the module (go.mod does not change).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

verify-deps:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

clean:
	rm -rf bin

# The integration suite in a VM per cgroup layout (unified with and
# without nsdelegate, legacy, hybrid); needs qemu-system-x86,
# linux-image-amd64 and busybox-static. See tests/vm/run.sh.
test-vm:
	tests/vm/run.sh
