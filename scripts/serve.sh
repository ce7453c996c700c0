#!/usr/bin/env bash
# Quick start: install chatmq into .venv (first run only) and start the embedded server.
# Extra arguments go to `chatmq serve` (e.g. --mqtt-port 1884).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/chatmq serve "$@"
