# qbridge — the two commands a new machine needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
ONCE ?=

# pytest on $(1); exit status 5 (nothing collected) fails the target with a plain message.
define pytest
$(PY) -m pytest $(1) $(PYTEST_ARGS) || { status=$$?; \
  if [ $$status -eq 5 ]; then echo "error: pytest collected no tests in $(1) $(PYTEST_ARGS)" >&2; fi; \
  exit $$status; }
endef

.PHONY: help setup venv stack-fetch schemas proto proto-check lint format test test-unit test-integration run bench clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python >= 3.11 needed)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# The project itself, as an editable install: the `qbridge` command in .venv/bin, and libs/,
# tools/ and every service package importable (`python -m <package>`) from this checkout.
# Redone when pyproject.toml changes (e.g. a new service folder in its package list).
$(VENV)/.editable: $(STAMP) pyproject.toml
	@sp=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); rm -f "$$sp/qbridge-dev.pth"
	@# PYTHONWARNINGS: setuptools warns on every editable install that folders in the working
	@# directory could shadow the package; none does here (the packages live in libs/, tools/, services/).
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.editable ## Create .venv: pinned dependencies, then the project (editable)

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
	$(call pytest,tests/unit)

test-integration: setup ## Integration tests only, against a real local Kafka and PostgreSQL
	$(PY) -m qbridge.contracts check
	$(call pytest,tests/integration)

test: setup ## All tests: unit + integration against a real local Kafka and PostgreSQL
	$(PY) -m qbridge.contracts check
	$(call pytest,tests)

format: venv ## Apply ruff's fixes and formatting (make lint checks both)
	$(VENV)/bin/ruff check --fix . || status=$$?; $(VENV)/bin/ruff format . && exit $${status:-0}

run: setup ## Start Kafka, PostgreSQL and every service, run a sample workload, keep serving (ONCE=1 exits)
	$(PY) -m devstack.run $(if $(ONCE),--once,)

bench: setup ## Benchmarks (numbers, not assertions); results in bench/results/
	$(PY) bench/bench_classical.py
	$(PY) bench/bench_quantum.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_gateway.py
	$(PY) bench/bench_validation.py

clean: ## Remove caches (keeps .venv and the Kafka jar cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench/results tests/artifacts

.PHONY: fuzz chaos
fuzz: venv ## Fuzz Avro decoding, intake validation and problem constructors (FUZZ_EXAMPLES per target)
	QBRIDGE_FUZZ_PROFILE=qbridge-fuzz QBRIDGE_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),200000) \
		$(PY) -m pytest tests/fuzz -p no:cacheprovider --hypothesis-show-statistics $(PYTEST_ARGS)

chaos: setup ## Chaos run: steady load, kill/freeze every component, floods; prints a ledger
	$(PY) bench/chaos.py $(CHAOS_ARGS)

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
