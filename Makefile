# qbridge — the two commands a new machine needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
ONCE ?=

.PHONY: help setup venv stack-fetch schemas proto proto-check lint test test-unit test-integration run bench clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python >= 3.11 needed)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP) ## Create .venv with pinned dependencies
	@# Put libs/, tools/ and every service folder on the venv's path (like an editable install).
	@sp=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  { echo "$(CURDIR)/libs"; echo "$(CURDIR)/tools"; for d in $(CURDIR)/services/*/; do if [ -d "$$d" ]; then echo "$${d%/}"; fi; done; } > "$$sp/qbridge-dev.pth"

stack-fetch: venv ## Fetch Kafka jars (Maven) and install PostgreSQL (apt) if missing
	$(PY) -m devstack fetch

setup: venv stack-fetch ## Everything `run` and `test` need

schemas: venv ## Register changed Avro schemas in schemas/registry.json
	$(PY) -m qbridge.contracts register

proto: venv ## Generate the gRPC stubs (schemas/proto -> libs/qbridge/contracts/gen)
	$(PY) schemas/proto/generate.py --out libs/qbridge/contracts/gen

proto-check: venv ## Fail if the committed gRPC stubs differ from freshly generated ones
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(PY) schemas/proto/generate.py --out "$$tmp" >/dev/null && \
	  diff -r -x __pycache__ "$$tmp" libs/qbridge/contracts/gen \
	  || { echo "error: gRPC stubs are stale: run 'make proto'"; exit 1; }

lint: venv proto-check ## ruff, ruff format --check, mypy, schema registry check, stubs up to date
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m qbridge.contracts check

test-unit: venv ## Unit tests only (no broker, no database)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test: setup ## All tests: unit + integration against a real local Kafka and PostgreSQL
	$(PY) -m qbridge.contracts check
	$(PY) -m pytest tests $(PYTEST_ARGS)

run: setup ## Start Kafka, PostgreSQL and every service, run a sample workload, keep serving (ONCE=1 exits)
	$(PY) -m devstack.run $(if $(ONCE),--once,)

bench: setup ## Benchmarks (numbers, not assertions); results in bench/results/
	$(PY) bench/bench_classical.py
	$(PY) bench/bench_quantum.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_gateway.py

clean: ## Remove caches (keeps .venv and the Kafka jar cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench/results tests/artifacts

# ---- container images and the compose stack, with podman (tools/containers/) ----------
.PHONY: images compose-test lock

images: stack-fetch ## Build every image with podman (base images from Debian packages; cached)
	$(PY) tools/containers/images.py build

compose-test: stack-fetch ## Run docker-compose.yml with podman: healthchecks, sample workload, a Solve, rows in PostgreSQL; remove it all
	$(PY) tools/containers/compose_test.py

lock: ## Regenerate requirements.lock (every runtime dependency pinned with hashes) from requirements.txt
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/pip" install -q pip-tools==7.6.2 && \
	  "$$tmp/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
	    --no-emit-index-url --no-emit-find-links --output-file requirements.lock requirements.txt
