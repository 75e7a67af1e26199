# accord — the two commands in the README are `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export DS_ACCELERATOR ?= cpu
# Compiled DeepSpeed ops and generated test audio are cached per user, shared by clones.
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/torch_extensions
export ACCORD_CACHE ?= $(HOME)/.cache/accord
export RAY_USAGE_STATS_ENABLED ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast test-gpu lint bench demo clean

setup:  ## idempotent: apt packages, .venv, the project + pinned deps in one resolve
	bash scripts/setup.sh

test: setup  ## the whole suite (unit + integration), as CI runs it
	$(PY) -m pytest -q --timeout=1500 --durations=25 $(PYTEST_ARGS)

test-fast: setup  ## unit tests only
	$(PY) -m pytest -q -m "not integration and not slow" $(PYTEST_ARGS)

test-gpu:  ## the GPU tier on one CUDA machine, no network needed (README "GPU"; wheels: scripts/gpu_prepare.sh)
	bash scripts/gpu_run.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup  ## benchmarks → bench/results.json + bench/results.md
	$(PY) -m bench.run $(BENCH_ARGS)

demo: setup  ## the main job end to end on the generated sample bucket → demo-out/report.html
	bash scripts/demo.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache demo-out
