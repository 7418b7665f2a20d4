# Two commands: `make run` (the dashboard) and `make test` (every test). Both set up what they need,
# and do nothing extra when nothing changed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: run test lint bench setup browser sandbox mcp-servers postgres nginx clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

browser: $(STAMP)
	@PYTHONPATH=. scripts/ensure_browser.sh $(BIN)/python

# The Python tool's sandbox (bubblewrap): installed when possible; without it only that tool is off.
sandbox: $(STAMP)
	@PYTHONPATH=. scripts/ensure_sandbox.sh $(BIN)/python

# The pinned npm MCP server the tests run (Node.js from the machine).
mcp-servers:
	@scripts/ensure_mcp_servers.sh

# PostgreSQL's server binaries and nginx, for the team-deployment tests (throwaway clusters and
# balancers on free ports; nothing is left running).
postgres:
	@scripts/ensure_postgres.sh

nginx:
	@scripts/ensure_nginx.sh

setup: browser sandbox

run: setup
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

test: setup mcp-servers postgres nginx
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: browser
	$(BIN)/python -m benchmarks.churn --sessions 50

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
