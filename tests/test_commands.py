"""One command surface: every registered step parses with one parser, lists every setting in ``--help``,
and answers a bad key, a wrong type and an out-of-range value with exit 2 and one line naming the key;
flags are aliases of config keys; ``train`` is a step (one real iteration through ``python -m``)."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from megatron_snow.commands import COMMANDS, overrides_from, run_command
from megatron_snow.config import _parse_interval, load_config

REPO = Path(__file__).resolve().parents[1]


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "(required)"


def _leaves(cls: type, prefix: str = ""):
    """(dotted key, field, type, range spec) for every setting, nested configs included (read from the
    dataclasses here, not from the help text under test)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, key + ".")
        else:
            yield key, f, tp, f.metadata.get("range")


def _outside(spec: str):
    lo, hi, _, _ = _parse_interval(spec)
    return lo - 1 if math.isfinite(lo) else hi + 1


# configs whose ranges are still checked in __post_init__ rather than declared on the field
def _one_error_line(capsys, argv: list[str], key: str) -> str:
    capsys.readouterr()
    assert run_command(argv) == 2, argv
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and key in lines[0], (argv, lines)
    return lines[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_step_lists_its_settings_and_refuses_bad_ones_in_one_line(name, capsys):
    cmd = COMMANDS[name]
    cls = cmd.config_class()
    with pytest.raises(SystemExit) as e:
        run_command([name, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    leaves = list(_leaves(cls))
    for key, f, _, _ in leaves:
        assert f"  {key} = {_default(f)!r}" in text, (name, key)

    # required keys get a value, so that the check under test is the one that fails
    required = [f"{k}=x" for k, f, _, _ in leaves if _default(f) == "(required)"]
    _one_error_line(capsys, [name, *required, "no_such_key=1"], "no_such_key")
    key = next(k for k, _, tp, _ in leaves if tp in (int, float, bool, str))
    _one_error_line(capsys, [name, *required, f"{key}=[1, 2]"], key)
    ranged = [(k, _outside(spec)) for k, _, tp, spec in leaves if spec and tp in (int, float)]
    if not ranged:  # no numeric setting, so nothing to be out of range
        assert name in ("fetch-benchmarks", "report", "convert-from-hf"), name
        return
    key, value = ranged[0]
    _one_error_line(capsys, [name, *required, f"{key}={value}"], key)


@pytest.mark.parametrize("name, argv, expected", [
    ("evaluate", ["--samples", "s.jsonl", "--out", "o", "--limit", "3", "--name", "123", "limit=4"],
     {"samples": "s.jsonl", "out": "o", "limit": 4, "name": "123"}),
    ("build-index", ["--input", "a", "--input", "b", "--workers", "2", "--output-prefix", "p"],
     {"inputs": ["a", "b"], "workers": 2, "output_prefix": "p"}),
    ("phase1", ["--stages", "ingest,filter"], {"stages": ["ingest", "filter"]}),
    ("report", ["run", "--out", "r.md"], {"run_dir": "run", "out": "r.md"}),
    ("report", ["run_dir=run"], {"run_dir": "run"}),
    ("fetch-benchmarks", ["--only", "humaneval", "--force"], {"only": "humaneval", "force": True}),
    ("model-info", ["--world-size", "8", "--cpu", "model.num_layers=4"],
     {"world_size": 8, "cpu": True}),
    ("convert-to-hf", ["--load", "c", "--save", "h", "--config", "t.yaml", "--no-progress", "--max-shard-mb", "5",
                       "model.rotary_base=500000"],
     {"load": "c", "save": "h", "train_config": "t.yaml", "progress": False, "max_shard_mb": 5.0,
      "train": {"model": {"rotary_base": 500000}}}),
    ("convert-from-hf", ["--load", "h", "--save", "c", "--dtype", "bf16", "parallel.tensor_model_parallel_size=2"],
     {"load": "h", "save": "c", "dtype": "bf16", "train": {"parallel": {"tensor_model_parallel_size": 2}}}),
])
def test_flags_are_aliases_of_config_keys(name, argv, expected):
    from megatron_snow.commands import _route_rest

    cmd = COMMANDS[name]
    cls = cmd.config_class()
    args = cmd.parser().parse_intermixed_args(argv)
    cfg = load_config(cls, args.config, overrides_from(cmd, cls, args) + _route_rest(cmd, cls, args.overrides))
    assert {k: getattr(cfg, k) for k in expected} == expected
    if name == "model-info":
        assert cfg.model.num_layers == 4


def test_unknown_step_and_bad_flag_are_one_line(capsys):
    assert run_command(["no-such-step"]) == 2
    assert capsys.readouterr().err.strip().startswith("megatron_snow: error: unknown step 'no-such-step'")
    assert run_command(["report", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-such-flag" in err[0], err


def test_train_is_a_step(tmp_path):
    """``python -m megatron_snow train`` runs one real iteration of the tiny model, as pretrain_gpt.py does."""
    from tests.training.training_helpers import VOCAB, _env, tiny_documents, tiny_overrides

    from megatron_snow.indexed import write_indexed_dataset

    prefix = tmp_path / "data" / "tiny"
    prefix.parent.mkdir()
    write_indexed_dataset(prefix, tiny_documents(), VOCAB)
    over = tiny_overrides(prefix, tmp_path, **{"training.train_iters": 1, "training.eval_iters": 1})
    run = subprocess.run([sys.executable, "-m", "megatron_snow", "train", *over], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "1"
    bad = subprocess.run([sys.executable, "-m", "megatron_snow", "train", *over, "data.seq_length=0"], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: data.seq_length=0 is out of range >= 1"]
