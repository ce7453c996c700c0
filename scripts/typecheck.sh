#!/usr/bin/env bash
# mypy --strict over the chatmq package and the tests. The package is assembled from
# top-level folders (pyproject.toml package-dir), which mypy cannot follow through an
# editable install, so this builds a symlinked view of it in .typecheck/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
rm -rf .typecheck && mkdir -p .typecheck/chatmq
for f in core/*; do ln -s "../../$f" ".typecheck/chatmq/$(basename "$f")"; done
for d in broker bridges services devices config; do ln -s "../../$d" ".typecheck/chatmq/$d"; done
MYPYPATH=.typecheck "$py" -m mypy --strict --explicit-package-bases .typecheck/chatmq tests "$@"
