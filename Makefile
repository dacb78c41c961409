# berth — build, test, bench, demo. See README.md.
GO        ?= go
BIN       := bin/berth
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
export CGO_CFLAGS ?= -O2 -Wno-deprecated-declarations
DATA_DIR  ?= /var/lib/berth
TEST_TIMEOUT ?= 25m

.PHONY: all build test unit e2e bench lint demo fmt clean deps chaos gpu-check

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/berth

# Installs the Debian packages the tests and the demo use (as root).
deps:
	./scripts/install-deps.sh

# The whole suite: unit tests, root tests of the runtime (skipped when not
# root), and the end-to-end tests that drive the real binary.
test: build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	BERTH_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -tags e2e ./e2e/...

unit:
	$(GO) test -count=1 -short ./...

e2e: build
	BERTH_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -tags e2e ./e2e/...

# A randomized fault run (a few minutes) on a real cluster in network
# namespaces: kills, pauses and partitions while a client submits and stops
# jobs, then a check of the invariants and a summary. BERTH_CHAOS_DURATION
# (default 3m) and BERTH_CHAOS_SEED tune it; a failed run's event log is
# kept in e2e/out/.
chaos: build
	BERTH_CHAOS=1 BERTH_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v -timeout 20m -tags e2e -run '^TestChaos$$' ./e2e/

bench: build
	BERTH_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 20x -timeout 30m ./...
	BERTH_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -run '^$$' -bench BenchmarkBuild -benchtime 10x -timeout 30m ./e2e/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Set up, build, start `berth dev` if none runs, make a busybox image from
# the local busybox-static package and run a container.
demo: build
	./scripts/demo.sh

# On a GPU host (as root): berth's GPU discovery next to nvidia-smi -L, then
# containers run with --gpus 1 must see exactly one GPU. Fails clearly on a
# host without GPUs.
gpu-check: build
	./scripts/gpu-check.sh

clean:
	rm -rf bin
