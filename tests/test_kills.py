"""Kills at unsafe moments (megatron_snow/faults.py): each data step and training is SIGKILLed at named
points -- half a shard or a temp file written, a shard written but not its marker, during finalize,
before and during the manifest, a checkpoint's files half written, its files whole but no metadata,
its metadata but ``latest`` not moved, a prune half done -- and at points drawn at random (by seed)
from the census of every point an uninterrupted run passes.
The same command then resumes, and the output is byte-identical (data) or the losses identical
(training) to the uninterrupted run's.

Each case is a chain in one output directory: run 1 is killed at its first kill point, the same
command at the next, and so on; then once more to the end. Targeted points (the first point of a
kind each run passes) must kill, else nothing was tested; a random chain's first point is drawn from
the census, its second may lie in work the resumed run no longer does (that run then ends).
``MEGATRON_SNOW_KILL_SEEDS=N`` draws N random chains per step (default 1 in CI).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_snow.faults import KILL_ENV, TRACE_ENV, read_trace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (HERE, HERE / "synthesis", HERE / "training"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from tiny_repo import write_repo  # noqa: E402

SEEDS = int(os.environ.get("MEGATRON_SNOW_KILL_SEEDS", "1"))
BASE_ENV = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
BASE_ENV.pop(KILL_ENV, None)
BASE_ENV.pop(TRACE_ENV, None)
pytestmark = pytest.mark.slow


def run(cmd: list[str], kill: str | None = None, trace: Path | None = None, timeout: int = 300):
    """One run in its own session; what a killed job leaves running (forked workers or checkpoint writers
    that outlive it) is killed when its main process has ended. Output goes through files: a leftover
    holding a pipe open cannot hold the test up."""
    import tempfile

    env = dict(BASE_ENV)
    if kill:
        env[KILL_ENV] = kill
    if trace:
        env[TRACE_ENV] = str(trace)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def census(cmd: list[str], trace: Path) -> list[str]:
    """The kill points an uninterrupted run passes, in order."""
    p = run(cmd, trace=trace)
    assert p.returncode == 0, p.stderr[-3000:]
    return [name for name, _ in read_trace(trace)]


def at(points: list[str], k: int) -> str:
    """The kill spec of the k-th point of a census (its name and which hit of that name it is)."""
    return f"{points[k]}@{points[:k + 1].count(points[k])}"


def random_chain(points: list[str], seed: int) -> list[str]:
    """Two kills drawn from the census: the first always lands; the second lies later in the census."""
    rng = random.Random(seed)
    first = rng.randrange(len(points))
    second = rng.randrange(first, len(points))
    return [at(points, first), f"{points[second]}@1"]


def kill_chain(cmd: list[str], specs: list[str], must_kill: int) -> list[str]:
    """Run ``cmd`` killed at each spec in turn (until a run ends by itself), then to the end.
    Returns the points it was killed at; the first ``must_kill`` specs must have killed."""
    killed = []
    for spec in specs:
        p = run(cmd, kill=spec)
        if p.returncode == 0:
            break
        assert p.returncode == -signal.SIGKILL, (spec, p.returncode, p.stderr[-3000:])
        assert "faults: killed at" in p.stderr, p.stderr[-2000:]
        killed.append(p.stderr.rsplit("faults: killed at ", 1)[1].split("\n", 1)[0])
    assert len(killed) >= must_kill, (specs, killed)
    p = run(cmd)
    assert p.returncode == 0, (specs, killed, p.stderr[-3000:])
    assert "Traceback" not in p.stderr
    return killed


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file's bytes under root, but ranks.json (which rank did what in the last run) and ``skip``
    (globs of the relative path)."""
    import fnmatch

    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and p.name != "ranks.json" and not any(fnmatch.fnmatchcase(rel, g) for g in skip):
            out[rel] = p.read_bytes()
    return out


def assert_same_tree(ref: Path, out: Path, what, skip: tuple[str, ...] = ()) -> None:
    a, b = tree(ref, skip), tree(out, skip)
    assert sorted(a) == sorted(b), (what, sorted(set(a) ^ set(b))[:10])
    assert [k for k in a if a[k] != b[k]] == [], what


def targeted(points: list[str], patterns: list[str]) -> list[str]:
    """Kill specs for a chain: each run is killed at the first point matching its pattern (which the
    uninterrupted run must pass: else the pattern names nothing)."""
    import fnmatch

    for pat in patterns:
        assert any(fnmatch.fnmatchcase(name, pat) for name in points), f"no point matches {pat!r}"
    return [f"{pat}@1" for pat in patterns]


def sweep(cmd_for, ref: Path, points: list[str], targets: list[list[str]], tmp: Path,
          skip: tuple[str, ...] = ()) -> None:
    """Targeted chains (each must kill at every point) and SEEDS random chains; every resumed
    output equals ``ref``."""
    chains = [(f"t{i}", targeted(points, pats), len(pats)) for i, pats in enumerate(targets)]
    chains += [(f"s{s}", random_chain(points, s), 1) for s in range(SEEDS)]
    for name, specs, must in chains:
        out = tmp / name
        killed = kill_chain(cmd_for(out), specs, must)
        assert_same_tree(ref, out, (name, specs, killed), skip)
        print(f"{name}: killed at {killed}, resumed to identical output")


# -- phase 1 --------------------------------------------------------------------------------------
def phase1_cmd(tmp: Path, benchmarks_dir: Path):
    import yaml

    repo = write_repo(tmp / "repo")

    def cmd(out: Path) -> list[str]:
        cfg = {"output_dir": str(out), "progress": False,
               "ingest": {"sources": [{"kind": "directory", "path": str(repo), "name": "local",
                                       "files_per_shard": 4}]},
               "decontaminate": {"benchmarks_dir": str(benchmarks_dir), "cache_dir": str(tmp / "decontam_cache")},
               "grouping": {"num_shards": 2, "seed": 7}}
        out.mkdir(parents=True, exist_ok=True)
        path = out.parent / f"{out.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return [sys.executable, "-m", "megatron_snow", "phase1", "--config", str(path)]

    return cmd


@pytest.fixture(scope="module")
def phase1_ref(tmp_path_factory, benchmarks_dir):
    tmp = tmp_path_factory.mktemp("kills_phase1")
    cmd = phase1_cmd(tmp, benchmarks_dir)
    ref = tmp / "ref"
    points = census(cmd(ref), tmp / "trace.txt")
    return cmd, ref, points, tmp


def test_phase1_killed_anywhere_resumes_identical(phase1_ref):
    cmd, ref, points, tmp = phase1_ref
    sweep(cmd, ref, points, [
        ["write.half:part-*.jsonl.gz", "unit.shard_written:*", "finish.before_finalize:*", "write.half:manifest.json",
         "finish.manifest_written:*"],
    ], tmp)


# -- build-index (over phase 1's output, with a tokenizer trained on it) ----------------------------
def test_build_index_killed_anywhere_resumes_identical(phase1_ref, tmp_path):
    from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer

    _, phase1, _, _ = phase1_ref
    docs = phase1 / "07_grouped"
    tok = tmp_path / "tok.model"
    train_tokenizer(TrainTokenizerConfig(inputs=[str(docs)], output=str(tok), vocab_size=400, num_threads=1,
                                         max_sentence_length=4096))

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "megatron_snow", "build-index", f"inputs=[{docs}]",
                f"output_prefix={out}/index", f"tokenizer={tok}", "workers=2", "chunk_bytes=2000", "batch_docs=2",
                "progress=false"]

    points = census(cmd(tmp_path / "ref"), tmp_path / "trace.txt")
    sweep(cmd, tmp_path / "ref", points, [
        ["index.document:part-*", "unit.shard_written:*", "index.bin_renamed:index", "finish.before_manifest:*"],
    ], tmp_path)


# -- annotate (a tiny real BERT classifier, untrained: scores are deterministic) --------------------
def test_annotate_killed_anywhere_resumes_identical(phase1_ref, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from megatron_snow import records
    from megatron_snow.phase2.tiny_encoder import make_tiny_encoder

    _, phase1, _, _ = phase1_ref
    corpus = phase1 / "07_grouped"
    texts = [r.content for r in records.iter_records(corpus)]
    enc = make_tiny_encoder(texts, tmp_path / "encoder", vocab_size=300, max_positions=64)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(enc, num_labels=2)
    model.save_pretrained(tmp_path / "annotator")
    AutoTokenizer.from_pretrained(enc).save_pretrained(tmp_path / "annotator")

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "megatron_snow", "annotate", f"corpus={corpus}",
                f"model={tmp_path / 'annotator'}", f"out={out}", "batch_size=4", "max_length=64", "device=cpu"]

    points = census(cmd(tmp_path / "ref"), tmp_path / "trace.txt")
    sweep(cmd, tmp_path / "ref", points, [
        ["write.half:part-*", "unit.shard_written:*", "write.half:manifest.json"],
    ], tmp_path)


# -- synthesize (the scripted server: a distinct valid answer per seed) ----------------------------
# the request logs record which process asked and how fast (compared apart: each seed once, same answers)
LOGS = ("_work/generated/*",)


def test_synthesize_killed_anywhere_resumes_identical(tmp_path):
    from llm_server import ScriptProcess
    from synth_data import TEMPLATE, write_phase2

    phase2 = write_phase2(tmp_path / "phase2")
    template = tmp_path / "template.txt"
    template.write_text(TEMPLATE)
    with ScriptProcess(HERE / "synthesis" / "script_server.py") as server:
        def cmd(out: Path) -> list[str]:
            return [sys.executable, "-m", "megatron_snow", "synthesize", f"phase2={phase2}", f"out={out}",
                    f"prompt={template}", "seeds_per_language=11", f"server.base_url={server.base_url}",
                    "seeds_per_unit=3", "server.concurrency=1", "server.timeout_s=10", "progress=false",
                    "decontaminate.benchmarks=[mbpp]"]

        points = census(cmd(tmp_path / "ref"), tmp_path / "trace.txt")
        sweep(cmd, tmp_path / "ref", points, [
            ["write.half:seeds*", "synthesize.answer:*", "write.half:decisions-*", "unit.shard_written:*",
             "write.half:manifest.json"],
        ], tmp_path, skip=LOGS)
    # a torn answer line was cut off and asked again: each seed answered once, as in the uninterrupted log
    def answers(out: Path) -> list[tuple]:
        rows = [json.loads(x) for p in sorted((out / "_work" / "generated").glob("gen-*.jsonl"))
                for x in p.read_text().splitlines()]
        return sorted((r["index"], r["seed_id"], r["text"] if "text" in r else r.get("content")) for r in rows)

    assert answers(tmp_path / "t0") == answers(tmp_path / "ref")


# -- training: kills during checkpoint saves ------------------------------------------------------
def _train_losses(path: Path, split: str = "train") -> dict[int, set[float]]:
    """iteration -> every loss logged for it (by killed runs and their restarts)."""
    out: dict[int, set[float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == split:
            out.setdefault(rec["iteration"], set()).add(rec["loss"])
    return out


def test_training_killed_during_saves_resumes_loss_identical(tmp_path):
    """Killed with a checkpoint's files half written (the previous intact one is resumed), with its files
    whole but no metadata, with the metadata but ``latest`` not yet moved, and at random save points:
    every logged loss equals the uninterrupted run's."""
    from training_helpers import VOCAB, tiny_documents, tiny_overrides, train_command

    from megatron_snow.indexed import write_indexed_dataset

    prefix = tmp_path / "data" / "tiny"
    write_indexed_dataset(prefix, tiny_documents(n_docs=120), VOCAB)
    extra = {"training.train_iters": 12, "checkpoint.save_interval": 4, "checkpoint.keep_last": 2}

    def cmd(work: Path) -> list[str]:
        return train_command(1, tiny_overrides(prefix, work, **extra))

    ref = tmp_path / "ref"
    points = census(cmd(ref), tmp_path / "trace.txt")
    want = _train_losses(ref / "metrics.jsonl")
    assert sorted(want) == list(range(1, 13))
    assert any(p.startswith("checkpoint.file_half:iter_0000008/") for p in points), points

    # 1) the save of iteration 8 killed with its files half written: it has no metadata, some file is
    #    shorter than (or missing beside) the finished save's, and the restart resumes from iteration 4
    work = tmp_path / "t0"
    p = run(cmd(work), kill="checkpoint.file_half:iter_0000008/*@1")
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    half = work / "ckpt" / "iter_0000008"
    assert not (half / "snow_meta.json").exists() and (work / "ckpt" / "latest").read_text().strip() == "4"
    done = {f.name: f.stat().st_size for f in (ref / "ckpt" / "iter_0000008").iterdir()}
    torn = {f.name: f.stat().st_size for f in half.iterdir() if f.name.endswith(".distcp")}
    assert any(size < done[name] for name, size in torn.items()) or set(torn) < {n for n in done if
                                                                                   n.endswith(".distcp")}, (torn, done)
    # 2) the restart, killed after iteration 12's files (no metadata), 3) after its metadata (latest
    #    still names 8), 4) in the prune of iteration 4 after ``latest`` names 12, then to the end
    for spec, resumed in (("checkpoint.files_written:12@1", "iter_0000004"),
                          ("checkpoint.meta_written:12@1", "iter_0000008"),
                          ("checkpoint.pruning:4@1", "iter_0000008"), (None, "iter_0000012")):
        p = run(cmd(work), kill=spec)
        assert p.returncode == (0 if spec is None else -signal.SIGKILL), (spec, p.stderr[-3000:])
        assert f"resumed from {work / 'ckpt' / resumed}" in p.stdout + p.stderr, (spec, p.stdout[-2000:])
        if spec and spec.startswith("checkpoint.pruning"):  # half pruned: incomplete, never a resume candidate
            assert not (work / "ckpt" / "iter_0000004" / "snow_meta.json").exists()
    assert _train_losses(work / "metrics.jsonl") == want  # each iteration's every logged loss: the same one
    assert _train_losses(work / "metrics.jsonl", "valid") == _train_losses(ref / "metrics.jsonl", "valid")

    # random points of the census (all in saves), chained, then to the end
    for s in range(SEEDS):
        out = tmp_path / f"s{s}"
        killed = kill_chain(cmd(out), random_chain(points, s), 1)
        assert _train_losses(out / "metrics.jsonl") == want
        print(f"s{s}: killed at {killed}, resumed to identical losses")
