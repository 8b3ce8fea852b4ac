# edgeloop — `make demo` runs the whole loop on real video; `make test` runs the tests.
# Needs only Python 3.11 and make: uv is installed with pip when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen --no-sync

# Quiet, offline-safe environment for every entry point (DESIGN.md: without these a run
# with no network stalls 10–20 s per DNS lookup, and onnxruntime reports home). The
# switches below are also in edgeloop/offline.py's OFFLINE_ENV, which every edgeloop
# process sets for itself; here they reach the tools make runs directly as well.
export EDGELOOP_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(EDGELOOP_DATA_DIR)/dagster
export YOLO_CONFIG_DIR ?= $(EDGELOOP_DATA_DIR)/ultralytics
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export ORT_DISABLE_TELEMETRY := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: help uv setup data init demo test lint up status bench dist clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		{ echo "uv not found: installing it with pip"; $(PYTHON) -m pip install --quiet uv; }

setup: uv  ## create .venv from the committed uv.lock (loop host: the networked extra, which holds every other, + dev tools)
	$(UV) sync --frozen --extra networked  # every extra but edge-gpu, which excludes the CPU onnxruntime

data: setup  ## fetch the real sample videos/photos and the seed detector into data/
	$(RUN) edgeloop data

init: data  ## create the stores, register the seed detector as production, write API tokens
	$(RUN) edgeloop init

demo: init  ## the whole loop, headless, on real video; prints a summary
	$(RUN) edgeloop demo

test: data lint  ## lint, type-check and run the test suite
	$(RUN) pytest

lint: setup  ## ruff format --check, ruff check, mypy
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy

up: init  ## the long-running stack: API + labeling page on :8000, Dagster UI + daemon on :3000, MLflow UI on :5000
	$(RUN) edgeloop up

status: setup  ## counts, queue, drift, models, retraining events
	$(RUN) edgeloop status

# Every benchmark under bench/, in the order make bench runs them.
BENCHES = edge_fps ingest api_reads console search vector_publish crop_embeddings datasets \
	trigger store_backends api_reads_postgres ingest_replicas labeling_page batch_fetch console_live \
	audit_grid

bench: init  ## every benchmark (figure, same-run baseline, ratio, TARGET line); see bench/README.md
	set -e; for name in $(BENCHES); do $(RUN) python bench/$$name.py; done
	$(RUN) python bench/edge_fps.py --int8

dist: uv  ## build the wheel and sdist into dist/ (camera hosts: pip install 'dist/edgeloop-*.whl[edge]')
	$(UV) build --out-dir dist

clean:  ## remove runtime state of EDGELOOP_DATA_DIR (keeps fetched media and package cache)
	@test -n "$(EDGELOOP_DATA_DIR)" || { echo "EDGELOOP_DATA_DIR is empty: nothing removed"; exit 1; }
	if [ -d "$(EDGELOOP_DATA_DIR)" ]; then cd "$(EDGELOOP_DATA_DIR)" && rm -rf edgeloop.duckdb* \
		mlflow dagster datasets dvc-remote qdrant frames models reports runs agent logs \
		embeddings ultralytics api-tokens.json api-tokens.json.lock pipelines-settings.json; fi
