# Movie Time: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.requirements-installed

.PHONY: setup run pipeline test lint bench wheelhouse clean

# A virtual environment with the pinned requirements (re-installed when requirements.txt changes).
# Offline machines: `make wheelhouse` once where the registry is reachable, then copy the folder.
# pip byte-compiles what it installs one file at a time; compileall does it with a process per
# core (about 29 s instead of 53 on two cores).
$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -d wheelhouse ]; then \
	  $(BIN)/pip install --quiet --no-compile --no-index --find-links wheelhouse -r requirements.txt; \
	else \
	  $(BIN)/pip install --quiet --no-compile -r requirements.txt; \
	fi
	@$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	@touch $(STAMP)

setup: $(STAMP)

# The main job: the pipeline on the bundled data into the embedded store, then the API on :8080.
run: setup
	$(BIN)/python -m pipeline run
	$(BIN)/python -m api --host 127.0.0.1 --port 8080

# The tests: unit, integration (real SecantusDB server), notebook and end-to-end.
test: setup
	$(BIN)/python -m pytest

# Lint rules and formatting (ruff) and the import contracts (import-linter), configured in
# pyproject.toml; `.venv/bin/ruff format .` fixes the format.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python -m benchmarks

wheelhouse:
	$(PYTHON) -m pip download --dest wheelhouse -r requirements.txt

clean:
	-$(BIN)/python -m pipeline store stop
	rm -rf runs var .pytest_cache
