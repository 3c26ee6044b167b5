"""``python -m megatron_snow evaluate`` (also ``tools/evaluate.py``): generate, score, tabulate.

    # a converted checkpoint, every benchmark of the paper's table
    python tools/evaluate.py --model HF_DIR --benchmarks humaneval+,mbpp+,evoeval,bigcodebench --out DIR
    # through an OpenAI-compatible server (vLLM, SGLang, transformers serve), e.g. `vllm serve HF_DIR --port 8000`
    python tools/evaluate.py --server http://HOST:8000/v1 --benchmarks humaneval+ --out DIR
    # completions made elsewhere (EvalPlus samples: task_id + solution or completion)
    python tools/evaluate.py --samples FILE.jsonl --benchmarks humaneval+ --out DIR

Flags are shortcuts for keys of ``EvalConfig``; any key can also be given as
``key=value`` (``generation.batch_size=32``, ``sandbox.memory_mb=16384``) or in
``--config FILE.yaml``. Benchmark files come from ``--benchmarks-dir``, else
``$MEGATRON_SNOW_BENCHMARKS``, else ``python -m megatron_snow
fetch-benchmarks``'s download, else the copies shipped in the package.

Sandbox (``sandbox.*`` keys). Generated code runs in a separate process
without network, under time, memory, file-size and process limits, and in
namespaces of its own made by ``sandbox.mechanism``: ``namespaces`` (mount
and PID namespaces made here; needs root), ``bwrap`` (bubblewrap, for any
user: Debian package bubblewrap, user namespaces enabled), ``auto`` (the
default: namespaces as root, bwrap otherwise). Under either this is
guaranteed: the machine's files are read-only except the program's own
temporary directory (a tmpfs of ``sandbox.tmp_size_mb``); the home
directory, the project checkout and ``sandbox.deny`` (default ~/.ssh,
~/.gnupg, ~/.netrc, ~/.cache/huggingface, ~/.aws, ~/.config/gcloud,
~/.azure, ..., /home, /etc/shadow, /etc/ssh, /run/secrets,
/var/run/secrets) are not visible; its environment holds none of the
caller's variables but PATH, the locale, the Python environment's and the
evaluators' own; it sees and can signal only its own processes (its own
/proc), which all end with it; its processes are counted for
``sandbox.max_processes`` alone; it cannot make what it sees writable, trace
other processes, load modules or raise its limits. As root it runs as a uid
of its own keeping root's file access; not root (bwrap), as the calling
user without any capability. Not guaranteed: total memory over a sample's
processes (the limit is per process), CPU time beyond the time limits,
secrecy of files outside the hidden paths (a sample reads what root, or the
calling user, can: add such paths to ``sandbox.deny``), kernel exploits
(user namespaces stay open to samples: a larger kernel surface). Where the
chosen mechanism cannot isolate, the run stops with one line unless
``sandbox.allow_unisolated=true`` (``sandbox.mechanism=none`` needs it
too); results.json records the isolation used (``sandbox_isolation``:
namespaces, bwrap, or none and why).

Exit codes: 0 done, 1 failure (generation or an evaluator failed, or no isolation), 2 bad input.
"""
from __future__ import annotations

import datetime
import gc
import json
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from megatron_snow.config import Config, setting, to_dict
from megatron_snow.evaluate.generate import (DEFAULT_MAX_NEW_TOKENS, BackendUnavailable, GenerationConfig,
                                             make_backend, require_vllm)
from megatron_snow.evaluate.report import build_report, to_markdown, write_report
from megatron_snow.evaluate.sandbox import SandboxConfig, check_isolation
from megatron_snow.evaluate.score import read_samples, score_unit
from megatron_snow.evaluate.tasks import (Unit, data_version, load_problems, prompt_for,
                                          select_units, stop_strings, unit_path)

PAPER_BENCHMARKS = "humaneval+,mbpp+,evoeval,bigcodebench"


@dataclass
class EvalConfig(Config):
    model: str = setting("", help="a Hugging Face model directory (e.g. the converter's output)")
    server: str = setting("", help="or an OpenAI-compatible server's API root, http://HOST:PORT/v1")
    samples: str = setting(
        "", help="or completions to score: a JSONL file, or a directory of <unit>.jsonl (an earlier OUT/samples)")
    benchmarks: str = setting(PAPER_BENCHMARKS, help="benchmarks (or units such as evoeval/difficult), comma-separated")
    benchmarks_dir: str = setting("", help="empty: the resolver's order (see megatron_snow.benchmarks)")
    out: str = setting("", help="output directory")
    name: str = setting("", help="the model's name in the table; empty: from --model / server / samples")
    tokens: str = setting("-", help="training tokens, for the table's \"tokens\" column")
    limit: int = setting(
        0, help="> 0: only the first N tasks of each unit (smoke tests; not comparable with the paper)", range=">= 0")
    cache_dir: str = setting("", help="the evaluators' caches (reference outputs and times); empty: their defaults")
    generation: GenerationConfig = setting(help="how completions are generated", factory=GenerationConfig)
    sandbox: SandboxConfig = setting(help="how samples are run", factory=SandboxConfig)


class InputError(ValueError):
    """Bad input: one line, exit code 2."""


class GenerationError(RuntimeError):
    """The model or server failed to generate: one line, exit code 1."""


def _check(cfg: EvalConfig) -> None:
    sources = [k for k in ("model", "server", "samples") if getattr(cfg, k)]
    if len(sources) != 1:
        got = f" (got {', '.join(sources)})" if sources else ""
        raise InputError("give exactly one of --model, --server, --samples" + got)
    if not cfg.out:
        raise InputError("--out is required")
    if cfg.model and not (Path(cfg.model) / "config.json").is_file():
        raise InputError(f"--model {cfg.model}: not a Hugging Face model directory (no config.json)")
    if cfg.samples and not Path(cfg.samples).exists():
        raise InputError(f"--samples {cfg.samples}: not found")
    if cfg.model and cfg.generation.backend == "vllm":
        try:
            require_vllm()
        except BackendUnavailable as e:
            raise InputError(str(e)) from None
    check_isolation(cfg.sandbox)  # before hours of generation: stop now if samples cannot be isolated


def _assign_samples(cfg: EvalConfig, units: list[Unit], problems: dict[str, dict]) -> tuple[dict, dict]:
    """Samples per unit from a file (by ``unit`` field, else by task id) or a directory of ``<unit>.jsonl``."""
    per_unit: dict[str, list[dict]] = {u.name: [] for u in units}
    aside: dict[str, int] = {}
    src = Path(cfg.samples)
    if src.is_dir():
        for u in units:
            f = src / f"{u.file_name}.jsonl"
            if f.is_file():
                per_unit[u.name] = read_samples(f)
        return per_unit, aside
    for s in read_samples(src):
        if isinstance(s.get("unit"), str):
            if s["unit"] not in per_unit:
                aside["unit_not_selected"] = aside.get("unit_not_selected", 0) + 1
                continue
            per_unit[s["unit"]].append(s)
            continue
        targets = [u.name for u in units if s.get("task_id") in problems[u.name]]
        if len(targets) > 1:
            raise InputError(f"{src}: task id {s['task_id']!r} is in {', '.join(targets)}: give each sample a "
                             "\"unit\" field (e.g. \"evoeval/difficult\") or select one of them with --benchmarks")
        if not targets:
            aside["unknown_task"] = aside.get("unknown_task", 0) + 1
            continue
        per_unit[targets[0]].append(s)
    return per_unit, aside


def _generate(cfg: EvalConfig, units: list[Unit], problems: dict[str, dict], out: Path) -> tuple[dict, dict]:
    backend = make_backend(cfg.generation, model_dir=cfg.model or None, server=cfg.server or None)
    per_unit, used = {}, {"backend": backend.name, "max_new_tokens": {}}
    if hasattr(backend, "device"):
        used.update(device=backend.device, dtype=backend.dtype, batch_size=backend.batch_size,
                    **backend.determinism())
    if backend.name == "vllm":
        used.update(dtype=backend.dtype, tensor_parallel_size=cfg.generation.tensor_parallel_size)
    if hasattr(backend, "model") and isinstance(backend.model, str):
        used.update(server=cfg.server, server_model=backend.model, concurrency=backend.concurrency)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    for u in units:
        tids = list(problems[u.name])
        prompts = [prompt_for(u, problems[u.name][t]) for t in tids]
        max_new = cfg.generation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[u.harness]
        used["max_new_tokens"][u.name] = max_new
        completions = backend.generate(prompts, stop_strings(u), max_new, desc=f"generating {u.name}")
        samples = [{"task_id": t, "unit": u.name, "completion": c, "solution": p + c}
                   for t, p, c in zip(tids, prompts, completions)]
        with open(out / "samples" / f"{u.file_name}.jsonl", "w") as f:
            f.writelines(json.dumps(s) + "\n" for s in samples)
        per_unit[u.name] = samples
    del backend
    gc.collect()
    return per_unit, used


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("evalplus", "evoeval", "bigcodebench", "transformers", "torch", "vllm", "openai"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def run(cfg: EvalConfig) -> dict:
    """The whole evaluation; returns the report (also written under ``cfg.out``)."""
    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bdir = cfg.benchmarks_dir or None
    units, skipped = [], {}
    for u in select_units(cfg.benchmarks):
        if unit_path(u, bdir) is None and u.optional:
            skipped[u.name] = f"{u.stem}.jsonl.gz not in the benchmark directory (fetch-benchmarks downloads it)"
            continue
        units.append(u)
    problems = {u.name: load_problems(u, bdir, limit=cfg.limit or None) for u in units}

    if cfg.samples:
        per_unit, aside = _assign_samples(cfg, units, problems)
        gen_used = {"backend": "none (given samples)", "samples": str(Path(cfg.samples).resolve())}
    else:
        try:
            per_unit, gen_used = _generate(cfg, units, problems, out)
        except Exception as e:  # model loading, CUDA, server connection: name it in one line
            msg = str(e).splitlines()[0] if str(e) else ""
            raise GenerationError(f"generation failed: {type(e).__name__}: {msg}") from e
        aside = {}

    (out / "results").mkdir(parents=True, exist_ok=True)
    results = {}
    for u in units:
        r = score_unit(u, problems[u.name], per_unit[u.name], bdir, cfg.sandbox, cache_dir=cfg.cache_dir or None)
        results[u.name] = r
        (out / "results" / f"{u.file_name}.json").write_text(json.dumps(
            {"unit": u.name, "scores": r.scores, "set_aside": r.set_aside, "reference": r.reference,
             "isolation": r.isolation, "network": r.network, "tasks": r.tasks}, indent=1) + "\n")
        print(f"{u.name}: pass@1 {r.scores['pass@1']:.1f}"
              + (f" (base {r.scores['base_pass@1']:.1f})" if "base_pass@1" in r.scores else "")
              + f" on {r.n_tasks} tasks", file=sys.stderr)

    name = cfg.name or (Path(cfg.model).name if cfg.model else Path(cfg.samples).stem if cfg.samples
                        else gen_used.get("server_model") or cfg.server)
    model = {"name": name, "tokens": cfg.tokens, "model_dir": str(Path(cfg.model).resolve()) if cfg.model else None,
             "server": cfg.server or None, "samples": cfg.samples or None}
    settings = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "decoding": "greedy, one sample per task (pass@1)",
        "prompts": ("benchmark prompt with trailing newlines stripped; "
                    "completion = text up to the evaluator's stop strings"),
        "stop_strings": {u.name: stop_strings(u) for u in units} if not cfg.samples else None,
        "bigcodebench": {"split": "complete", "calibrated": True},
        "evoeval": "mean pass@1 over difficult, creative, subtle, combine, tool_use",
        "subset": f"first {cfg.limit} tasks per unit" if cfg.limit else None,
        "samples_set_aside": aside,
        "sandbox_isolation": {name: r.isolation for name, r in results.items()},
        "generation": gen_used, "config": to_dict(cfg), "versions": _versions(),
    }
    data = {u.name: data_version(u, bdir) for u in units}
    report = build_report(results, model, data, settings, skipped)
    j, m = write_report(report, out)
    print(to_markdown(report).split("\n## Per unit")[0])
    print(f"wrote {j} and {m}", file=sys.stderr)
    return report


def cli_run(cfg: EvalConfig, args, comm) -> None:
    """The ``evaluate`` command."""
    run(cfg)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow evaluate`` / ``tools/evaluate.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["evaluate"].main(argv)
