# repeaterd: `make run` runs the system with a demo workload; `make test` passes the tests.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
SERVICES := scripts/services.sh
# Every recipe line that needs the services evaluates their URLs first.
WITH_SERVICES = eval "$$($(SERVICES) up)"

.PHONY: build run test services services-down vet fmt-check check-compose check-rules fuzz chaos bench

build:
	$(GO) build -o bin/repeaterd ./cmd/repeaterd

# The demo's sink and dead endpoint live on loopback, so private targets are allowed;
# short backoffs let you watch the dead endpoint being probed.
run: build
	$(WITH_SERVICES); bin/repeaterd migrate && \
	REPEATERD_ALLOW_PRIVATE_TARGETS=true REPEATERD_BACKOFF_MIN=$${REPEATERD_BACKOFF_MIN:-15s} \
	REPEATERD_BACKOFF_MAX=$${REPEATERD_BACKOFF_MAX:-2m} exec bin/repeaterd run --demo

services:
	@$(SERVICES) up

services-down:
	@$(SERVICES) down

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: fmt-check vet check-compose check-rules
	$(WITH_SERVICES); REPEATERD_CHROMIUM="$$(scripts/chromium.sh)" $(GO) test -race -count=1 -timeout 9m ./...
	$(WITH_SERVICES); FUZZTIME=$${FUZZTIME:-4s} scripts/fuzz.sh

check-rules:
	scripts/promtool.sh

# Parsers under the fuzzer, a few seconds each.
fuzz:
	$(WITH_SERVICES); scripts/fuzz.sh

# The reliability drills in their long forms (minutes each): worker kills,
# Redis flushed, Postgres restarts, endpoint flaps, three Sentinel failovers
# and, as root, a network partition across namespaces.
chaos:
	$(WITH_SERVICES); REPEATERD_CHAOS=1 $(GO) test -race -count=1 -timeout 20m -run 'Drill' -v ./... 2>&1 | grep -E '^(=== RUN|--- |\s+\w+_test.go|ok|FAIL|PASS)'

check-compose:
	scripts/check-compose.sh

# Every benchmark scenario at sizes that take about 10 minutes in all on a
# 2-core machine (readiness at 1M and 10M, the others smaller than the issue's);
# `bin/repeaterd bench SCENARIO` alone runs the issue's sizes. See BENCHMARKS.md.
# On a Postgres with production durability (a second private instance); the
# test instance (fsync off) gives throughput's second column.
bench: build
	eval "$$($(SERVICES) up --durable)"; bin/repeaterd bench all --size quick
