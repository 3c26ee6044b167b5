#!/usr/bin/env bash
# Install the benchmarks' own evaluators used by `python -m megatron_snow evaluate`
# (megatron_snow/evaluate/): EvalPlus 0.3.1 (HumanEval+, MBPP+), EvoEval 0.1.0 and
# BigCodeBench 0.2.5, each with --no-deps (which pyproject extras cannot say) plus
# exactly what their scoring code imports:
#   - evalplus' declared deps pull google-generativeai, which downgrades protobuf
#     below what tensorboard needs (tensorboard then fails to import);
#   - bigcodebench hard-requires the CUDA build of vllm (another torch);
#   - evoeval pins an older evalplus.
#   - BigCodeBench's tests also import a few small pure-Python libraries that its tasks'
#     `libs` field does not name (faker in 29 tasks, pytz, requests_mock, pyfakefs;
#     openpyxl, which pandas imports for Excel files):
#     installed at the versions of its Requirements/requirements-eval.txt (openpyxl: 3.1.5,
#     the oldest pandas 3 accepts, for its 3.1.2; seeded Faker
#     values are part of some expected outputs).
# Generation backends: openai (--server URL); vllm is used when importable (GPU nodes; not
# installed here: it is a CUDA build that pins its own torch).
#   - the libraries BigCodeBench's tasks run on (pandas, numpy, scipy, matplotlib) at the versions
#     megatron_snow/evaluate/known_failures.py was established with (BIGCODEBENCH_MADE_WITH): which
#     reference solutions fail depends on them, and tests/evaluate/test_canonical.py fails when the
#     installed versions differ. Change them only together with a full canonical check.
# Run it after `pip install -e .` (scripts/setup.sh): the evaluators also import the
# project's own dependencies (numpy, datasets, psutil, tqdm, transformers).
# Everything else at the versions of requirements/lock.txt (MEGATRON_SNOW_LOCK=/dev/null lifts it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=${MEGATRON_SNOW_LOCK:-requirements/lock.txt}
"$PY" -m pip install --quiet -c "$LOCK" "pandas==3.0.1" "numpy==2.4.6" "scipy==1.17.1" "matplotlib==3.11.2" \
  "openai>=1.0" appdirs fire multipledispatch tempdir termcolor \
  tree-sitter tree-sitter-python wget pqdm gradio-client e2b \
  "Faker==20.1.0" "pytz==2023.3.post1" "requests_mock==1.11.0" "pyfakefs==5.4.1" "openpyxl==3.1.5"
"$PY" -m pip install --quiet -c "$LOCK" --no-deps "evalplus==0.3.1" "evoeval==0.1.0" "bigcodebench==0.2.5"
"$PY" -c "import evalplus.evaluate, evoeval.evaluate, bigcodebench.evaluate, openai; print('evaluators ready: evalplus', evalplus.__version__, '| bigcodebench', bigcodebench.__version__)"
