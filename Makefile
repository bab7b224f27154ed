# rwsplit: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash

.PHONY: demo test cluster-up cluster-down cluster-status build bench check-config package

## make demo: build, start a local primary + 2 replicas, the sidecar and the proxy, run a sample
## workload, show where queries went and each replica's lag; Ctrl-C stops everything.
demo:
	scripts/demo.sh

## make test: install what is missing, start real servers, run every test and check.
test:
	scripts/test.sh

## Local topology (env: BASE_PORT=3310, REPLICAS=2).
cluster-up:
	scripts/cluster.sh up
cluster-down:
	scripts/cluster.sh down
cluster-status:
	scripts/cluster.sh status

build:
	cargo build --workspace --release

## make package: .deb packages (rwsplit-proxy, rwsplit-binlog-reader, rwsplit-common) with
## hardened systemd units, in dist/ (scripts/package.sh; tested by scripts/test-package.sh).
package:
	scripts/package.sh

## make bench: direct vs HAProxy vs rwsplit (sysbench), and the web-pool scenario; starts and
## stops what it needs, appends the table to docs/BENCHMARKS.md. BENCH_SECONDS=5 for a quick look.
bench:
	scripts/bench.sh

check-config:
	cargo run -q --release --bin rwsplit-proxy -- --config examples/local-cluster.yaml --check-config
