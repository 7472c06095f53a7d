# Firebreak: `make demo` and `make test` set everything up on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# test workers (pytest-xdist): CI has two cores; with two workers a fresh clone's suite took
# 10 min of pytest (13 min with the set-up) on a two-core machine, 2026-12-06, against about
# 20 min in one process before. `make test WORKERS=1` runs it in one process.
WORKERS ?= 2

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first, so that nothing below pulls a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# ray is an optional extra for users; the suite tests the Ray sweep backend against a
	# local Ray instance, so the development set-up installs it
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/firebreak rehearse scenarios/black-friday.yaml --ops both --out runs/black-friday --force
	@echo "open runs/black-friday/report.html in a browser (run directories: runs/black-friday/traditional, runs/black-friday/ai)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_engine
	$(BIN)/python -m benchmarks.bench_request
	$(BIN)/python -m benchmarks.bench_fork
	$(BIN)/python -m benchmarks.bench_detect
	$(BIN)/python -m benchmarks.bench_env
	$(BIN)/python -m benchmarks.bench_train

.PHONY: impact
impact: $(STAMP)
	$(BIN)/firebreak impact-study --out runs/impact-study --force
	@echo "summary: runs/impact-study/impact_summary.md"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
