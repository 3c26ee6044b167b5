#!/usr/bin/env bash
# Install megatron-snow, its test tools and the benchmark evaluators into the current Python.
# Every package is installed at the version of requirements/lock.txt (a pip constraints file made
# on purpose by scripts/lock.sh), so a fresh install resolves to what the tests and the tiny example
# were last checked with, not to whatever was released since. MEGATRON_SNOW_LOCK=/dev/null lifts it.
# torch is installed first, pinned, only when missing: an unpinned torch would
# let pip choose a multi-GB CUDA build where the CPU build is what is wanted
# (the lock does not name torch, so an installed CUDA torch stays).
# On a GPU cluster install your CUDA torch first, then run this script
# (add the Transformer Engine extra with: pip install -e ".[gpu]").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=${MEGATRON_SNOW_LOCK:-requirements/lock.txt}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -c "$LOCK" -e ".[dev]"
# the benchmarks' own evaluators (EvalPlus, EvoEval, BigCodeBench): --no-deps installs the project metadata cannot express
PYTHON="$PY" MEGATRON_SNOW_LOCK="$LOCK" bash scripts/install_eval.sh
"$PY" -c "import megatron.core, torch; print(f'megatron-snow ready: torch {torch.__version__}, megatron-core {megatron.core.__version__}')"
