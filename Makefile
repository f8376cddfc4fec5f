# The two commands the README promises: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test benchmarks clean

$(BIN)/mammobeam: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (Python >= 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	@touch $(BIN)/mammobeam

setup: $(BIN)/mammobeam

demo: setup
	$(BIN)/mammobeam demo --output demo-output

test: setup
	$(BIN)/pytest -q

benchmarks: setup
	$(BIN)/python -m benchmarks.bench_synth && $(BIN)/python -m benchmarks.bench_preprocess && $(BIN)/python -m benchmarks.bench_batch && $(BIN)/python -m benchmarks.bench_serving && $(BIN)/python -m benchmarks.collect

clean:
	rm -rf demo-output .pytest_cache build *.egg-info
