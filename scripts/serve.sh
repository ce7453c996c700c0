#!/usr/bin/env bash
# Quick start: install chatmq into .venv (first run only), build the browser client when Node.js
# is available (scripts/web.sh: quick when already built), and start the embedded server.
# Extra arguments go to `chatmq serve` (e.g. --mqtt-port 1884).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if command -v node >/dev/null && command -v npm >/dev/null; then
  scripts/web.sh || echo "WARNING: the browser client could not be built (scripts/web.sh); serving the API only" >&2
else
  echo "note: Node.js is not installed, so the browser client at / is not built (scripts/web.sh installs it)" >&2
fi
exec .venv/bin/chatmq serve "$@"
