# Every target creates or updates the environment itself: a fresh clone needs only python3.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test test-slow test-all lint format migrate bench clean cluster cluster-stop

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled once here (as the Containerfile does): where PYTHONDONTWRITEBYTECODE is
# set, every `tollhouse` call would otherwise compile each module it imports from source.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	$(VENV)/bin/python -m compileall -q src
	@touch $@

HOST ?= 127.0.0.1
PORT ?= 8000

run: $(VENV)/.synced
	$(VENV)/bin/tollhouse serve --host $(HOST) --port $(PORT)

migrate: $(VENV)/.synced
	$(VENV)/bin/tollhouse migrate

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

format: $(VENV)/.synced
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Two workers, one a core (pytest-xdist); a file's tests stay together so its module-scoped
# peers start once. Each worker has its own databases, peers and ports (tests/conftest.py).
TEST_WORKERS ?= 2

test: lint
	$(VENV)/bin/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# Slow proofs only (no lint): what `make test` leaves out.
test-slow: $(VENV)/.synced
	$(VENV)/bin/pytest -m slow || [ $$? -eq 5 ]  # 5: none collected

test-all: lint
	$(VENV)/bin/pytest

bench: $(VENV)/.synced
	$(VENV)/bin/python bench/auth.py
	$(VENV)/bin/python bench/ledger.py
	$(VENV)/bin/python bench/pipeline.py
	$(VENV)/bin/python bench/interactions.py
	$(VENV)/bin/python bench/platform_api.py
	$(VENV)/bin/python bench/proxy.py
	$(VENV)/bin/python bench/scale.py

# N replicas behind nginx and M job workers on this machine's PostgreSQL and Redis (README:
# Running at scale).
REPLICAS ?= 3
WORKERS ?= 2
CLUSTER_PORT ?= 8080
cluster: $(VENV)/.synced
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update && apt-get install -y --no-install-recommends nginx)
	$(VENV)/bin/python -m tollhouse.cluster start --replicas $(REPLICAS) --workers $(WORKERS) --port $(CLUSTER_PORT)

cluster-stop: $(VENV)/.synced
	$(VENV)/bin/python -m tollhouse.cluster stop

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
