# presence-stats: the contract with users and CI. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# A development secret for `make run` only; production sets its own JWT_SECRET.
DEV_JWT_SECRET := dev-only-secret-change-me-in-production
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: help run test services-up services-down services-status build lint bench bench-peer deps clean

help:
	@echo "make run             install what is missing, start Redis + TimescaleDB, migrate, serve on :8080"
	@echo "make test            fresh throw-away services, then every test (go test -race, browser tests)"
	@echo "make services-up     start Redis (127.0.0.1:6380) and the local TimescaleDB (127.0.0.1:55432)"
	@echo "make services-down   stop them"
	@echo "make build           build bin/presenced"
	@echo "make lint            gofmt check and go vet"
	@echo "make bench           run the benchmarks (see README for the figures)"
	@echo "make bench-peer      side by side with Centrifugo v6.9.1 (installed into .data/bin): one table"

deps:
	$(GO) mod download

services-up:
	dev/services.sh up

services-down:
	dev/services.sh down

services-status:
	dev/services.sh status

build: deps
	$(GO) build -o bin/presenced ./cmd/presenced

run: services-up build
	JWT_SECRET=$${JWT_SECRET:-$(DEV_JWT_SECRET)} bin/presenced migrate up
	@echo "make run: JWT_SECRET is a development value unless you set one; DEV_MODE=1 (token endpoint on)."
	@echo "make run: open http://localhost:8080/ (chat) and http://localhost:8080/admin/ (dashboard)"
	JWT_SECRET=$${JWT_SECRET:-$(DEV_JWT_SECRET)} DEV_MODE=$${DEV_MODE:-1} LOG_FORMAT=$${LOG_FORMAT:-text} bin/presenced serve

test: deps
	dev/services.sh test $(MAKE) --no-print-directory test-all

# test-all expects TEST_REDIS_URL and TEST_DATABASE_URL (dev/services.sh test sets them).
.PHONY: test-all test-go test-browser
test-all: test-go test-browser

test-go:
	$(GO) test -race -count=1 -timeout 12m ./...

# Headless Debian Chromium driven by playwright-core (web/e2e) against bin/presenced; screenshots
# and the service's log go to test-artifacts/.
test-browser: build
	dev/services.sh chromium
	cd web/e2e && npm ci --no-audit --no-fund --loglevel=error
	cd web/e2e && node --test --test-concurrency=1 --test-timeout=300000 --test-reporter=spec

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...

bench: deps
	dev/services.sh test $(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

# Side by side with Centrifugo (docs/benchmarks.md): SIZES="2000/20" runs one size, ROUNDS=2 repeats.
SIZES ?= 200/4 2000/20 5000/50
ROUNDS ?= 1
bench-peer: deps
	nice -n 10 dev/bench/peer.sh -sizes "$(SIZES)" -rounds "$(ROUNDS)"

clean:
	rm -rf bin
