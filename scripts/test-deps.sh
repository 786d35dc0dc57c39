#!/usr/bin/env bash
# Brings the system packages the tests use onto this machine, so that `make test` works on
# a fresh Debian machine with nothing but git, make, Go and this checkout. As root it
# installs what is missing with apt-get; otherwise it stops at once and prints the exact
# command to run. The tests start their own redis-server, DNS and SMTP peers on loopback.
set -euo pipefail

# package -> the check that shows it is there
declare -A checks=(
  [redis-server]='command -v redis-server'
  [swaks]='command -v swaks'
  [openssl]='command -v openssl'
  # swaks speaks TLS only with these two Perl modules (Debian lists them as "recommends",
  # so an install with --no-install-recommends leaves swaks without STARTTLS)
  [libnet-ssleay-perl]='perl -MNet::SSLeay -e1'
  [libio-socket-ssl-perl]='perl -MIO::Socket::SSL -e1'
  # dkimpy: a second DKIM implementation that checks the relay's signatures
  [python3-dkim]='/usr/bin/python3 -c "import dkim"'
  # dkimpy verifies Ed25519 signatures (RFC 8463) with PyNaCl
  [python3-nacl]='/usr/bin/python3 -c "import nacl"'
  # DANE tests: a validating resolver, and the tools that sign its test zone
  [unbound]='command -v unbound'
  [ldnsutils]='command -v ldns-signzone'
  # the node tier (e2e/src/node): the kubelet's and kube-proxy's packet filter, OCI
  # images without a Docker engine, and root filesystems from Debian packages
  [iptables]='command -v iptables'
  [nftables]='command -v nft'
  [umoci]='command -v umoci'
  [mmdebstrap]='command -v mmdebstrap'
  # e2e/node/build.sh: runc with seccomp (cgo) and the static pause binary
  [gcc]='command -v gcc'
  [pkg-config]='command -v pkg-config'
  [libseccomp-dev]='pkg-config --exists libseccomp'
)

missing=()
for pkg in redis-server swaks openssl libnet-ssleay-perl libio-socket-ssl-perl python3-dkim python3-nacl unbound ldnsutils \
  iptables nftables umoci mmdebstrap gcc pkg-config libseccomp-dev; do
  bash -c "${checks[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

install=(apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -ne 0 ]]; then
  echo "make test needs these Debian packages: ${missing[*]}" >&2
  echo "install them with:" >&2
  echo "  sudo apt-get update && sudo ${install[*]}" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
"${install[@]}" -qq
# Debian's package may start a system redis on :6379; the tests need none of it.
if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
# likewise a system unbound on :53; the DANE tests start their own on a free port
if command -v systemctl >/dev/null 2>&1; then systemctl stop unbound >/dev/null 2>&1 || true; fi
if command -v service >/dev/null 2>&1; then service unbound stop >/dev/null 2>&1 || true; fi
for pkg in "${missing[@]}"; do
  bash -c "${checks[$pkg]}" >/dev/null 2>&1 || { echo "test-deps: $pkg is still missing after apt-get install" >&2; exit 1; }
done
