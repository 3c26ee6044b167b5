#!/usr/bin/env bash
# Debian's bubblewrap, the sample sandbox of `evaluate` for users who are not root (sandbox.mechanism=bwrap/auto)
# and what tests/evaluate/test_sandbox_unprivileged.py and the bwrap cases of test_sandbox_hostile.py run under.
#   bash scripts/bubblewrap_local.sh install    apt-get install bubblewrap when it is missing (root)
#   bash scripts/bubblewrap_local.sh check      run a trivial command in it (exit 1 with the reason when it cannot)
set -euo pipefail
CMD=${1:-install}

die() { echo "bubblewrap_local: $*" >&2; exit 1; }

install() {
  command -v bwrap >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "bubblewrap is not installed and installing it needs root (apt-get install bubblewrap)"
  command -v apt-get >/dev/null || die "bubblewrap is not installed and there is no apt-get to install it"
  echo "bubblewrap_local: installing bubblewrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null \
    || die "apt-get install bubblewrap failed"
  command -v bwrap >/dev/null || die "apt-get installed bubblewrap but no bwrap command is on PATH"
}

check() {
  command -v bwrap >/dev/null || die "no bwrap on PATH (bash scripts/bubblewrap_local.sh install, as root)"
  bwrap --ro-bind / / --dev /dev --unshare-pid --proc /proc --unshare-net --die-with-parent -- true \
    || die "bwrap cannot make its namespaces here (user namespaces disabled?)"
}

case "$CMD" in
  install) install ;;
  check) check ;;
  *) die "unknown command '$CMD' (install | check)" ;;
esac
