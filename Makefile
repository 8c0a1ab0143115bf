# Fresh-machine entry points: `make run` serves, `make test` tests. Each bootstraps its own .venv.
PY ?= python3
UV := .tools/bin/uv
HOST ?= 127.0.0.1
PORT ?= 4250

.PHONY: run test lint venv lock openapi bench clean

$(UV):
	$(PY) -m venv .tools && .tools/bin/pip install -q "uv>=0.5,<1"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PY) && touch $@

venv: .venv/.synced

run: venv
	.venv/bin/ddx-omni serve --host $(HOST) --port $(PORT)

test: venv
	.venv/bin/python -m pytest

lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy

lock: $(UV)
	$(UV) lock

openapi: venv
	.venv/bin/ddx-omni openapi

clean:
	rm -rf .venv .tools
