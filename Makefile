# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The virtual environment lives in .venv/ and is reused when present; torch==2.13.0 is
# installed first so pip takes the local CPU wheel instead of a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medseg-installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast venv lint clean browser-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,peers,dicom,mesh,classic,atlas,viewer,pathology]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medseg demo --out $(DEMO_OUT) --overwrite

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP) lint browser-deps
	$(BIN)/python -m pytest -n 2 -q tests

# the viewer's browser test drives Debian's chromium + chromium-driver: CI installs them when
# absent (best effort; without them that one test is skipped and says why)
browser-deps:
	@if [ "$$CI" = "true" ] && ! command -v chromedriver >/dev/null 2>&1 \
		&& command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
			>/dev/null 2>&1 || echo "chromium not installed: the browser test will be skipped"; \
	fi

# the inner loop: everything but the tests marked slow (CI runs them all with `make test`)
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 -q -m "not slow" tests

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build
