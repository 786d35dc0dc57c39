# Every target runs on the Node 24 that package.json pins (node_modules/.bin/node),
# never on whatever node happens to be first on the machine's PATH.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE_BIN := $(CURDIR)/node_modules/.bin/node
UNIT_TESTS = $(shell find relay/src relay/test operator/src operator/test tools/src telemetry/src scripts -name '*.test.ts' 2>/dev/null | sort)
E2E_TESTS = $(shell find e2e/src -path e2e/src/node -prune -o -name '*.test.ts' -print 2>/dev/null | sort)
# The node tier: a real kubelet, containerd and kube-proxy (as root; e2e/README.md)
NODE_TESTS = $(shell find e2e/src/node -name '*.test.ts' 2>/dev/null | sort)
# Fuzz targets (fuzz/README.md) and how long `make test` gives each, in seconds.
FUZZ_TARGETS ?= proxy-header zip-scan attachment-scan attachment-scan-chunking config-load smtp-session
FUZZ_SHORT_SECONDS = proxy-header:5 zip-scan:5 attachment-scan:7 attachment-scan-chunking:5 attachment-scan-plain-text:5 config-load:8 smtp-session:10
FUZZ_RUNS ?= 1000000

.DEFAULT_GOAL := help
.PHONY: help install test-deps run check lint deps format typecheck generate test test-unit test-fuzz test-e2e test-node fuzz controlplane node promtool bench hash-password clean

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

node_modules/.package-lock.json: package.json package-lock.json relay/package.json operator/package.json e2e/package.json tools/package.json telemetry/package.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json ## Install npm packages (Node 24 comes with them)

test-deps: ## Install the Debian packages the tests use (redis-server, swaks with TLS, openssl); as non-root, print the command
	@scripts/test-deps.sh

run: install ## Start the relay on its embedded default (no Redis, no Kubernetes)
	node relay/src/main.ts

hash-password: install ## Hash a password for the users file (reads it from stdin)
	@node relay/src/main.ts hash-password

check: install lint deps typecheck ## Lint, format check, import rules and type check

generate: install ## Rewrite generated files (docs/reference pages, CRDs)
	node scripts/generate.ts

lint: install ## Lint and check formatting (biome)
	biome check .

deps: install ## Import rules (dependency-cruiser, .dependency-cruiser.cjs): one direction for the mail path, no test kits in production code, packages reached only through their exports (e2e -> operator -> relay), no import cycles
	depcruise --config .dependency-cruiser.cjs relay/src relay/test operator/src operator/test e2e/src bench fuzz tools/src telemetry/src scripts

format: install ## Rewrite files in the project's format
	biome check --write .

typecheck: install ## Type check (tsc, strict)
	tsc -p .

controlplane: ## Build kube-apiserver, etcd, kubectl and helm from Go modules (cached by version)
	e2e/controlplane/build.sh

node: controlplane ## Build the node's binaries (kubelet, containerd, runc, CNI, CoreDNS, metrics-server, pause) from source (cached by version)
	e2e/node/build.sh

promtool: ## Build promtool from its Go module (cached by version) for the chart's alert-rule tests
	e2e/promtool/build.sh

test-unit: install test-deps controlplane ## Unit and integration tests: relay and operator (operator tests use the control plane)
	node --test --test-concurrency=2 --test-timeout=180000 $(UNIT_TESTS)

test-e2e: install test-deps controlplane ## End-to-end tests on a real API server
	node --test --test-concurrency=1 --test-timeout=600000 $(E2E_TESTS)

test-node: install test-deps node ## The node tier: a real single-node cluster (kubelet, containerd, kube-proxy), as root
	node --test --test-concurrency=1 --test-timeout=1800000 $(NODE_TESTS)

test-fuzz: install ## Short fuzz run: the fuzzer's own tests, then each target on its seeds, regressions and a few seconds of mutants
	node --test fuzz/engine/fuzz-loop.test.ts
	@set -e; for entry in $(FUZZ_SHORT_SECONDS); do \
	  node fuzz/fuzz.ts $${entry%%:*} --seconds $${entry##*:} --seed 1; \
	done

fuzz: install ## Long fuzz run: $(FUZZ_RUNS) inputs per target (hours; see fuzz/README.md); the corpus grows in var/fuzz
	@set -e; for target in $(FUZZ_TARGETS); do \
	  node fuzz/fuzz.ts $$target --runs $(FUZZ_RUNS) --save-corpus; \
	done

test: check test-deps controlplane promtool test-unit test-fuzz test-e2e test-node ## Everything CI runs: checks, then all tests, the node tier last (as root)

bench: install controlplane ## Benchmarks (not part of make test), Sluice vs Haraka and Postfix, the operator at scale; reports go to bench/results/
	node bench/accept.bench.ts
	node bench/dkim.bench.ts
	node bench/shared-state.bench.ts
	node bench/reputation.bench.ts
	node bench/compare.bench.ts
	node bench/profile.bench.ts
	node bench/profile.bench.ts --medium
	node bench/syscalls.bench.ts
	node bench/adversarial.bench.ts
	node bench/backlog.bench.ts
	node bench/workers.bench.ts
	node bench/operator-scale.bench.ts

clean: ## Remove the local spool and generated state
	rm -rf var
