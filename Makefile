# Two entry points on a fresh machine:  make demo  (the main job)  and  make test  (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST := data/fashion-mnist
# torch is pinned to the CPU build that lies on this kind of machine's disk; an open requirement
# would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test lint venv data clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH) -e ".[test]"
	touch $@

data: $(FMNIST)/.complete

$(FMNIST)/.complete: | $(VENV)/.installed
	$(BIN)/python -m longtail.data.fetch fashion-mnist $(FMNIST)
	touch $@

demo: venv data
	$(BIN)/longtail train recipes/demo.yaml

test: venv data
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=25

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) runs data/cache
