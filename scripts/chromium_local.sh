#!/usr/bin/env bash
# Debian's headless Chromium, for the browser test of report.html (tests/test_report_browser.py).
#   bash scripts/chromium_local.sh install    apt-get install chromium when it is missing (root)
#   bash scripts/chromium_local.sh path       print the browser's path (exit 1 when there is none)
# Only Debian's package: no browser download (the test opens report.html from disk, offline).
set -euo pipefail
CMD=${1:-install}

die() { echo "chromium_local: $*" >&2; exit 1; }

find_browser() {
  local b
  for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null; then command -v "$b"; return 0; fi
  done
  return 1
}

install() {
  find_browser >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "chromium is not installed and installing it needs root (apt-get install chromium)"
  command -v apt-get >/dev/null || die "chromium is not installed and there is no apt-get to install it"
  echo "chromium_local: installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
    || die "apt-get install chromium failed"
  find_browser >/dev/null || die "apt-get installed chromium but no chromium command is on PATH"
}

case "$CMD" in
  install) install ;;
  path) find_browser || die "no chromium on PATH (bash scripts/chromium_local.sh install, as root)" ;;
  *) die "unknown command '$CMD' (install | path)" ;;
esac
