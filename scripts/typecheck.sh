#!/usr/bin/env bash
# mypy --strict over the chatmq package and the tests, on the real tree (scripts/typecheck.py
# names each file's module, since the package is assembled from top-level folders).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
exec "$py" scripts/typecheck.py "$@"
