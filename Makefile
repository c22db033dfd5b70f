# Two commands on a fresh machine: `make run` (the main job) and `make test` (the whole suite).
# Both create .venv and install everything they need. Override the PyTorch build with
#   make run TORCH_SPEC="torch==2.5.1"
# or take a CUDA build from PyTorch's index (pip options may follow the requirement):
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# The requirement is quoted for the shell (torch>=2.5 must not redirect); words after it are
# pip options such as --index-url.
TORCH_OPTIONS = $(wordlist 2,$(words $(TORCH_SPEC)),$(TORCH_SPEC))
RUN_ARGS ?=
# The datasets beside this checkout (../shared/data), unless the user points elsewhere.
export MNISTLAB_DATA ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)

.PHONY: run test test-fast lint bench clean venv dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(firstword $(TORCH_SPEC))" $(TORCH_OPTIONS)
	$(BIN)/python -m pip install -q -e ".[serve]"  # serve: `mnistlab serve` (starlette, uvicorn)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/mnistlab suite run lab-main $(RUN_ARGS)
	$(BIN)/mnistlab report lab-main -o report

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# The inner loop: everything but the tests marked slow (real processes, Dask, real-data runs).
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# The speed benchmarks of benchmarks/RESULTS.md (bench_predict.py, ~20 min, runs on its own);
# the Keras side installs its own venv first (a few minutes).
bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_gemm.py
	$(BIN)/python benchmarks/bench_fused_conv.py
	$(BIN)/python benchmarks/bench_hog.py
	bash benchmarks/keras_env.sh >/dev/null
	$(BIN)/python benchmarks/epoch_vs_keras.py raw/final hog/final fashion/final cnn/final
	$(BIN)/python benchmarks/epoch_vs_keras.py fashion/run2-lab-cnn-tanh fashion/run3-conv64 \
		benchmarks/models/cnn-18-18-32-d75.toml
	$(BIN)/python benchmarks/concurrent_runs.py
	$(BIN)/python benchmarks/omp_wait.py hog/final raw/final

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
