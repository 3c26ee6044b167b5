"""Evaluation of a Hugging Face (Llama) checkpoint as the Arctic-SnowCoder paper reports it.

Greedy pass@1 on HumanEval+ and MBPP+ (EvalPlus, base and plus tests), EvoEval's
five default categories and BigCodeBench (complete split; full, and hard when
its data is present), scored by the benchmarks' own evaluators used as
libraries (``evalplus``, ``evoeval``, ``bigcodebench``; installed by
``scripts/install_eval.sh``).

Modules, one concern each:

- ``tasks``: which benchmark files, prompts (trailing newlines stripped), stop
  strings and how a completion becomes a solution;
- ``generate``: generation backends (``transformers`` CPU/GPU, vLLM, an
  OpenAI-compatible server), batched and greedy, with a progress bar;
- ``sandbox``: the limits every generated program runs under (own process,
  time, memory, no network, temporary directory; as root, mount and PID
  namespaces of its own: a read-only machine without the caller's home,
  project or credentials, only its own processes) and the one fix to evalplus
  0.3.1 (HumanEval/32);
- ``harness``: the adapters to the three evaluators, run in a separate lean
  process;
- ``paper`` / ``report``: the paper's table and ours beside it (JSON + markdown).

On disk, ``OUT/``: ``samples/<unit>.jsonl`` (EvalPlus samples format),
``results/<unit>.json`` (per-task statuses), ``results.json`` and
``results.md`` (the table, model, data versions and settings).
"""
