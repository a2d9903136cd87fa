#!/usr/bin/env bash
# Regenerates the replace block of go.mod that pins every k8s.io staging module
# to the version matching the k8s.io/kubernetes release we build on. The
# kubernetes go.mod replaces them with ./staging paths, which only work inside
# its own tree, so consumers must pin them to the published v0.x tags.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION="${KUBE_VERSION:-$(go list -m -f '{{.Version}}' k8s.io/kubernetes 2>/dev/null || echo v1.37.2)}"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

kube_mod="$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
mods=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kube_mod")

args=()
for m in $mods; do
  args+=("-replace=${m}=${m}@${STAGING_VERSION}")
done
go mod edit "${args[@]}"
go mod edit -require="k8s.io/kubernetes@${KUBE_VERSION}"
echo "pinned $(echo "$mods" | wc -w) staging modules to ${STAGING_VERSION}"
