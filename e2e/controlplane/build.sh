#!/usr/bin/env bash
# Builds the real control-plane binaries the e2e tests run -- kube-apiserver, kubectl,
# etcd and helm -- from the Go modules pinned in this directory's go.mod, into a cache
# outside the work tree keyed by version:
#
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}/bin/<name>-<version>
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}/bin/current/<name> -> ../<name>-<version>
#
# A binary that is already in the cache is not rebuilt, so a second run takes seconds.
# The first run compiles Kubernetes and takes tens of minutes on a 2-core machine.
#
# Environment:
#   SLUICE_CACHE           cache root (default $HOME/.cache/sluice)
#   SLUICE_BUILD_PARALLEL  packages compiled at once, go build -p (default 1, so other
#                          work on the machine keeps its CPU; CI alone on it may use 2)
#   SLUICE_BUILD_ONLY      space-separated subset to build, e.g. "etcd kubectl"; the node
#                          tier's kube-scheduler, kube-proxy, kube-controller-manager and
#                          kubelet are built only when named here
#
# Usage: e2e/controlplane/build.sh            build what is missing, print the paths
#        e2e/controlplane/build.sh --print    print the paths only (exit 1 if any is missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
bindir="$cache/bin"
parallel="${SLUICE_BUILD_PARALLEL:-1}"
only="${SLUICE_BUILD_ONLY:-kube-apiserver kubectl etcd helm}"
print_only=false
[[ "${1-}" == "--print" ]] && print_only=true

# Versions come from go.mod (go list applies the replace directives and is fast: it reads
# go.mod and go.sum only).
modver() { nice -n 19 go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$1"; }
kube_version="$(modver k8s.io/kubernetes)"   # v1.X.Y
staging_version="$(modver k8s.io/client-go)" # must be v0.X.Y
etcd_version="$(modver go.etcd.io/etcd/server/v3)"
helm_version="$(modver helm.sh/helm/v3)"

if [[ "v0.${kube_version#v1.}" != "$staging_version" ]]; then
  echo "build.sh: go.mod is inconsistent: k8s.io/kubernetes $kube_version needs the staging modules at v0.${kube_version#v1.}, k8s.io/client-go is $staging_version" >&2
  exit 1
fi

kube_minor="${kube_version#v1.}"
kube_minor="${kube_minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# What `kubectl version` and the API server's /version report; without these they say
# v0.0.0-master. The same variables exist in client-go (for kubectl's client side).
kube_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done

# name | version | main package | extra ldflags
# (etcd first: it is the quickest, and a broken toolchain shows at once.)
targets=(
  "etcd|$etcd_version|go.etcd.io/etcd/server/v3|"
  "kube-apiserver|$kube_version|k8s.io/kubernetes/cmd/kube-apiserver|$kube_ldflags"
  "kubectl|$kube_version|k8s.io/kubernetes/cmd/kubectl|$kube_ldflags"
  "helm|$helm_version|helm.sh/helm/v3/cmd/helm|$helm_ldflags"
  # The node tier (e2e/node/build.sh asks for these through SLUICE_BUILD_ONLY).
  "kube-scheduler|$kube_version|k8s.io/kubernetes/cmd/kube-scheduler|$kube_ldflags"
  "kube-proxy|$kube_version|k8s.io/kubernetes/cmd/kube-proxy|$kube_ldflags"
  "kube-controller-manager|$kube_version|k8s.io/kubernetes/cmd/kube-controller-manager|$kube_ldflags"
  "kubelet|$kube_version|k8s.io/kubernetes/cmd/kubelet|$kube_ldflags"
)

$print_only || mkdir -p "$bindir/current"
missing=0
for t in "${targets[@]}"; do
  IFS='|' read -r name version pkg extra <<<"$t"
  [[ " $only " == *" $name "* ]] || continue
  out="$bindir/$name-$version"
  if [[ ! -x "$out" ]]; then
    if $print_only; then
      echo "missing: $out" >&2
      missing=1
      continue
    fi
    echo "build.sh: building $name $version ($pkg) with go build -p $parallel ..." >&2
    start=$SECONDS
    tmp="$out.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    # -trimpath and -s -w keep the binaries small and the link faster; CGO_ENABLED=0 gives
    # static binaries as Kubernetes' own release build does. The binary is written under
    # a temporary name and renamed, so an interrupted build never leaves a file that the
    # next run would take for a finished one. A failed build exits non-zero here with
    # go's error on stderr (set -e).
    CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -p=$parallel" \
      nice -n 19 go build -trimpath -ldflags "-s -w $extra" -o "$tmp" "$pkg"
    mv -f "$tmp" "$out"
    trap - EXIT
    echo "build.sh: built $name in $((SECONDS - start))s: $(du -h "$out" | cut -f1) $out" >&2
  fi
  if ! $print_only; then
    ln -sfn "../$name-$version" "$bindir/current/.$name.new"
    mv -fT "$bindir/current/.$name.new" "$bindir/current/$name"
  fi
  echo "$name=$out"
done
exit "$missing"
