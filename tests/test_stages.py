"""The stage runner, through a step defined in this file alone (no other file names it).

Run as a script (``python tests/test_stages.py --config ...``), this file is that step's command line;
the MPI tests start it under ``mpiexec -n 2``.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from megatron_snow.config import Config, setting
from megatron_snow.dist import Comm
from megatron_snow.funnel import Funnel
from megatron_snow.records import CodeRecord, ShardedWriter, iter_records, read_manifest
from megatron_snow.stages import (
    RANKS_FILE, ArtefactStep, RecordStep, StaleOutputError, StepError, UnitResult, is_complete, run_step,
)
from megatron_snow.stages.cli import run_cli

HERE = Path(__file__).resolve()


@dataclass
class UpperSettings(Config):
    input: str = setting("", help="records dataset to read")
    output: str = setting("upper_out", help="where the step writes")
    min_chars: int = setting(10, help="shorter files are set aside as 'short'", range="[0, 1000000]")
    fail_on: str = setting("", help="a record id whose unit raises (to test errors on one rank)")


class Upper(RecordStep):
    name = "upper"

    def __init__(self, settings: UpperSettings):
        self.settings, self.input_dir = settings, Path(settings.input)

    def fingerprint_settings(self):
        return {"min_chars": self.settings.min_chars}

    def map(self, rec):
        if rec.id == self.settings.fail_on:
            raise ValueError(f"boom at {rec.id}")
        if len(rec.content) < self.settings.min_chars:
            return None, "short", {}
        rec.content = rec.content.upper()
        return rec, None, {}


class Lossy(Upper):
    """A broken step: loses the first record of every unit without counting it."""

    name = "lossy"

    def process(self, ctx, index, unit):
        res = super().process(ctx, index, unit)
        lost = res.kept.pop(0)
        f = Funnel(self.name)
        for lang, names in res.funnel.to_dict()["languages"].items():
            for k, (docs, nbytes) in names.items():
                f._add(lang, k, nbytes, docs - (1 if k in ("in", "kept") and lang == lost.language else 0))
        return UnitResult(res.kept, res.dropped, f)


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, prog="upper", doc="Upper-case every file (a test step).", config_cls=UpperSettings,
                   run=lambda cfg, args, comm: run_step(Upper(cfg), cfg.output, comm, force=args.force,
                                                        progress=False))


def make_input(d: Path, n: int = 23, per_shard: int = 4, salt: str = "") -> Path:
    w = ShardedWriter(d, records_per_shard=per_shard)
    for i in range(n):
        w.add(CodeRecord(id=f"r{i}", content=f"value_{i} = {i}{salt}\n" * (i % 3), language=("python", "go")[i % 2]))
    w.close()
    return d


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RANKS_FILE}


def test_the_package_docstring_example_runs_as_written(tmp_path, monkeypatch):
    """The example in ``megatron_snow.stages``' docstring is the whole contract of a records step: run it
    as it stands (its input at the relative path it names) and it keeps, drops and accounts."""
    import megatron_snow.stages as stages

    doc = stages.__doc__
    start = doc.index("Writing a step")
    code = textwrap.dedent(doc[doc.index("::\n", start) + 3:doc.index("\nA step over other units", start)])
    monkeypatch.chdir(tmp_path)
    make_input(tmp_path / "phase1" / "06_pii")
    scope = {"__name__": "stages_docstring_example"}
    exec(compile(code, "megatron_snow/stages/__init__.py (docstring)", "exec", dont_inherit=True), scope)
    funnel = scope["funnel"]
    assert funnel.total("in")[0] == 23 and funnel.total("kept")[0] == 15 and funnel.reasons() == {"short": 8}
    assert is_complete(tmp_path / "out" / "upper") and read_manifest(tmp_path / "out" / "upper")["records"] == 15
    assert all(r.content == r.content.upper() for r in iter_records(tmp_path / "out" / "upper"))


def test_a_step_defined_in_one_file_runs_resumes_and_accounts(tmp_path):
    inp = make_input(tmp_path / "in")
    out = tmp_path / "out"
    cfg = UpperSettings(input=str(inp), output=str(out))
    funnel = run_step(Upper(cfg), out, Comm(None), progress=False)
    kept = list(iter_records(out))
    assert funnel.total("in")[0] == 23 and funnel.total("kept")[0] == len(kept) == read_manifest(out)["records"]
    assert funnel.reasons() == {"short": 23 - len(kept)} and len(kept) == 15
    assert all(r.content == r.content.upper() and r.content for r in kept)
    assert json.loads((out / RANKS_FILE).read_text())["ranks"][0]["units"] == list(range(6))
    # temp files of a killed write go; finished units are not redone
    (out / ".part-00001.jsonl.gz.tmp-424242").write_bytes(b"half")
    (out / "manifest.json").unlink()
    (out / "_work" / "unit-00002.json").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    run_step(Upper(cfg), out, Comm(None), progress=False)
    assert not list(out.glob(".*.tmp-*"))
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    assert [k for k in stamps if stamps[k] != again[k]] == ["part-00002.jsonl.gz"]
    assert json.loads((out / RANKS_FILE).read_text())["ranks"][0]["units"] == [2]


def test_other_settings_or_other_input_content_is_refused_and_force_replaces(tmp_path):
    inp = make_input(tmp_path / "in")
    out = tmp_path / "out"
    run_step(Upper(UpperSettings(input=str(inp))), out, Comm(None), progress=False)
    with pytest.raises(StaleOutputError, match=r"other settings \(min_chars: 10 -> 5\); re-run with --force"):
        run_step(Upper(UpperSettings(input=str(inp), min_chars=5)), out, Comm(None), progress=False)
    # same path, other content (a re-made input): refused too
    import shutil

    shutil.rmtree(inp)
    make_input(inp, salt="  # changed")
    with pytest.raises(StaleOutputError, match=r"other inputs \(input: "):
        run_step(Upper(UpperSettings(input=str(inp))), out, Comm(None), progress=False)
    f = run_step(Upper(UpperSettings(input=str(inp))), out, Comm(None), progress=False, force=True)
    assert all("CHANGED" in r.content for r in iter_records(out)) and f.total("in")[0] == 23
    # a folder of unknown origin is not overwritten either
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StaleOutputError, match="unknown origin"):
        run_step(Upper(UpperSettings(input=str(inp))), tmp_path / "other", Comm(None), progress=False)


def test_shard_compresslevel_changes_bytes_not_records_and_is_refused_when_changed(tmp_path):
    """A step's gzip level: the same records (decompressed lines) at any level, the default (6) keeps the
    fingerprint it always had, and another level is a setting, so resuming with a changed one is refused."""
    inp = make_input(tmp_path / "in", n=60, per_shard=30)
    outs = {}
    for level in (6, 1):
        step = Upper(UpperSettings(input=str(inp)))
        step.shard_compresslevel = level
        run_step(step, tmp_path / f"l{level}", Comm(None), progress=False)
        outs[level] = tmp_path / f"l{level}"
    shards = sorted(p.relative_to(outs[6]) for p in outs[6].rglob("*.jsonl.gz"))
    assert shards == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*.jsonl.gz")) and shards
    assert all(gzip.decompress((outs[6] / s).read_bytes()) == gzip.decompress((outs[1] / s).read_bytes())
               for s in shards)
    assert any((outs[6] / s).read_bytes() != (outs[1] / s).read_bytes() for s in shards)
    assert "shard_compresslevel" not in (outs[6] / "step.json").read_text()
    step = Upper(UpperSettings(input=str(inp)))
    step.shard_compresslevel = 1
    with pytest.raises(StaleOutputError, match=r"other settings \(shard_compresslevel: '<unset>' -> 1\)"):
        run_step(step, outs[6], Comm(None), progress=False)


def test_a_step_that_loses_records_fails_loudly(tmp_path):
    inp = make_input(tmp_path / "in")
    with pytest.raises(StepError, match=r"lossy: accounting: 17 records in but the input .* holds 23"):
        run_step(Lossy(UpperSettings(input=str(inp))), tmp_path / "out", Comm(None), progress=False)


def test_damaged_input_shards_are_counted_or_refused(tmp_path):
    inp = make_input(tmp_path / "in")
    # a shard cut short: the readable lines go on, the lost tail is counted from the manifest entry
    p = inp / "part-00001.jsonl.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw, mtime=0)[:-12])
    f = run_step(Upper(UpperSettings(input=str(inp))), tmp_path / "out", Comm(None), progress=False)
    assert f.total("in")[0] == 23 and f.reasons()["corrupt_gzip"] >= 1
    bad = [r for r in iter_records(tmp_path / "out" / "dropped") if r.meta["dropped"]["reason"] == "corrupt_gzip"]
    assert len(bad) == 1 and bad[0].meta["dropped"]["file"].endswith("part-00001.jsonl.gz")
    # a manifest that under-counts an intact shard: refused, naming the shard
    m = json.loads((inp / "manifest.json").read_text())
    m["shards"][3]["records"] -= 1
    m["records"] -= 1
    (inp / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StepError, match=r"part-00003.jsonl.gz holds 4 records but its manifest says 3"):
        run_step(Upper(UpperSettings(input=str(inp))), tmp_path / "out2", Comm(None), progress=False)


def test_help_lists_every_setting_with_default_meaning_and_range(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "min_chars = 10    shorter files are set aside as 'short'  [range [0, 1000000]]" in text
    assert "input = ''    records dataset to read" in text and "--force" in text
    assert main(["min_chars=-3"]) == 2
    assert capsys.readouterr().err.strip() == "upper: error: min_chars=-3 is out of range [0, 1000000]"


def test_malformed_yaml_is_one_line_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("input: a\nmin_chars: [1, 2\noutput: b\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"upper: error: {bad}:3:") and "malformed YAML" in err and "\n" not in err


def _mpi(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MEGATRON_SNOW_NO_MPI"}
    return subprocess.run(["mpiexec", "-n", "2", sys.executable, str(HERE), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.mpi
def test_two_ranks_same_bytes_every_rank_reports(tmp_path):
    inp = make_input(tmp_path / "in")
    run_step(Upper(UpperSettings(input=str(inp))), tmp_path / "one", Comm(None), progress=False)
    p = _mpi([f"input={inp}", f"output={tmp_path / 'two'}"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    ranks = json.loads((tmp_path / "two" / RANKS_FILE).read_text())
    assert ranks["world_size"] == 2 and [r["rank"] for r in ranks["ranks"]] == [0, 1]
    assert [r["world_size"] for r in ranks["ranks"]] == [2, 2]
    assert ranks["ranks"][0]["units"] == [0, 2, 4] and ranks["ranks"][1]["units"] == [1, 3, 5]


@pytest.mark.mpi
def test_an_error_on_one_rank_ends_every_rank_with_one_line(tmp_path):
    inp = make_input(tmp_path / "in")
    # r5 is in unit 1, which rank 1 runs
    p = _mpi([f"input={inp}", f"output={tmp_path / 'out'}", "fail_on=r5"], tmp_path)
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert lines == [f"upper: error: upper: unit 1 ({inp / 'part-00001.jsonl.gz'}): ValueError: boom at r5"], lines
    assert not (tmp_path / "out" / "manifest.json").exists()
    # and stale output is refused on both ranks with exit 2
    p = _mpi([f"input={inp}", f"output={tmp_path / 'out'}", "min_chars=3"], tmp_path)
    assert p.returncode == 2 and p.stderr.count("was made with other settings (min_chars: 10 -> 3)") == 1


class Concat(Upper, ArtefactStep):
    """An artefact step (its output is one text file, not a records dataset): each unit writes a part
    under _work/ (on forked workers when ``workers`` > 1); ``finalize`` joins them in unit order."""

    name = "concat"

    def __init__(self, settings: UpperSettings, target: Path, workers: int = 1, claim: int = 0):
        super().__init__(settings)
        self.target, self.workers, self.claim = target, workers, claim

    def outputs(self):
        return [self.target]

    def process(self, ctx, index, unit):
        res = super().process(ctx, index, unit)
        (ctx.work / f"part-{index:05d}.txt").write_text("".join(r.content for r in res.kept))
        return UnitResult([], res.dropped, res.funnel, represents=len(res.kept),
                          part={"file": f"part-{index:05d}.txt", "records": len(res.kept), "pid": os.getpid()})

    def finalize(self, ctx, parts, funnel):
        self.target.write_text("".join((ctx.work / p["file"]).read_text() for p in parts))
        return sum(p["records"] for p in parts) + self.claim


def test_an_artefact_step_on_forked_workers_finalizes_resumes_and_accounts(tmp_path):
    inp = make_input(tmp_path / "in")
    cfg = UpperSettings(input=str(inp))
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    f1 = run_step(Concat(cfg, one), tmp_path / "one.step", Comm(None), progress=False)
    f2 = run_step(Concat(cfg, two, workers=2), tmp_path / "two.step", Comm(None), progress=False)
    assert one.read_text() == two.read_text() and one.read_text().count("\n") > 10
    assert f1.to_dict() == f2.to_dict() and f1.total("kept")[0] == 15 and f1.reasons() == {"short": 8}
    markers = [json.loads(p.read_text()) for p in sorted((tmp_path / "two.step" / "_work").glob("unit-*.json"))]
    pids = {m["part"]["pid"] for m in markers}
    assert len(markers) == 6 and os.getpid() not in pids and len(pids) <= 2  # on the forked workers
    assert all(m["entry"] is None for m in markers) and not list((tmp_path / "two.step").glob("part-*"))
    manifest = json.loads((tmp_path / "two.step" / "manifest.json").read_text())
    assert manifest["outputs"] == {"two.txt": two.stat().st_size} and manifest["kept"] == 15
    assert is_complete(tmp_path / "two.step")
    # the artefact deleted since: the step is not complete; the same call finalizes again, no unit redone
    two.unlink()
    assert not is_complete(tmp_path / "two.step")
    run_step(Concat(cfg, two, workers=2), tmp_path / "two.step", Comm(None), progress=False)
    assert two.read_text() == one.read_text()
    assert json.loads((tmp_path / "two.step" / RANKS_FILE).read_text())["ranks"][0]["units"] == []
    # output that does not hold what the funnel kept fails loudly, before anything declares it complete
    with pytest.raises(StepError, match=r"concat: accounting: funnel keeps 15 records but the output holds 16"):
        run_step(Concat(cfg, tmp_path / "bad.txt", claim=1), tmp_path / "bad.step", Comm(None), progress=False)
    assert not (tmp_path / "bad.step" / "manifest.json").exists()
    # an error in a forked worker: one line naming the unit
    bad = UpperSettings(input=str(inp), fail_on="r9")
    with pytest.raises(StepError, match=r"^concat: unit 2 \(.*part-00002.jsonl.gz\): ValueError: boom at r9$"):
        run_step(Concat(bad, tmp_path / "err.txt", workers=2), tmp_path / "err.step", Comm(None), progress=False)
    # an artefact of unknown origin is not overwritten
    (tmp_path / "mine.txt").write_text("mine")
    with pytest.raises(StaleOutputError, match="mine.txt exists but .* unknown origin"):
        run_step(Concat(cfg, tmp_path / "mine.txt"), tmp_path / "mine.step", Comm(None), progress=False)


if __name__ == "__main__":
    sys.exit(main())
