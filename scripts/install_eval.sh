#!/usr/bin/env bash
# Install the benchmarks' own evaluators used by `python -m megatron_snow evaluate`
# (megatron_snow/evaluate/): EvalPlus (HumanEval+, MBPP+), EvoEval and BigCodeBench.
# evoeval and bigcodebench go in with --no-deps, which setup.py extras cannot say:
# bigcodebench 0.2.5 hard-requires the CUDA build of vllm (another torch), and
# evoeval pins an older evalplus. What they import at scoring time is listed here.
set -euo pipefail
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet "evalplus==0.3.1" "openai>=1.0" pqdm gradio-client e2b matplotlib
"$PY" -m pip install --quiet --no-deps "evoeval==0.1.0" "bigcodebench==0.2.5"
"$PY" -c "import evalplus, evoeval, bigcodebench; print(f'evaluators ready: evalplus {evalplus.__version__}, evoeval, bigcodebench {bigcodebench.__version__}')"
