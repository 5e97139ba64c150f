# The two commands: `make up` runs the system, `make test` runs every test. Both build the environment
# themselves from the lock file on a machine that has only Python 3.11+, make and git.
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
UV := .uv/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# Installed packages get their bytecode compiled once, here: machines that set PYTHONDONTWRITEBYTECODE would
# otherwise compile Prefect from source in every process (seconds per flow run, measured).
export UV_COMPILE_BYTECODE := 1

.PHONY: up test install lint format bench clean

up: $(VENV)/.installed
	$(VENV)/bin/avatar-crm up

test: $(VENV)/.installed
	$(VENV)/bin/pytest

install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/gateway_ingest.py
	$(VENV)/bin/python benchmarks/e2e_latency.py
	$(VENV)/bin/python benchmarks/reminder_sweep.py
	$(VENV)/bin/python benchmarks/campaign_send.py
	$(VENV)/bin/python benchmarks/daily_report.py
	$(VENV)/bin/python benchmarks/console_render.py

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	$(VENV)/bin/python -m compileall -q models providers blocks inbox messaging bookings campaigns reporting access operations flows console webhook_gateway deployments
	touch $@

clean:
	rm -rf $(VENV) .uv .pytest_cache .ruff_cache
