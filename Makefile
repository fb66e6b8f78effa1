# cutover: build, test, benchmark, lint, fuzz and demo.
GO      ?= go
BIN     := bin/cutover
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test bench lint fuzz demo demo-hello clean

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

# The reference cutover on a sandbox: old and new PostgreSQL clusters, the
# demo Django app moved from one to the other (dry run, then for real).
demo: build
	sh plans/demo/demo.sh $(BIN)

# A first plan without a database: guards, rollback, the commit point.
demo-hello: build
	@echo '== dry run'; \
	$(BIN) run plans/hello.yaml --dry-run --param environment=staging --journal-dir .demo-journal || true
	@echo; echo '== real run'; \
	HELLO_TOKEN=demo-token-1234 $(BIN) run plans/hello.yaml --param environment=production --journal-dir .demo-journal || true
	@echo; echo '== a failing run, rolled back'; \
	HELLO_TOKEN=demo-token-1234 $(BIN) run plans/hello.yaml --param environment=staging --param fail_at=migrate --journal-dir .demo-journal || true

clean:
	rm -rf bin .demo-journal .demo
