#!/usr/bin/env bash
# The Helm chart deploy/helm/chatmq: install helm, lint and render the chart.
#
#   scripts/helm.sh install   build helm with `go install` into build/tools/bin (once; idempotent)
#   scripts/helm.sh check     install, then `helm lint` and `helm template` the chart for each values
#                             file (the defaults, and deploy/helm/chatmq/ci/*-values.yaml); the
#                             manifests land in build/helm/<name>.yaml for tests/deploy to parse
#
# helm is a Go module (helm.sh/helm/v3), built here with the machine's Go (1.24 or later); no
# prebuilt binary is downloaded. First build: about 2 minutes (modules fetched into Go's module
# cache); afterwards nothing is rebuilt. The chart needs Kubernetes 1.25+: rendering says which
# version to check against ($CHATMQ_KUBE_VERSION, 1.30.0), since a helm built without the release
# ldflags assumes 1.20.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_VERSION=v3.21.4
KUBE_VERSION=${CHATMQ_KUBE_VERSION:-1.30.0}
tools=build/tools
helm=$tools/bin/helm
chart=deploy/helm/chatmq

install() {
  if [ -x "$helm" ] && [ "$(cat "$tools/helm.version" 2>/dev/null)" = "$HELM_VERSION" ]; then
    return 0
  fi
  command -v go >/dev/null || { echo "scripts/helm.sh: Go is needed to build helm (go install)" >&2; return 1; }
  echo "== helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mkdir -p "$tools/bin"
  GOBIN="$PWD/$tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > "$tools/helm.version"
}

check() {
  install
  mkdir -p build/helm
  local values name
  for values in "" "$chart"/ci/*-values.yaml; do
    name=$(basename "${values:-default}" -values.yaml)
    echo "== helm lint + template: ${values:-defaults}"
    "$helm" lint --strict --kube-version "$KUBE_VERSION" "$chart" ${values:+-f "$values"}
    "$helm" template chatmq "$chart" --kube-version "$KUBE_VERSION" ${values:+-f "$values"} > "build/helm/$name.yaml"
  done
}

case "${1:-}" in
  install) install ;;
  check) check ;;
  *) echo "usage: scripts/helm.sh install|check" >&2; exit 2 ;;
esac
