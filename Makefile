# presence-stats: the contract with users and CI. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# A development secret for `make run` only; production sets its own JWT_SECRET.
DEV_JWT_SECRET := dev-only-secret-change-me-in-production
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: help run demo test services-up services-down services-status services-install build lint bench bench-peer fuzz deps clean

help:
	@echo "make run             install what is missing, start Redis + TimescaleDB, migrate, serve on :8080"
	@echo "make demo            make run with a gentle simulated crowd (cmd/loadgen) in the demo rooms"
	@echo "make test            fresh throw-away services, then every test (go test -race, browser tests)"
	@echo "make services-up     start Redis (127.0.0.1:6380) and the local TimescaleDB (127.0.0.1:55432)"
	@echo "                     REDIS_CLUSTER=3 [REDIS_CLUSTER_REPLICAS=1]: also a Redis Cluster on 7000.."
	@echo "make services-down   stop them"
	@echo "make build           build bin/presenced"
	@echo "make lint            gofmt check and go vet"
	@echo "make bench           every benchmark, one table (PART=reports runs one part, SKIP=peer skips some, BENCH_SIZE=full)"
	@echo "make fuzz            every fuzz target for FUZZTIME (20s) each"
	@echo "make bench-peer      side by side with Centrifugo v6.9.1 (installed into .data/bin): one table"

deps:
	$(GO) mod download

# REDIS_CLUSTER=3 (masters) also starts a Redis Cluster on 7000..; REDIS_CLUSTER_REPLICAS=1 adds
# a replica per master. `make run REDIS_CLUSTER=3` then serves on it.
services-up:
	REDIS_CLUSTER=$(REDIS_CLUSTER) REDIS_CLUSTER_REPLICAS=$(REDIS_CLUSTER_REPLICAS) dev/services.sh up

# services-install: Redis and the local TimescaleDB when missing, nothing started (the benchmarks
# start throw-away instances of their own, and one of them calls redis-server directly).
services-install:
	dev/services.sh install

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
	$(if $(REDIS_CLUSTER),REDIS_URL=$${REDIS_URL:-$$(cat .data/redis-cluster/url)}) JWT_SECRET=$${JWT_SECRET:-$(DEV_JWT_SECRET)} DEV_MODE=$${DEV_MODE:-1} LOG_FORMAT=$${LOG_FORMAT:-text} bin/presenced serve

# demo: what make run does, plus cmd/loadgen's churn scenario in the three demo rooms (dev/demo.sh).
demo: services-up build
	$(GO) build -o bin/loadgen ./cmd/loadgen
	JWT_SECRET=$${JWT_SECRET:-$(DEV_JWT_SECRET)} dev/demo.sh

test: deps
	dev/services.sh test $(MAKE) --no-print-directory test-all

# test-all expects TEST_REDIS_URL and TEST_TSDB_URL (dev/services.sh test sets them). With
# TEST_DATABASE_URL set to a real server, the Go tests make their databases there.
.PHONY: test-all test-go test-browser
test-all: test-go test-browser

# The real-time tests run a second time against the three-master Redis Cluster that
# dev/services.sh test starts (TEST_REDIS_CLUSTER_URL): scripts, sharded pub/sub and the outbox
# across nodes.
CLUSTER_TESTS := ^(TestPresence|TestOutbox|TestWS|TestRoomStatsREST|TestHubClose)
test-go:
	$(GO) test -race -count=1 -timeout 12m ./...
	@if [ -n "$$TEST_REDIS_CLUSTER_URL" ]; then \
	  echo "== real-time tests on the Redis Cluster $$TEST_REDIS_CLUSTER_URL"; \
	  TEST_REDIS_URL="$$TEST_REDIS_CLUSTER_URL" $(GO) test -race -count=1 -timeout 6m -run '$(CLUSTER_TESTS)' ./storage/ ./handlers/; \
	else echo "test-go: TEST_REDIS_CLUSTER_URL unset: the cluster pass is skipped (make test sets it)"; fi

# Headless Debian Chromium driven by playwright-core (web/e2e) against bin/presenced; screenshots
# and the service's log go to test-artifacts/.
test-browser: build
	dev/services.sh chromium
	cd web/e2e && npm ci --no-audit --no-fund --loglevel=error
	cd web/e2e && node --test --test-concurrency=1 --test-timeout=300000 --test-reporter=spec

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...

# bench: every benchmark, one table (dev/bench/table: figure, value, target, command, engine,
# machine, date; each part's log under bench-results/). PART=reports (or a comma list) runs only
# those parts, SKIP=peer,loadgen leaves some out. A bench-peer target, when this Makefile has one,
# is run as the part "peer" (its BENCH-ROW lines or go test -bench lines become rows).
# BENCH_SIZE=quick (the default, meant to finish within 20 minutes on a quiet machine) runs the
# scale part at 2,000 connections and the peer part at 2000/20 only; BENCH_SIZE=full runs the
# scale part at 10,000 connections (the issue's targets) and every peer size.
PART ?=
SKIP ?=
BENCH_SIZE ?= quick
bench: deps services-install
	@peer=; if grep -qsE '^bench-peer[[:space:]]*:' $(MAKEFILE_LIST); then peer='$(MAKE) --no-print-directory bench-peer'; \
	  [ "$(BENCH_SIZE)" = full ] || peer="$$peer SIZES=2000/20"; fi; \
	BENCH_SIZE=$(BENCH_SIZE) $(GO) run ./dev/bench/table -parts '$(PART)' -skip '$(SKIP)' -peer-cmd "$$peer"

# fuzz: every Fuzz* target of the repository for FUZZTIME each, FUZZ_PARALLEL workers (1: the
# machine is shared). A failing input is written to <package>/testdata/fuzz/<FuzzName>/, which
# `go test` (and so `make test`) then runs as a seed: commit it with the fix.
FUZZTIME ?= 20s
FUZZ_PARALLEL ?= 1
fuzz:
	@set -e; for f in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go')); do \
	  for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
	    echo "== $$name ($$(dirname $$f), $(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel $(FUZZ_PARALLEL) "./$$(dirname $$f)/"; \
	  done; done

# Side by side with Centrifugo (docs/benchmarks.md): SIZES="2000/20" runs one size, ROUNDS=2 repeats.
SIZES ?= 200/4 2000/20 5000/50
ROUNDS ?= 1
bench-peer: deps services-install
	nice -n 10 dev/bench/peer.sh -sizes "$(SIZES)" -rounds "$(ROUNDS)"

clean:
	rm -rf bin
