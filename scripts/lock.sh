#!/usr/bin/env bash
# Re-make requirements/lock.txt on purpose: install everything unpinned (what pip resolves today) into
# a fresh virtual environment, and write its `pip freeze` (without the project itself and torch, which
# scripts/setup.sh pins on its own) as the constraints file scripts/setup.sh installs with.
# Then run both README commands (CI: .ci/run) and commit the lock with what they needed.
#
#   bash scripts/lock.sh            # Python 3.11 on Linux x86_64, the platform the lock is for
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(mktemp -d "${TMPDIR:-/tmp}/megatron-snow-lock.XXXXXX")
trap 'rm -rf "$VENV"' EXIT
"${PYTHON:-python3}" -m venv "$VENV"
MEGATRON_SNOW_LOCK=/dev/null PYTHON="$VENV/bin/python" bash scripts/setup.sh
{
  echo "# pip constraints: every package scripts/setup.sh installs, at the versions last checked."
  echo "# Made by scripts/lock.sh on $(date -u +%Y-%m-%d) with $("$VENV/bin/python" -V) on $(uname -sm); edit by re-running it."
  "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v -i -E '^(#|-e |torch==|nvidia-|triton==|megatron-snow)'
} > requirements/lock.txt.partial
mv requirements/lock.txt.partial requirements/lock.txt
echo "requirements/lock.txt: $(grep -c '==' requirements/lock.txt) packages"
