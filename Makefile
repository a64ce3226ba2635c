# Vigil — `make help` lists the targets.
GO        ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN       := bin/vigil
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/vigil-sensor/vigil/daemon.Version=$(VERSION)
PKGS      := ./...
RUN_ARGS  ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/vigil (the BPF objects are committed: no clang needed)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

.PHONY: run
run: build ## run the sensor on the interfaces carrying default routes (needs root or CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON)
	./$(BIN) run $(RUN_ARGS)

.PHONY: generate
generate: ## rebuild the BPF objects and Go bindings with Debian's clang
	$(GO) generate ./sampler/

.PHONY: verify-generated
verify-generated: generate ## fail if regenerating the BPF objects changes anything
	@git diff --exit-code -- sampler/ || { echo "generated BPF files are stale: run make generate and commit"; exit 1; }

.PHONY: fmt
fmt: ## format Go and C
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

.PHONY: test
test: lint ## run every test; privileged ones need root (CI sets VIGIL_PRIVILEGED_TESTS=1 so they cannot skip)
	$(GO) test -count=1 -timeout 20m $(PKGS)

.PHONY: test-privileged
test-privileged: ## run the tests with skips turned into failures
	VIGIL_PRIVILEGED_TESTS=1 $(GO) test -count=1 -timeout 20m $(PKGS)

# Every fuzz target, as PACKAGE:TARGET. Their seeds and committed corpora
# (testdata/fuzz/TARGET) run in plain go test, so make test covers them.
FUZZ_TARGETS := \
	./sampler/:FuzzParseFrame \
	./sampler/:FuzzPcapSource \
	./daemon/:FuzzParseConfig \
	./detect/:FuzzParseRules \
	./detect/:FuzzParseLists \
	./internal/yamlerr/:FuzzParse \
	./export/spool/:FuzzSpool
FUZZTIME ?= 60s
# Minimizing each new input for go test's default minute leaves slow
# targets (a rule file run in an engine, a capture file) minimizing most
# of a short run.
FUZZMINIMIZETIME ?= 5s

.PHONY: fuzz
fuzz: ## fuzz every target in turn for FUZZTIME each (default 60s): make fuzz FUZZTIME=5m; one: FUZZ_TARGETS=./daemon/:FuzzParseConfig
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run XXX -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
	done

.PHONY: fuzz-list
fuzz-list: ## list the fuzz targets
	@for t in $(FUZZ_TARGETS); do echo "$$t"; done

.PHONY: bench
bench: ## run the benchmarks (BPF_PROG_RUN timings need root)
	$(GO) test -run XXX -bench . -benchmem $(PKGS)

.PHONY: bench-peers
bench-peers: ## vigil replay against softflowd and pmacctd on a 1M-packet capture (needs tshark softflowd nfdump pmacct)
	test/bench/replay-vs-peers.sh

.PHONY: clean
clean: ## remove build output
	rm -rf bin dist
