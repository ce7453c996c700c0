#!/usr/bin/env bash
# The layer contracts (.importlinter) over the chatmq package: an upward import fails.
# import-linter finds modules by walking a package's folder, and chatmq is assembled from
# top-level folders (pyproject.toml package-dir), so this checks a plain (non-editable) install
# of the tree into .lint/site, made afresh each time (a copy: nothing in it is edited by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
root=$(pwd)
rm -rf .lint && mkdir -p .lint
"$py" -m pip install -q --disable-pip-version-check --no-deps --target .lint/site . >.lint/pip.log 2>&1 \
  || { cat .lint/pip.log >&2; exit 1; }
# from inside .lint, so that ./chatmq of the checkout does not shadow the install
cd .lint && PYTHONPATH=site "$root/.venv/bin/lint-imports" --no-cache "$root/.importlinter"
