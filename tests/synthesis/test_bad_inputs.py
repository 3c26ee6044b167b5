"""The two phase-3 data steps, ``synthesize`` and ``mix``, over bad input (issue 9), on 1 and 2 real MPI ranks.

synthesize reads the bad-records dataset of tests/bad_inputs.py plus a shard of seed cases
(``append_seed_cases``: empty, minified, 2 MB, unscored, NaN-scored, unsupported-language, duplicate-id,
NUL, lone-surrogate seeds) and sends every seed to a real HTTP server process
(``script_server.py``) that answers each seed as its snippet says: 500, 400, a hang past the timeout,
non-JSON, non-UTF-8 bytes, a cut body, no choices, empty or null content, finish reason "length", a NUL
or lone surrogate in the code, the wrong language, a first-try failure, a 1 MB file. Every record is
accounted for by reason, every good seed gives a kept file, no traceback; a server that dies mid-run
stops the step with one line (exit 1) and the re-run resumes to the same output.

mix reads the indexes (build-index) of that dataset and of synthesize's output, directly or through a
blend file; then each damaged input (blend file missing / malformed / naming a missing dataset / zero
or negative weights, truncated or inconsistent .idx, short .bin, damaged sidecar, missing stats,
another tokenizer, one input twice) is one line with exit 2, never a traceback or a hang.
"""
from __future__ import annotations

import collections
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_inputs import SERVER_CASES, append_seed_cases, write_bad_records_dataset
from llm_server import ScriptProcess, free_port
from megatron_snow import records
from megatron_snow.funnel import Funnel
from megatron_snow.indexed import BLEND_FORMAT, read_idx
from megatron_snow.synthesis.mixing import main as mix_main
from megatron_snow.tokenization.build_index import BuildIndexConfig, build_index
from test_mix import _tokenizer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENV1 = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1", "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow  # about 2 minutes in all on 2 cores (the synthesize runs and the indexes)


class ScriptServer(ScriptProcess):
    """tests/synthesis/script_server.py as a process (killed on exit)."""

    def __init__(self, tmp: Path, **opts):
        self.log = tmp / f"requests-{time.monotonic_ns()}.jsonl"
        super().__init__(HERE / "script_server.py", "--log", str(self.log), **opts)

    def requests(self) -> list[dict]:
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.is_file() else []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_synth") / "phase2"
    info = write_bad_records_dataset(d)
    seeds = append_seed_cases(d)
    expected = collections.Counter(info["expected"]) + collections.Counter(seeds["expected"])
    return {"dir": d, "info": info, "seeds": seeds, "expected": dict(expected),
            "records": records.read_manifest(d)["records"],
            "kept_seeds": info["good_ids"] | seeds["kept_seeds"],
            "per_language": len(info["good_ids"]) + seeds["eligible"]}


def synth_args(corpus, out: Path, base_url: str, *extra: str) -> list[str]:
    return [f"phase2={corpus['dir']}", f"scores={corpus['seeds']['scores']}", f"out={out}",
            f"seeds_per_language={corpus['per_language']}", f"server.base_url={base_url}", "seeds_per_unit=8",
            "server.concurrency=4", "server.timeout_s=2", "server.max_attempts=2", "server.backoff_s=0.05",
            "progress=false", "decontaminate.enabled=false", *extra]  # decontamination is not what is tested here


def cli(step: str, args: list[str], ranks: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "megatron_snow", step, *args]
    if ranks > 1:
        if shutil.which("mpiexec") is None:
            pytest.skip("mpiexec not installed")
        cmd = ["mpiexec", "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                       env=ENV1 if ranks == 1 else {**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def one_line_error(p: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == code and len(lines) == 1, (p.returncode, p.stderr[-2000:])
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def gen_rows(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "_work" / "generated").glob("gen-*.jsonl")):
        rows += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return rows


def check_synth_output(corpus, out: Path) -> Funnel:
    funnel = Funnel.read(out / "funnel.json")
    funnel.check()
    assert funnel.total("in")[0] == corpus["records"]  # every phase-2 record, a seed or not
    assert funnel.reasons() == corpus["expected"]
    kept = {r.meta["synthesis"]["seed_id"] for r in records.iter_records(out)}
    assert kept == corpus["kept_seeds"] and funnel.total("kept")[0] == len(kept)
    dropped = list(records.iter_records(out / "dropped"))
    # set aside as records: damaged lines (stand-ins; a lost gzip tail is one standing for several), seeds
    # that are not text, and every answer dropped; only counted: seeds passed over for a reason of their own
    count_only = {"not_a_seed", "unscored", "empty", "snippet_too_long", "unsupported_language", "duplicate_id"}
    assert sum(r.meta["dropped"].get("records", 1) for r in dropped) == \
        sum(v for k, v in corpus["expected"].items() if k not in count_only)
    for r in dropped:  # a damaged line is set aside naming its file (and line)
        d = r.meta["dropped"]
        assert d["reason"] in corpus["expected"]
        if "synthesis" not in r.meta:
            assert "part-0000" in d["file"], d
    by_case = {r.meta["synthesis"]["seed_id"]: r.meta["dropped"]["reason"] for r in dropped if "synthesis" in r.meta}
    assert by_case == {f"case-{c}": why for c, why in SERVER_CASES.items() if why}
    return funnel


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """One uninterrupted 1-rank run through the command line (the output every other run must equal)."""
    tmp = tmp_path_factory.mktemp("synth_ref")
    out = tmp / "out"
    with ScriptServer(tmp, hang_s=6) as server:
        p = cli("synthesize", synth_args(corpus, out, server.base_url))
        reqs = server.requests()
    assert p.returncode == 0, p.stderr[-3000:]
    return out, reqs


def test_synthesize_counts_every_bad_record_and_answer(corpus, reference):
    out, reqs = reference
    assert len(corpus["info"]["expected"]) + len(corpus["seeds"]["kinds"]) >= 20
    check_synth_output(corpus, out)
    tries = collections.Counter(r["case"] for r in reqs)
    assert tries["flaky"] == 2 and tries["500"] == 2 and tries["400"] == 1  # retried, or not (a 4xx)
    stats = json.loads((out / "stats.json").read_text())
    # kinds of the failed attempts: 500 x2 + flaky's first, hang x2, garbage / badbytes / nochoices /
    # numbercontent x2, cut x2
    assert stats["errors"] == {"http_500": 3, "http_400": 1, "timeout": 2, "bad_response": 8, "connection": 2}
    # the huge seed's snippet is 1-15 of its lines, the minified one was never sent
    assert not any(r["case"] == "minified" for r in reqs)


@pytest.mark.mpi
def test_synthesize_two_ranks_same_output(corpus, reference, tmp_path):
    out = tmp_path / "out"
    with ScriptServer(tmp_path, hang_s=6) as server:
        p = cli("synthesize", synth_args(corpus, out, server.base_url), ranks=2)
    assert p.returncode == 0, p.stderr[-3000:]
    check_synth_output(corpus, out)
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and all(r["units"] for r in ranks["ranks"])
    assert {r["rank"] for r in gen_rows(out)} == {0, 1}
    ref = reference[0]
    names = sorted(p.name for p in ref.glob("part-*.jsonl.gz"))
    assert names == sorted(p.name for p in out.glob("part-*.jsonl.gz"))
    assert all((out / n).read_bytes() == (ref / n).read_bytes() for n in names)
    assert Funnel.read(out / "funnel.json").to_dict() == Funnel.read(ref / "funnel.json").to_dict()


def test_server_dies_mid_run_then_resume(corpus, reference, tmp_path):
    """The server crashes after 12 answers: one line, exit 1, no output; the same command against a new
    server resumes (no seed asked twice once answered) and ends with the uninterrupted run's output."""
    out = tmp_path / "out"
    with ScriptServer(tmp_path, die_after=12, hang_s=6) as server:
        p = cli("synthesize", synth_args(corpus, out, server.base_url, "server.max_unreachable=4"))
    one_line_error(p, 1, "stopped answering", "re-run the same command to resume")
    assert not (out / "manifest.json").exists()
    before = collections.Counter(r["index"] for r in gen_rows(out))
    assert before and max(before.values()) == 1
    with ScriptServer(tmp_path, hang_s=6) as server:
        p = cli("synthesize", synth_args(corpus, out, server.base_url, "server.max_unreachable=4"))
    assert p.returncode == 0, p.stderr[-3000:]
    after = collections.Counter(r["index"] for r in gen_rows(out))
    assert max(after.values()) == 1 and set(before) < set(after)  # each seed generated once
    check_synth_output(corpus, out)
    ref = reference[0]
    for part in ref.glob("part-*.jsonl.gz"):
        assert (out / part.name).read_bytes() == part.read_bytes(), part.name


def test_synthesize_bad_runs_are_one_line(corpus, tmp_path):
    """No server at all (exit 1); settings out of range; a phase-2 dataset that is missing, or all damaged."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    p = cli("synthesize", synth_args(corpus, tmp_path / "a", dead, "server.model=m", "languages=[cobol]",
                                     "server.max_unreachable=1"))
    # languages=[cobol]: no seed at all (cobol has no prompt) -> bad input, before any request
    one_line_error(p, 2, "no document", "unsupported_language 1")
    p = cli("synthesize", synth_args(corpus, tmp_path / "b", dead, "server.model=m"))
    one_line_error(p, 1, "stopped answering")
    p = cli("synthesize", synth_args(corpus, tmp_path / "c", dead) + ["snippet_max_chars=0"])
    one_line_error(p, 2, "snippet_max_chars")
    p = cli("synthesize", synth_args(corpus, tmp_path / "d", dead) + ["server.max_unreachable=-1"])
    one_line_error(p, 2, "max_unreachable")
    p = cli("synthesize", [f"phase2={tmp_path / 'nothing'}", f"out={tmp_path / 'e'}", f"server.base_url={dead}",
                           "server.model=m"])
    one_line_error(p, 2, "nothing")
    bad = tmp_path / "all_bad"
    bad.mkdir()
    records.write_manifest(bad, [{"name": "part-00000.jsonl.gz", "records": 2, "content_bytes": 0}])
    (bad / "part-00000.jsonl.gz").write_bytes(gzip.compress(b'{"id": 1}\n[oops\n'))
    p = cli("synthesize", [f"phase2={bad}", f"out={tmp_path / 'f'}", f"server.base_url={dead}", "server.model=m"])
    one_line_error(p, 2, "no document", "invalid_json 1", "wrong_field_type 1")


# -- mix -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mix_inputs(corpus, reference, tmp_path_factory):
    """Indexes (build-index) of the bad phase-2 dataset and of synthesize's output; a second tokenizer."""
    root = tmp_path_factory.mktemp("bad_mix")
    texts = [r.content for r in records.iter_records(reference[0])]
    tok = _tokenizer(root / "tok.json", texts)
    other_tok = _tokenizer(root / "other.json", [t[::-1] for t in texts])
    prefixes = {}
    for name, ds, t in (("phase2", corpus["dir"], tok),
                        ("synthetic", reference[0], tok), ("other_tok", reference[0], other_tok)):
        prefixes[name] = str(root / "idx" / name)
        build_index(BuildIndexConfig(inputs=[str(ds)], output_prefix=prefixes[name], tokenizer=str(t),
                                     progress=False), log=lambda *a: None)
    blend = root / "phase2_blend.json"
    blend.write_text(json.dumps({"format": BLEND_FORMAT, "datasets": [
        {"prefix": "idx/phase2", "unique_tokens": int(read_idx(prefixes["phase2"]).sequence_lengths.sum()),
         "repetition": 4.0}]}))
    return root, prefixes, blend


BUDGET = 1_000_000  # more than the synthetic tokens: both sources take part


def mix_args(syn: str, p2: str, out: Path, *extra: str) -> list[str]:
    return [f"synthetic_index={syn}", f"phase2_index={p2}", f"out={out}", f"budget_tokens={BUDGET}",
            "python_share=1", "progress=false", *extra]


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2])
def test_mix_accounts_for_every_document(mix_inputs, corpus, tmp_path, ranks):
    root, prefixes, blend = mix_inputs
    out = tmp_path / "mix"
    if ranks == 1:  # in this process (megatron-core, which writing an index imports, is loaded already)
        assert mix_main(mix_args(prefixes["synthetic"], str(blend), out)) == 0
    else:
        p = cli("mix", mix_args(prefixes["synthetic"], str(blend), out), ranks=ranks)
        assert p.returncode == 0, p.stderr[-3000:]
        # mix has one writer by design: rank 0 mixes, rank 1 waits for its outcome and exits with its code.
        # One table: the two processes were one 2-rank job (two 1-rank runs would each have mixed and printed)
        assert p.stderr.count("== phase-3 mix ==") == 1, p.stderr[-3000:]
        single = tmp_path / "single"
        assert mix_main(mix_args(prefixes["synthetic"], str(blend), single)) == 0
        for name in ("funnel.json", "mix_report.json", "split-synthetic.json", "split-phase2.json"):
            assert _relative(out / name, out) == _relative(single / name, single), name  # what one process makes
    stats = {k: json.loads(Path(f"{prefixes[k]}.stats.json").read_text()) for k in ("phase2", "synthetic")}
    # build-index kept every good record of the bad dataset; the seed cases' good ones too
    with gzip.open(f"{prefixes['phase2']}.docs.jsonl.gz", "rt") as f:
        p2_ids = {json.loads(line)["id"] for line in f}
    assert corpus["info"]["good_ids"] <= p2_ids
    funnel = Funnel.read(out / "funnel.json")
    funnel.check()
    assert funnel.total("in")[0] == stats["phase2"]["documents"] + stats["synthetic"]["documents"]
    # python_share=1: the one cobol document (a seed case) has no share; every other document is in the blend
    assert funnel.reasons() == {"no_share": 1} and funnel.total("kept")[0] == funnel.total("in")[0] - 1
    blend_prefixes = {Path(e["prefix"]).name: e for e in json.loads((out / "blend.json").read_text())["datasets"]}
    assert set(blend_prefixes) == {"synthetic_python", "phase2_python"}
    for source in ("synthetic", "phase2"):
        split = json.loads((out / f"split-{source}.json").read_text())
        assert sum(v["tokens"] for v in split.values()) == stats[source]["tokens"]
        assert sum(v["documents"] for v in split.values()) == stats[source]["documents"]
    assert json.loads((out / "blend.json").read_text())["total_tokens"] == pytest.approx(BUDGET, abs=2)


def _relative(path: Path, out: Path) -> str:
    """A mix file's text with its own output directory's path taken out (it names the split indexes)."""
    return path.read_text().replace(str(out), "OUT")


def _damage(root: Path, prefixes: dict, blend: Path, case: str, tmp: Path) -> tuple[str, str, list[str]]:
    """(synthetic_index, phase2_index, words of the one line) for one damaged input."""
    syn, p2 = prefixes["synthetic"], prefixes["phase2"]

    def copy(prefix: str) -> str:
        new = tmp / Path(prefix).name
        for suffix in (".bin", ".idx", ".docs.jsonl.gz", ".stats.json"):
            shutil.copy(prefix + suffix, str(new) + suffix)
        return str(new)

    if case == "blend_missing":
        return syn, str(tmp / "no_blend.json"), ["no such blend file"]
    if case == "blend_not_json":
        (tmp / "b.json").write_text('{"format": ')
        return syn, str(tmp / "b.json"), ["not a readable blend file"]
    if case == "blend_not_a_blend":
        (tmp / "b.json").write_text('{"datasets": []}')
        return syn, str(tmp / "b.json"), ["not a blend file"]
    d = json.loads(blend.read_text())
    if case == "blend_missing_prefix":
        d["datasets"][0]["prefix"] = str(tmp / "gone")
        words = ["datasets[0] names", "gone", "no .idx"]
    elif case == "blend_zero_weight":
        d["datasets"][0]["weight"] = 0
        words = ["datasets[0] needs", "weight > 0"]
    elif case == "blend_negative_repetition":
        d["datasets"][0]["repetition"] = -1
        words = ["datasets[0] needs", "repetition > 0"]
    elif case == "blend_bad_tokens":
        d["datasets"][0]["unique_tokens"] = "many"
        words = ["datasets[0] is malformed"]
    elif case == "blend_empty":
        d["datasets"] = []
        words = ["names no dataset"]
    else:
        d = None
    if d is not None:
        d["datasets"] = [{**x, "prefix": str(root / x["prefix"])} for x in d["datasets"]]  # absolute stays so
        (tmp / "b.json").write_text(json.dumps(d))
        return syn, str(tmp / "b.json"), words
    new = copy(p2)
    if case == "idx_truncated":
        data = Path(new + ".idx").read_bytes()
        Path(new + ".idx").write_bytes(data[: len(data) // 2])
        return syn, new, ["phase2.idx", "truncated"]
    if case == "idx_pointers":
        data = bytearray(Path(new + ".idx").read_bytes())
        data[-9 * 8] ^= 0x40  # a sequence pointer (the last ones are the document index)
        data[len(data) // 2] ^= 0x01
        Path(new + ".idx").write_bytes(bytes(data))
        return syn, new, ["phase2.idx", "damaged index"]
    if case == "idx_not_an_index":
        Path(new + ".idx").write_bytes(b"not an index at all" * 4)
        return syn, new, ["phase2.idx", "not a megatron-core index"]
    if case == "bin_short":
        data = Path(new + ".bin").read_bytes()
        Path(new + ".bin").write_bytes(data[:-10])
        return syn, new, ["phase2.idx", ".bin is"]
    if case == "bin_missing":
        os.remove(new + ".bin")
        return syn, new, ["phase2.bin not found"]
    if case == "sidecar_truncated":
        data = Path(new + ".docs.jsonl.gz").read_bytes()
        Path(new + ".docs.jsonl.gz").write_bytes(data[: len(data) // 2])
        return syn, new, ["docs.jsonl.gz", "damaged sidecar"]
    if case == "sidecar_other_index":
        shutil.copy(syn + ".docs.jsonl.gz", new + ".docs.jsonl.gz")
        return syn, new, ["the sidecar lists"]
    if case == "stats_missing":
        os.remove(new + ".stats.json")
        return syn, new, ["stats.json not found"]
    if case == "stats_damaged":
        Path(new + ".stats.json").write_text("{")
        return syn, new, ["stats.json: damaged"]
    if case == "tokenizer_mismatch":
        return prefixes["other_tok"], p2, ["different tokenizers", "tokenizer_sha256"]
    if case == "same_input_twice":
        return p2, p2, ["both the synthetic and the phase-2 input"]
    raise AssertionError(case)


MIX_CASES = ["blend_missing", "blend_not_json", "blend_not_a_blend", "blend_missing_prefix", "blend_zero_weight",
             "blend_negative_repetition", "blend_bad_tokens", "blend_empty", "idx_truncated", "idx_pointers",
             "idx_not_an_index", "bin_short", "bin_missing", "sidecar_truncated", "sidecar_other_index",
             "stats_missing", "stats_damaged", "tokenizer_mismatch", "same_input_twice"]


@pytest.mark.parametrize("case", MIX_CASES)
def test_mix_bad_input_is_one_line_exit_2(mix_inputs, tmp_path, capsys, case):
    root, prefixes, blend = mix_inputs
    syn, p2, words = _damage(root, prefixes, blend, case, tmp_path)
    capsys.readouterr()
    assert mix_main(mix_args(syn, p2, tmp_path / "mix")) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and all(w in err[0] for w in words), (case, err)
    assert not (tmp_path / "mix" / "blend.json").exists()


@pytest.mark.mpi
def test_mix_bad_input_two_ranks(mix_inputs, tmp_path):
    """Under mpiexec -n 2 the one line comes once and both ranks exit 2 (rank 1 does not wait for ever)."""
    root, prefixes, blend = mix_inputs
    for case in ("idx_pointers", "tokenizer_mismatch"):
        sub = tmp_path / case
        sub.mkdir()
        syn, p2, words = _damage(root, prefixes, blend, case, sub)
        p = cli("mix", mix_args(syn, p2, sub / "mix"), ranks=2, timeout=120)
        one_line_error(p, 2, *words)
