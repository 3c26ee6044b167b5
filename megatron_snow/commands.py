"""Every step of the recipe is one ``Command``: ``python -m megatron_snow STEP [--config FILE] [key=value ...]``.

A command is a record: its name, its config class (a dataclass; the fields are the settings, their help and
ranges on the fields), its run function ``run(cfg, args, comm)``, and the flags the step has always taken,
kept as aliases of config keys (``--samples FILE`` is ``samples=FILE``). One parser is built from the record
and one function maps errors to exit codes, so every step behaves alike: 0 done, 1 failure, 2 bad input or
settings (one line, naming the key), 130 interrupted. Config classes and run functions are named as
``"module:attribute"`` and imported only when their step runs: ``--help`` of a data step does not import
torch. ``tools/`` scripts, the step modules' ``main`` functions and ``pretrain_gpt.py`` call the same records.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from megatron_snow.config import ConfigError, load_config, settings_help


@dataclass(frozen=True)
class Alias:
    """A flag the step has always taken, standing for one config key.

    ``kind``: ``value`` (``--out DIR`` is ``out=DIR``), ``append`` (repeatable, a list), ``csv`` (``a,b`` is
    ``[a, b]``), ``true``/``false`` (a switch setting a bool), ``positional`` (``report RUN_DIR``)."""

    flag: str
    key: str
    kind: Literal["value", "append", "csv", "true", "false", "positional"] = "value"


@dataclass(frozen=True)
class Option:
    """A flag that is not a setting: it picks what the step does (``build-index --verify PREFIX``)."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    metavar: str | None = None


@dataclass(frozen=True)
class Command:
    """One step of the command line. ``config`` and ``run`` are objects or ``"module:attribute"`` names."""

    name: str
    summary: str  # one line in ``python -m megatron_snow --help``
    config: Any
    run: Any  # run(cfg, args, comm): args holds force/quiet, the Options and ``prog``; comm is the world
    aliases: tuple[Alias, ...] = ()
    options: tuple[Option, ...] = ()
    runner: bool = False  # a stage-runner step: --force (replace stale output) and --quiet (no progress bars)
    rest_into: str = ""  # key=value pairs naming a section of ``rest_config`` go under this dict field
    rest_config: Any = None  # ... (the converters: settings of the training config over the checkpoint's)
    prefix: str = "{prog}: error: "  # the error line's start (kept as each step has always printed it)
    bad_input: tuple[str, ...] = ()  # the step's own exceptions ("module:Class") that mean bad input: exit 2
    failures: tuple[str, ...] = ()  # the step's own exceptions printed as their message alone: exit 1
    comm: bool = True  # False: no data-step communicator (training makes its own process groups)
    traceback: bool = False  # unexpected errors keep their traceback (a training crash inside megatron-core)
    doc: str = ""  # --help's description; empty: the run function's module docstring

    def config_class(self) -> type:
        return _resolve(self.config)

    def run_function(self) -> Callable[..., Any]:
        return _resolve(self.run)

    def parser(self, prog: str | None = None) -> argparse.ArgumentParser:
        return build_parser(self, prog)

    def main(self, argv: list[str] | None = None, prog: str | None = None) -> int:
        """Parse, build the config (it checks itself), run; every error is one line and an exit code."""
        return run_one(self, sys.argv[1:] if argv is None else list(argv), prog or self.name)


def _resolve(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


class UsageError(Exception):
    """A bad flag or a missing argument: one line, exit 2 (argparse would print its usage block)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage and exits; one line instead
        raise UsageError(message)


_EXIT_CODES = "exit codes: 0 done, 1 failure, 2 bad input or settings (one line naming the key), 130 interrupted"


def _description(cmd: Command) -> str:
    """The run function's module docstring (its first paragraph and USAGE when the module has one)."""
    if cmd.doc:
        return cmd.doc
    run = cmd.run_function()
    module = sys.modules.get(getattr(run, "__module__", ""), None)
    doc = (module.__doc__ if module else None) or cmd.summary
    usage = getattr(module, "USAGE", None)
    return doc.split("\n\n")[0] + "\n\n" + usage if usage else doc


def build_parser(cmd: Command, prog: str | None = None) -> argparse.ArgumentParser:
    """The step's parser: ``--config``, its aliases and options, ``key=value``; ``--help`` lists every setting."""
    cls = cmd.config_class()
    epilog = "settings (key=value on the command line, or in the --config YAML):\n" + "\n".join(settings_help(cls))
    if cmd.rest_into:
        epilog += (f"\n  key=value pairs naming a section of {_resolve(cmd.rest_config).__name__} (e.g. "
                   f"model.rotary_base=500000) are kept in {cmd.rest_into}")
    epilog += "\n\n" + _EXIT_CODES
    ap = _Parser(prog=prog or f"python -m megatron_snow {cmd.name}", description=_description(cmd), epilog=epilog,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    flags = {a.flag for a in cmd.aliases}
    if "--config" not in flags:
        ap.add_argument("--config", metavar="FILE", help=f"YAML file of {cls.__name__} settings")
    if cmd.runner:
        ap.add_argument("--force", action="store_true",
                        help="replace existing output made with other settings or inputs (default: refuse)")
        ap.add_argument("--quiet", action="store_true", help="no progress bars")
    for a in cmd.aliases:
        dest = "alias_" + a.key.replace(".", "__")
        meaning = _field_help(cls, a.key)
        what = {"true": "=true", "false": "=false", "append": "=[...] (repeatable)", "csv": "=[a,b] (a,b)"}
        text = f"{a.key}{what.get(a.kind, '=VALUE')}" + (f": {meaning}" if meaning else "")
        if a.kind == "positional":
            ap.add_argument(dest, nargs="?", metavar=a.flag, help=text)
        elif a.kind in ("true", "false"):
            ap.add_argument(a.flag, dest=dest, action="store_true", help=text)
        else:
            ap.add_argument(a.flag, dest=dest, action="append" if a.kind == "append" else "store",
                            metavar=a.key.upper().replace(".", "_"), help=text)
    for o in cmd.options:
        ap.add_argument(o.flag, type=o.type, default=o.default, metavar=o.metavar, help=o.help)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="settings (listed below)")
    ap.set_defaults(config=None, force=False, quiet=False)
    return ap


def _field_help(cls: type, key: str) -> str:
    """A setting's help text (``setting(help=...)``), if it has one."""
    for f in dataclasses.fields(cls):
        if f.name == key:
            return f.metadata.get("help", "")
    return ""


def _field_type(cls: type, key: str) -> Any:
    tp: Any = cls
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return Any
        tp = typing.get_type_hints(tp).get(part, Any)
    return tp


def _is_text(tp: Any) -> bool:
    """A str setting (or an optional one): a flag's value stays text (``--name 123`` is the string "123")."""
    if tp is str:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)


def overrides_from(cmd: Command, cls: type, args: argparse.Namespace) -> list[str]:
    """The aliases given, as ``key=value`` pairs (before the explicit pairs, which win)."""
    out = []
    for a in cmd.aliases:
        value = getattr(args, "alias_" + a.key.replace(".", "__"), None)
        if value is None or (a.kind in ("true", "false") and not value):
            continue
        if a.kind == "positional" and _looks_like_override(value, cls):
            args.overrides.insert(0, value)  # `report run_dir=X`: the pair, not a directory named so
            continue
        if a.kind in ("true", "false"):
            out.append(f"{a.key}={a.kind}")
        elif a.kind == "append":
            out.append(f"{a.key}={json.dumps(value)}")
        elif a.kind == "csv":
            out.append(f"{a.key}={json.dumps([s.strip() for s in value.split(',') if s.strip()])}")
        else:
            out.append(f"{a.key}={json.dumps(value) if _is_text(_field_type(cls, a.key)) else value}")
    return out


def _looks_like_override(text: str, cls: type) -> bool:
    key = text.split("=", 1)[0]
    return "=" in text and key.split(".")[0] in {f.name for f in dataclasses.fields(cls)}


def _route_rest(cmd: Command, cls: type, overrides: list[str]) -> list[str]:
    """Pairs naming a section of ``cmd.rest_config`` go under ``cmd.rest_into`` (the converters' training
    settings); any other unknown key stays an unknown key of the step's own config."""
    if not cmd.rest_into:
        return overrides
    sections = {f.name for f in dataclasses.fields(_resolve(cmd.rest_config))}
    return [f"{cmd.rest_into}.{o}" if o.split("=", 1)[0].lstrip("-").split(".")[0] in sections else o
            for o in overrides]


def rest_overrides(tree: dict, prefix: str = "") -> list[str]:
    """A ``rest_into`` dict back as ``key=value`` pairs (what the converters apply to the training config)."""
    out = []
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out += rest_overrides(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={json.dumps(v)}")
    return out


def _exceptions(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    return tuple(_resolve(n) for n in names)


def run_one(cmd: Command, argv: list[str], prog: str) -> int:
    """The one place that maps errors to exit codes: bad input or settings 2, failure 1, interrupted 130.

    Under MPI (or torchrun for a data step) every rank computes the same config error and rank 0 says it;
    an error only some ranks meet ends the whole job through the communicator."""
    from megatron_snow.dist import Comm, get_comm
    from megatron_snow.records import RecordError
    from megatron_snow.stages.runner import StepError

    prefix = cmd.prefix.format(prog=prog)
    cls = cmd.config_class()
    bad = None  # a bad flag or bad settings: deterministic, the same on every rank
    try:  # before the communicator: --help and a bad flag need no MPI
        args = build_parser(cmd, prog if prog != cmd.name else None).parse_intermixed_args(argv)
        args.prog = prog
    except UsageError as e:
        bad = str(e)
    comm = get_comm() if cmd.comm else Comm(None)
    root = comm.is_root if cmd.comm else os.environ.get("RANK", "0") == "0"

    def say(msg: str) -> None:
        if root:
            print(f"{prefix}{msg}".replace("\n", " "), file=sys.stderr, flush=True)

    if bad is None:
        try:
            overrides = overrides_from(cmd, cls, args) + _route_rest(cmd, cls, list(args.overrides))
            cfg = load_config(cls, args.config, overrides)
        except ConfigError as e:
            bad = str(e)
    if bad is not None:
        say(bad)
        return 2
    if args.quiet and hasattr(cfg, "progress"):
        cfg.progress = False
    bad_input = (ConfigError, FileNotFoundError, RecordError, *_exceptions(cmd.bad_input))
    failures = _exceptions(cmd.failures)
    try:
        cmd.run_function()(cfg, args, comm)
    except StepError as e:  # agreed: raised on every rank with the same line
        say(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback (but see Command.traceback)
        code = 2 if isinstance(e, bad_input) else 1
        if code == 1 and cmd.traceback and not isinstance(e, failures):
            raise
        msg = str(e) if code == 2 or isinstance(e, failures) else f"{type(e).__name__}: {e}"
        if comm.size == 1:
            say(msg)
            return code
        comm.fail(f"{prefix}{msg}".replace("\n", " "), code=code)  # maybe one rank only: end the job
    return 0


# The recipe's steps, in its order. Add a step: a config class, a run function, one entry here.
_EVAL_ERRORS = "megatron_snow.evaluate."
_TRAIN = "megatron_snow.training.config:TrainConfig"
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("fetch-benchmarks", "download the full benchmark sets (online)",
            "megatron_snow.benchmarks_fetch:FetchConfig", "megatron_snow.benchmarks_fetch:cli_run",
            aliases=(Alias("--out", "out"), Alias("--only", "only"), Alias("--mirror", "mirror"),
                     Alias("--force", "force", "true")),
            prefix="{prog}: ", bad_input=("megatron_snow.benchmarks_fetch:FetchError",)),
    Command("phase1", "phase-1 data: ingest, filter, dedup, decontaminate, PII, group",
            "megatron_snow.phase1.pipeline:Phase1Config", "megatron_snow.phase1.cli:cli_run",
            aliases=(Alias("--stages", "stages", "csv"),), runner=True),
    Command("train-tokenizer", "SentencePiece BPE tokenizer for code",
            "megatron_snow.tokenization.train:TrainTokenizerConfig", "megatron_snow.tokenization.train:cli_run",
            aliases=(Alias("--input", "inputs", "append"), Alias("--output", "output")), runner=True),
    Command("build-index", "documents -> Megatron .bin/.idx (+ --verify)",
            "megatron_snow.tokenization.build_index:BuildIndexConfig",
            "megatron_snow.tokenization.build_index:cli_run",
            aliases=(Alias("--input", "inputs", "append"), Alias("--tokenizer", "tokenizer"),
                     Alias("--output-prefix", "output_prefix"), Alias("--workers", "workers"),
                     Alias("--dtype", "dtype")),
            options=(Option("--verify", "check an existing index instead of building one", metavar="PREFIX"),
                     Option("--sample", "with --verify: documents decoded and compared to source", int, 16)),
            runner=True),
    Command("make-tiny-encoder", "a small random-init BERT for offline runs",
            "megatron_snow.phase2.tiny_encoder:TinyEncoderConfig", "megatron_snow.phase2.tiny_encoder:cli_run",
            runner=True),
    Command("train-annotator", "phase-2 quality annotator (encoder + head)",
            "megatron_snow.phase2.annotator:TrainAnnotatorConfig", "megatron_snow.phase2.annotator:cli_run",
            runner=True),
    Command("annotate", "score every document with the annotator",
            "megatron_snow.phase2.scoring:AnnotateConfig", "megatron_snow.phase2.scoring:cli_run", runner=True),
    Command("alignment", "annotator ROC-AUC per benchmark (paper Fig. 2)",
            "megatron_snow.phase2.alignment:AlignmentConfig", "megatron_snow.phase2.alignment:cli_run",
            runner=True),
    Command("select", "phase-2 data: top-scored per language, blend file",
            "megatron_snow.phase2.selection:SelectConfig", "megatron_snow.phase2.selection:cli_run", runner=True),
    Command("synthesize", "phase-3 synthetic code files through an OpenAI-compatible server",
            "megatron_snow.synthesis.generate:SynthesizeConfig", "megatron_snow.synthesis.generate:cli_run",
            runner=True),
    Command("mix", "phase-3 blend: synthetic + phase-2, Python ~50%, token budget",
            "megatron_snow.synthesis.mixing:MixConfig", "megatron_snow.synthesis.mixing:cli_run", runner=True),
    Command("model-info", "parameters, FLOPs/token (Megatron's formula), memory per GPU",
            "megatron_snow.training.model_info:ModelInfoConfig", "megatron_snow.training.model_info:cli_run",
            aliases=(Alias("--world-size", "world_size"), Alias("--attention", "attention"),
                     Alias("--gpu-memory-gib", "gpu_memory_gib"), Alias("--cpu", "cpu", "true")),
            prefix="error: ", comm=False),
    Command("train", "pretrain (phases 1-3) with megatron-core; the same under torchrun",
            _TRAIN, "megatron_snow.training.train_cli:cli_run",
            prefix="error: ", comm=False, traceback=True),
    Command("convert-to-hf", "checkpoint -> Hugging Face Llama directory (+ tokenizer)",
            "megatron_snow.convert.to_hf:ToHFConfig", "megatron_snow.convert.to_hf:cli_run",
            aliases=(Alias("--load", "load"), Alias("--save", "save"), Alias("--tokenizer", "tokenizer"),
                     Alias("--config", "train_config"), Alias("--dtype", "dtype"),
                     Alias("--max-shard-mb", "max_shard_mb"), Alias("--no-progress", "progress", "false")),
            rest_into="train", rest_config=_TRAIN, prefix="error: ", comm=False),
    Command("convert-from-hf", "Hugging Face Llama -> checkpoint to start a phase from",
            "megatron_snow.convert.from_hf:FromHFConfig", "megatron_snow.convert.from_hf:cli_run",
            aliases=(Alias("--load", "load"), Alias("--save", "save"), Alias("--dtype", "dtype"),
                     Alias("--no-progress", "progress", "false")),
            rest_into="train", rest_config=_TRAIN, prefix="error: ", comm=False),
    Command("evaluate", "HumanEval+, MBPP+, EvoEval, BigCodeBench pass@1 beside the paper's table",
            "megatron_snow.evaluate.cli:EvalConfig", "megatron_snow.evaluate.cli:cli_run",
            aliases=(Alias("--model", "model"), Alias("--server", "server"), Alias("--samples", "samples"),
                     Alias("--benchmarks", "benchmarks"), Alias("--benchmarks-dir", "benchmarks_dir"),
                     Alias("--out", "out"), Alias("--name", "name"), Alias("--limit", "limit")),
            prefix="{prog}: ", comm=False,
            bad_input=(_EVAL_ERRORS + "cli:InputError", _EVAL_ERRORS + "tasks:TaskError",
                       _EVAL_ERRORS + "score:SamplesError"),
            failures=(_EVAL_ERRORS + "sandbox:ScoringError", _EVAL_ERRORS + "cli:GenerationError",
                      _EVAL_ERRORS + "sandbox:IsolationUnavailable")),
    Command("ablation", "the paper's ablations: grouping, data selection; held-out loss",
            "megatron_snow.ablation:AblationConfig", "megatron_snow.ablation:cli_run", comm=False,
            failures=("builtins:RuntimeError",)),
    Command("report", "report.md and a self-contained report.html for a run directory",
            "megatron_snow.report:ReportConfig", "megatron_snow.report:cli_run",
            aliases=(Alias("RUN_DIR", "run_dir", "positional"), Alias("--out", "out")), comm=False),
)}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: python -m megatron_snow STEP [--help] [--config FILE] [key=value ...]", "", "steps:"]
    lines += [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS.values()]
    return "\n".join(lines + ["", _EXIT_CODES])


def run_command(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow STEP ...``: the step's record parses and runs the rest."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"megatron_snow: error: unknown step {argv[0]!r} (steps: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]].main(argv[1:])
