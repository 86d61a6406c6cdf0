# Both targets do their own set-up on a fresh machine: a local .venv, torch 2.13.0 first, then the project
# with its dev and demo extras. Which torch wheel pip picks is the index's choice: this project's machines serve
# the CPU one; elsewhere, `make TORCH_INDEX=https://download.pytorch.org/whl/cpu test` asks for it.
PYTHON ?= python3
TORCH_INDEX ?=
VENV ?= .venv
# Test processes (pytest-xdist): 2 fit this project's 2-core CI; 0 runs the suite in this process
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg

.PHONY: demo test lint bench setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev,demo]"
	touch $@

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/ruff check ecglang tests scripts benchmarks
	$(BIN)/ruff format --check ecglang tests scripts benchmarks
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS)

lint: setup
	$(BIN)/ruff check --fix ecglang tests scripts benchmarks
	$(BIN)/ruff format ecglang tests scripts benchmarks

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
