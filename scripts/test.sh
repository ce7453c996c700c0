#!/usr/bin/env bash
# The whole check, as CI runs it: install everything the tests need (Python packages; Kafka and
# FerretDB through scripts/services.sh), lint, type-check, test. Extra arguments go to pytest
# (e.g. -k e2e). CHATMQ_SKIP_SERVICES=1 skips the servers (and so the cluster-marked tests).
set -euo pipefail
cd "$(dirname "$0")/.."
CHATMQ_EXTRAS=test scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
PYTHON=.venv/bin/python scripts/typecheck.sh
echo "== layers (import-linter)"
PYTHON=.venv/bin/python scripts/layers.sh
echo "== Helm chart: helm built once with go install (build/tools), lint and render (tests/deploy parse it)"
scripts/helm.sh check
echo "== servers for the cluster-marked tests (Kafka, MongoDB wire protocol, victoria-metrics; nginx for the cluster's front)"
if [ "${CHATMQ_SKIP_SERVICES:-0}" != 1 ] && scripts/services.sh up kafka mongo metrics && scripts/services.sh install nginx; then
  export CHATMQ_KAFKA_BOOTSTRAP="127.0.0.1:${CHATMQ_KAFKA_PORT:-9092}"
  export CHATMQ_MONGO_URL="mongodb://127.0.0.1:${CHATMQ_MONGO_PORT:-27017}"
  # not a setting (no process reads it): the tests' InfluxDB v2 write API (victoria-metrics)
  export CHATMQ_TEST_INFLUX_URL="http://127.0.0.1:${CHATMQ_VM_PORT:-8428}"
else
  echo "WARNING: Kafka/MongoDB/victoria-metrics/nginx are not available: the cluster-marked tests will be skipped" >&2
fi
echo "== web client, and Chromium for the browser-marked tests (no Chromium: they are skipped)"
scripts/web.sh --browser
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
