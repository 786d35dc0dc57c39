#!/usr/bin/env bash
# Builds everything a real single-node cluster needs besides the control plane, from
# source, into the same version-keyed cache as e2e/controlplane/build.sh:
#
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}/bin/<name>-<version>
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}/bin/current/<name> -> ../<name>-<version>
#
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#                   e2e/controlplane/build.sh (same k8s.io/kubernetes as the API server)
#   containerd, ctr, containerd-shim-runc-v2      github.com/containerd/containerd/v2
#   runc (seccomp: cgo + libseccomp-dev)          github.com/opencontainers/runc
#   bridge, host-local, loopback, portmap         github.com/containernetworking/plugins
#   coredns                                       github.com/coredns/coredns
#   metrics-server                                sigs.k8s.io/metrics-server
#   pause (static C binary)                       build/pause/linux/pause.c of the
#                                                 k8s.io/kubernetes module in the Go cache
#
# The Go tools are built with `go install <module>/<pkg>@<version>` (in module mode, from
# the module's own go.mod and go.sum, checked against sum.golang.org), so each builds
# with exactly the dependency versions its project releases with. A binary already in
# the cache is not rebuilt. Nothing prebuilt is downloaded: only Go modules.
#
# Needs: go, gcc, libseccomp-dev and pkg-config (apt).
#
# Environment: SLUICE_CACHE, SLUICE_BUILD_PARALLEL (go build -p, default 1) as for the
# control plane; SLUICE_NODE_ONLY, a space-separated subset of the names above.
#
# Usage: e2e/node/build.sh            build what is missing, print name=path lines
#        e2e/node/build.sh --print    print the paths only (exit 1 if any is missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
bindir="$cache/bin"
parallel="${SLUICE_BUILD_PARALLEL:-1}"
print_only=false
[[ "${1-}" == "--print" ]] && print_only=true

# Kubernetes' node binaries come from the control plane's go.mod, so the kubelet and the
# API server are always the same version.
kube_only="kube-scheduler kube-proxy kube-controller-manager kubelet"
only="${SLUICE_NODE_ONLY:-$kube_only containerd ctr containerd-shim-runc-v2 runc bridge host-local loopback portmap coredns metrics-server pause}"
kube_wanted=""
for n in $kube_only; do [[ " $only " == *" $n "* ]] && kube_wanted+=" $n"; done
missing=0
if [[ -n "$kube_wanted" ]]; then
  SLUICE_BUILD_ONLY="$kube_wanted" "$here/../controlplane/build.sh" ${1:+"$1"} || missing=1
fi

containerd_version=v2.4.2
runc_version=v1.5.3
cni_version=v1.10.0
coredns_version=v1.15.0
metrics_server_version=v0.8.0

# name | version | package@version | cgo | build tags | ldflags
cd_mod=github.com/containerd/containerd/v2
targets=(
  "runc|$runc_version|github.com/opencontainers/runc@$runc_version|1|seccomp urfave_cli_no_docs|-X main.version=${runc_version#v}"
  "containerd|$containerd_version|$cd_mod/cmd/containerd@$containerd_version|0|no_btrfs|-X $cd_mod/version.Version=$containerd_version"
  "ctr|$containerd_version|$cd_mod/cmd/ctr@$containerd_version|0|no_btrfs|-X $cd_mod/version.Version=$containerd_version"
  "containerd-shim-runc-v2|$containerd_version|$cd_mod/cmd/containerd-shim-runc-v2@$containerd_version|0|no_btrfs|-X $cd_mod/version.Version=$containerd_version"
  "bridge|$cni_version|github.com/containernetworking/plugins/plugins/main/bridge@$cni_version|0||"
  "host-local|$cni_version|github.com/containernetworking/plugins/plugins/ipam/host-local@$cni_version|0||"
  "loopback|$cni_version|github.com/containernetworking/plugins/plugins/main/loopback@$cni_version|0||"
  "portmap|$cni_version|github.com/containernetworking/plugins/plugins/meta/portmap@$cni_version|0||"
  "coredns|$coredns_version|github.com/coredns/coredns@$coredns_version|0||"
  "metrics-server|$metrics_server_version|sigs.k8s.io/metrics-server/cmd/metrics-server@$metrics_server_version|0||"
)

$print_only || mkdir -p "$bindir/current"
link() {
  $print_only && return 0
  ln -sfn "../$1-$2" "$bindir/current/.$1.new"
  mv -fT "$bindir/current/.$1.new" "$bindir/current/$1"
}

for t in "${targets[@]}"; do
  IFS='|' read -r name version pkg cgo tags ldflags <<<"$t"
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
    # go install cannot name its output; it writes into a private GOBIN that is renamed
    # into place, so an interrupted build never leaves a file taken for a finished one.
    gobin="$(mktemp -d "$bindir/.gobin.XXXXXX")"
    trap 'rm -rf "$gobin"' EXIT
    GOBIN="$gobin" CGO_ENABLED="$cgo" GOFLAGS="-p=$parallel" \
      nice -n 19 go install -trimpath ${tags:+-tags "$tags"} -ldflags "-s -w $ldflags" "$pkg"
    built="$gobin/$(basename "${pkg%@*}")"
    mv -f "$built" "$out"
    rm -rf "$gobin"
    trap - EXIT
    echo "build.sh: built $name in $((SECONDS - start))s: $(du -h "$out" | cut -f1) $out" >&2
  fi
  link "$name" "$version"
  echo "$name=$out"
done

# pause: Kubernetes' own pause.c, taken from the k8s.io/kubernetes module (its zip ships
# build/pause/linux/pause.c), linked statically so the image needs nothing else.
if [[ " $only " == *" pause "* ]]; then
  kube_version="$(cd "$here/../controlplane" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  out="$bindir/pause-$kube_version"
  if [[ ! -x "$out" ]]; then
    if $print_only; then
      echo "missing: $out" >&2
      missing=1
    else
      src="$(cd "$here/../controlplane" && go mod download -json k8s.io/kubernetes | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c"
      echo "build.sh: building pause from $src ..." >&2
      nice -n 19 gcc -Os -static -Wall -Werror -DVERSION="$kube_version" -o "$out.tmp.$$" "$src"
      strip "$out.tmp.$$"
      mv -f "$out.tmp.$$" "$out"
    fi
  fi
  [[ -x "$out" ]] && { link pause "$kube_version"; echo "pause=$out"; }
fi
exit "$missing"
