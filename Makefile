# The README's two commands: `make demo` (environment + demo data + main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel on this project's machines; on a GPU machine install your CUDA torch into the venv first
# (e.g. `make env TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"`).
TORCH_SPEC ?= torch==2.13.0
DEMO_CONFIG ?= configs/geuvadis_chr22.yaml

.PHONY: env demo demo-data test lint bench clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test,glmnet]"
	touch $@

demo-data: env
	$(BIN)/expredict data fetch-demo --data-dir data/demo

demo: demo-data
	$(BIN)/expredict run $(DEMO_CONFIG)

test: env
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: env
	$(BIN)/ruff check expredict tests benchmarks

clean:
	rm -rf runs .pytest_cache
