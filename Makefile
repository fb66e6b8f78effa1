# cutover: build, test, benchmark, lint, fuzz and demo.
GO      ?= go
BIN     := bin/cutover
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test bench lint fuzz demo clean

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cutover

# The one test command (README, CI): vet, formatting, and every test under
# the race detector.
test: lint
	$(GO) test -race -count=1 ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	bash cmd/cutover/testdata/bench-run.sh $(BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fuzz:
	$(GO) test ./engine -run '^$$' -fuzz FuzzPlanDecode -fuzztime 60s

# A real plan, dry run first, then for real, then its journal.
demo: build
	@echo '== dry run'; \
	$(BIN) run plans/hello.yaml --dry-run --param environment=staging --journal-dir .demo-journal || true
	@echo; echo '== real run'; \
	HELLO_TOKEN=demo-token-1234 $(BIN) run plans/hello.yaml --param environment=production --journal-dir .demo-journal || true
	@echo; echo '== a failing run, rolled back'; \
	HELLO_TOKEN=demo-token-1234 $(BIN) run plans/hello.yaml --param environment=staging --param fail_at=migrate --journal-dir .demo-journal || true
	@echo; echo '== its journal'; \
	last=$$(ls .demo-journal | tail -1); $(BIN) journal show $${last%.jsonl} --journal-dir .demo-journal; \
	$(BIN) journal verify --all --journal-dir .demo-journal

clean:
	rm -rf bin .demo-journal
