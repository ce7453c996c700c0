#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install chatmq into it, editable, with the extras named in
# $CHATMQ_EXTRAS (e.g. "test"). Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${CHATMQ_EXTRAS:-}
spec="."
[ -n "$extras" ] && spec=".[$extras]"
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "chatmq needs Python 3.11 or newer ($py is $("$py" -V 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=.venv/.chatmq-installed
want="$(cat pyproject.toml; echo "$extras")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
  printf '%s' "$want" > "$stamp"
fi
