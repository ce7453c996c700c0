#!/usr/bin/env bash
# Build the browser client into web/dist/ (served by the API at /): installs Node.js and npm from
# Debian's packages when they are missing, runs `npm ci` from web/package-lock.json and bundles
# web/src with esbuild. Idempotent and quick when nothing changed (stamps hash the inputs).
#   --browser   also install Debian's Chromium (/usr/bin/chromium) for the browser tests
# Exits non-zero when the client cannot be built; a Chromium that cannot be installed is only
# a warning (the browser tests then skip and say why).
set -euo pipefail
cd "$(dirname "$0")/.."
want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "usage: scripts/web.sh [--browser]" >&2; exit 2 ;;
  esac
done

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else echo "scripts/web.sh: need root (or passwordless sudo) for: $*" >&2; return 1
  fi
}

apt_install() {  # apt_install PACKAGE...: install from Debian's packages, updating the lists once if needed
  command -v apt-get >/dev/null || { echo "scripts/web.sh: no apt-get to install $*" >&2; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "$@" >/dev/null; }
}

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "== web: installing Node.js and npm (Debian packages)"
  apt_install nodejs npm
fi

if [ "$want_browser" = 1 ] && [ ! -x "${CHATMQ_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "== web: installing Chromium for the browser tests (Debian package)"
  apt_install chromium \
    || echo "WARNING: Chromium could not be installed: the browser tests will be skipped" >&2
fi

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

cd web
lock_hash="$(hash_of package.json package-lock.json)"
if [ ! -f node_modules/.chatmq-lock ] || [ "$(cat node_modules/.chatmq-lock)" != "$lock_hash" ]; then
  echo "== web: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.chatmq-lock
fi

build_hash="$(hash_of package-lock.json ../scripts/web.sh $(find src -type f | LC_ALL=C sort))"
if [ ! -f dist/.chatmq-build ] || [ "$(cat dist/.chatmq-build)" != "$build_hash" ]; then
  echo "== web: bundling web/src into web/dist"
  rm -rf dist.tmp
  mkdir -p dist.tmp
  node_modules/.bin/esbuild src/main.js --bundle --format=esm --target=es2020 --minify --sourcemap \
    --outfile=dist.tmp/app.js --log-level=warning
  cp src/index.html src/style.css dist.tmp/
  echo "$build_hash" > dist.tmp/.chatmq-build
  rm -rf dist
  mv dist.tmp dist
fi
