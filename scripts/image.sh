#!/usr/bin/env bash
# The chatmq OCI image (deploy/Containerfile), built without a registry or a Docker engine:
#   1. base:  an mmdebstrap root filesystem of Debian bookworm (minbase + python3, python3-venv,
#             ca-certificates) imported with buildah as the only layer of localhost/chatmq-base
#   2. image: `buildah bud` of deploy/Containerfile on that base (RUN steps with chroot isolation),
#             from a context of wheels (chatmq and every dependency, built/fetched by the checkout's
#             pip), the web client (scripts/web.sh) and deploy/image/
#   3. out:   localhost/chatmq:<version> in buildah/podman's store, and an OCI layout in
#             build/image/oci (tag <version>) for `umoci unpack` and `skopeo copy` to a registry
# Idempotent: each step is skipped when its inputs' hash matches the image's label (build/image/*.stamp).
# Installs buildah, umoci, skopeo and mmdebstrap from Debian's packages when missing (needs root).
#   scripts/image.sh            build (or find up to date) and print the image id
#   CHATMQ_IMAGE_TAG            [version from pyproject.toml]
#   CHATMQ_DEBIAN_SUITE         [bookworm]
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/image
suite=${CHATMQ_DEBIAN_SUITE:-bookworm}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
tag=${CHATMQ_IMAGE_TAG:-$version}
python=${PYTHON:-.venv/bin/python}
base_packages="python3,python3-venv,ca-certificates"
mkdir -p "$out"

need=()
for tool in buildah:buildah umoci:umoci skopeo:skopeo mmdebstrap:mmdebstrap; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== image: installing ${need[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi

hash_of() { sha256sum | cut -c1-16; }

# 1. the base: Debian packages only
base_key=$(printf '%s %s %s' "$suite" "$base_packages" "$(date -u +%Y-%m)" | hash_of)  # refreshed monthly
base=localhost/chatmq-base:$suite-$base_key
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  echo "== image: mmdebstrap $suite ($base_packages)"
  rm -f "$out/base.tar"
  mmdebstrap --quiet --variant=minbase --include="$base_packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    --format=tar "$suite" "$out/base.tar"
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$out/base.tar" / >/dev/null
  buildah config --env PATH=/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh "$ctr"
  buildah commit --quiet --rm "$ctr" "$base" >/dev/null
  rm -f "$out/base.tar"
fi

# 2. the context: wheels, web client, config, healthcheck
echo "== image: context (wheels, web client)"
scripts/web.sh >/dev/null
ctx=$out/context
rm -rf "$ctx" && mkdir -p "$ctx/wheels"
"$python" -m pip wheel --quiet --wheel-dir "$ctx/wheels" ".[cluster]"
cp -r web/dist "$ctx/web-dist"
cp config/cluster.toml config/chatmq.toml deploy/image/healthcheck.py "$ctx/"
# What the image is made of: chatmq's sources (not its wheel, whose zip differs on every build), the
# names (so versions) of the dependency wheels, the web client, the Containerfile and the base.
key=$( { git ls-files -z -- chatmq broker bridges services devices config pyproject.toml deploy/Containerfile \
           deploy/image | xargs -0 sha256sum; ls "$ctx/wheels" | grep -v '^chatmq-';
         (cd "$ctx/web-dist" && find . -type f -print0 | sort -z | xargs -0 sha256sum); echo "$base"; } | hash_of)
image=localhost/chatmq:$tag
if [ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "chatmq.inputs"}}' "$image" 2>/dev/null)" != "$key" ] \
   || [ "$(cat "$out/oci.stamp" 2>/dev/null)" != "$key" ]; then
  echo "== image: buildah bud deploy/Containerfile -> $image"
  buildah bud --quiet --isolation chroot --format docker --layers=false \
    --build-arg BASE="$base" --build-arg VERSION="$version" --label chatmq.inputs="$key" \
    --ulimit nofile=4096:4096 -f deploy/Containerfile -t "$image" "$ctx" >/dev/null
  rm -rf "$out/oci"
  buildah push --quiet "$image" "oci:$out/oci:$tag"
  echo "$key" > "$out/oci.stamp"
fi
echo "$image $(buildah inspect --type image --format '{{.FromImageID}}' "$image") (OCI layout: $out/oci:$tag)"
