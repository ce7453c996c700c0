#!/usr/bin/env bash
# The whole check, as CI runs it: install everything the tests need, lint, type-check, test.
# Extra arguments go to pytest (e.g. -k e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
CHATMQ_EXTRAS=test scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
PYTHON=.venv/bin/python scripts/typecheck.sh
echo "== pytest"
mkdir -p test-artifacts
set +e
.venv/bin/python -m pytest -p no:cacheprovider --junitxml=test-artifacts/junit.xml "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then  # no test selected (e.g. a -k or -m filter matching nothing): not a failure
  echo "pytest: no tests were selected" >&2
  exit 0
fi
exit "$rc"
