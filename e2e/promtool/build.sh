#!/usr/bin/env bash
# Builds promtool (the Prometheus rule checker the chart's alert tests run) from the Go
# module pinned in this directory's go.mod, into the cache e2e/controlplane/build.sh
# uses, keyed by version:
#
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}/bin/promtool-<version>
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}/bin/current/promtool -> ../promtool-<version>
#
# A binary already in the cache is not rebuilt. The first build takes a few minutes on
# 2 cores (Prometheus pulls in its service-discovery clients).
#
# Environment:
#   SLUICE_CACHE           cache root (default $HOME/.cache/sluice)
#   SLUICE_BUILD_PARALLEL  packages compiled at once, go build -p (default 1)
#
# Usage: e2e/promtool/build.sh            build it if missing, print the path
#        e2e/promtool/build.sh --print    print the path only (exit 1 if missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
bindir="$cache/bin"
parallel="${SLUICE_BUILD_PARALLEL:-1}"
print_only=false
[[ "${1-}" == "--print" ]] && print_only=true

version="$(nice -n 19 go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' github.com/prometheus/prometheus)"
out="$bindir/promtool-$version"

if [[ ! -x "$out" ]]; then
  if $print_only; then
    echo "missing: $out" >&2
    exit 1
  fi
  mkdir -p "$bindir/current"
  echo "build.sh: building promtool $version with go build -p $parallel ..." >&2
  start=$SECONDS
  tmp="$out.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # What `promtool --version` reports; without it, an empty version.
  ldflags="-s -w -X github.com/prometheus/common/version.Version=${version#v}"
  ldflags+=" -X github.com/prometheus/common/version.Branch=release"
  # Written under a temporary name and renamed, so an interrupted build never leaves a
  # file the next run would take for a finished one.
  CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -p=$parallel" \
    nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmp" \
    github.com/prometheus/prometheus/cmd/promtool
  mv -f "$tmp" "$out"
  trap - EXIT
  echo "build.sh: built promtool in $((SECONDS - start))s: $(du -h "$out" | cut -f1) $out" >&2
fi
if ! $print_only; then
  ln -sfn "../promtool-$version" "$bindir/current/.promtool.new"
  mv -fT "$bindir/current/.promtool.new" "$bindir/current/promtool"
fi
echo "promtool=$out"
