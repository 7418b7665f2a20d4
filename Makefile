# Two commands: `make run` (the dashboard) and `make test` (every test). Both set up what they need,
# and do nothing extra when nothing changed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: run test lint bench browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

browser: $(STAMP)
	@PYTHONPATH=. scripts/ensure_browser.sh $(BIN)/python

run: browser
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

test: browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: browser
	$(BIN)/python -m benchmarks.churn --sessions 50

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
