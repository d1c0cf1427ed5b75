# procjob — the stable entry points: setup, test, lint, demo, rig-up, rig-down, bench.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV   := .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/.rig/bin:$(PATH)

.PHONY: help setup lint typecheck unit integration e2e coverage test demo demo-down rig-up rig-down rig-status \
        crd bench bench-fanout bench-full bench-worker chaos chaos-quick clean node-up node-down node-status image

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## install every dependency (apt, Python venv, Go builds of the rig); idempotent
	@hack/setup.sh

lint: setup ## ruff, mypy --strict, import-linter layer contracts
	$(VENV)/bin/ruff check operator tests hack bench chaos
	$(VENV)/bin/ruff format --check operator tests hack bench chaos
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: setup ## pure tests, no servers
	$(PY) -m pytest tests/unit -q

integration: setup ## adapters against real servers (rig, PostgreSQL, S3, HTTP)
	$(PY) -m pytest tests/integration -q

e2e: setup ## the operator process against the rig and PostgreSQL
	$(PY) -m pytest tests/e2e -q

coverage: setup ## the pure core's unit tests must cover every branch of procjob.core (a gate)
	$(PY) -m pytest tests/unit/core -q --cov=procjob.core --cov-branch \
		--cov-report=term-missing:skip-covered --cov-fail-under=100

test: setup lint coverage ## everything CI runs: lint, the core's coverage gate, unit, integration, e2e
	$(PY) -m pytest tests -q --durations=15

rig-up: setup ## start the local Kubernetes rig (kubeconfig: .rig/kubeconfig)
	$(PY) hack/rig/rig.py up

rig-down: ## stop the rig's processes and remove its state
	@if [ -x $(PY) ]; then $(PY) hack/rig/rig.py down; else echo "rig: not set up"; fi

node-up: setup ## a real node (kubelet + containerd + runc) joined to the rig; needs root
	$(PY) hack/rig/rig.py node-up

node-down: ## stop the real node and undo its host changes (bridge, iptables, mounts, sysctls)
	@if [ -x $(PY) ]; then $(PY) hack/rig/rig.py node-down; else echo "node: not set up"; fi

node-status: ## what the real node runs
	$(PY) hack/rig/rig.py node-status

image: setup ## build localhost/procjob:dev from the Dockerfile (buildah); import it into the node if up
	$(PY) hack/rig/rig.py image

rig-status: ## what the rig runs
	$(PY) hack/rig/rig.py status

crd: setup ## regenerate crds/ from the pydantic models
	$(VENV)/bin/procjob crd > crds/processingjob.yaml

demo: setup ## rig + PostgreSQL + CRD + operator + examples, shown with kubectl get pj
	$(PY) hack/demo.py

demo-down: ## stop what make demo started
	$(PY) hack/demo.py down

bench: setup ## quick benchmark profile (<= 10 minutes), then the fan-out profile (a few minutes)
	$(PY) -m bench.run --profile quick
	$(PY) -m bench.fanout --items 1000 --parallelism 50

bench-fanout: setup ## fan-out alone: one forEach stage of ITEMS (1000) at PARALLELISM (50) against one Indexed Job
	$(PY) -m bench.fanout --items $(or $(ITEMS),1000) --parallelism $(or $(PARALLELISM),50)

bench-full: setup ## the full benchmark matrix
	$(PY) -m bench.run --profile full

bench-worker: setup ## stream 256 MiB through the fetch worker; throughput and peak RSS
	$(PY) -m bench.worker

chaos: setup ## the full chaos suite (1,000 jobs, every fault, 10,000 jobs drained); SEED=N to replay
	$(PY) -m chaos.run --profile full $(if $(SEED),--seed $(SEED))

chaos-quick: setup ## the quick chaos profile (<= 10 minutes); SEED=N to replay
	$(PY) -m chaos.run --profile quick $(if $(SEED),--seed $(SEED))

clean: rig-down ## remove local state (not the Go build cache)
	rm -rf .rig .pytest_cache .mypy_cache .ruff_cache
