"""The on-disk cache of the decontamination index: a cached index gives the same verdicts as a fresh
one, a changed input rebuilds it, a damaged file is rebuilt, ranks building it at once agree.

The benchmarks are a copy of the shipped HumanEval and MBPP files (small: each build takes seconds).
"""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.phase1.decontam import cache as dc
from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator, index_key
from tests.phase1.test_decontam_quality import clean_files, rename, top_level_cut

STEMS = ("humaneval", "mbpp")


@pytest.fixture()
def bench(tmp_path, benchmarks_dir) -> Path:
    d = tmp_path / "bench"
    d.mkdir()
    for s in STEMS:
        shutil.copy(benchmark_path(benchmarks_dir, s), d / f"{s}.jsonl.gz")
    return d


@pytest.fixture(autouse=True)
def _no_memory_cache(monkeypatch):
    """Each test sees only the disk cache (the in-process one would hide it)."""
    monkeypatch.setattr(dc, "_INDEX_CACHE", {})


def fresh(cfg: DecontamConfig) -> Decontaminator:
    dc._INDEX_CACHE.clear()
    return Decontaminator(cfg)


def planted(bench: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(text, language) of contaminated files (expected to be dropped) and of clean real files."""
    he = read_benchmark(bench / "humaneval.jsonl.gz")
    mb = read_benchmark(bench / "mbpp.jsonl.gz")
    rng = random.Random(3)
    clean = [(text, lang) for _, text, lang in clean_files(12, seed=5)]
    host = clean[0][0]
    cut = top_level_cut(host)
    bad = [
        (he[10]["prompt"] + he[10]["canonical_solution"], "python"),  # verbatim
        (host[:cut] + rename(he[129]["prompt"] + he[129]["canonical_solution"], rng) + host[cut:], "python"),
        (rename(mb[7]["code"], rng), "python"),  # renamed short solution
        ("\n".join(mb[20]["test_list"]) + "\n", "python"),  # its test block
        ("# notes\n" + mb[40]["text"] + "\n" + "x = 1\n", "python"),  # the task text
        (he[50]["test"], "python"),
        (rename(mb[58]["code"], rng), "python"),  # a renamed one-liner, alone in its file
        (host[:cut] + rename(mb[562]["code"], rng) + host[cut:], "python"),  # a one-liner with a rare regex
    ]
    return bad, clean


def verdicts(d: Decontaminator, cases) -> list[dict | None]:
    return [d.check(text, lang) for text, lang in cases]


def test_fresh_cached_and_uncached_indexes_give_the_same_verdicts(bench, tmp_path):
    cache = tmp_path / "cache"
    cfg = DecontamConfig(benchmarks_dir=str(bench), cache_dir=str(cache))
    built = fresh(cfg)
    assert built.loaded_from == "built"
    files = sorted(p.name for p in cache.iterdir())
    key = index_key(cfg)
    assert files == [f"{key}.json", f"{key}.npz"]  # nothing else: no pickle, no temp file left
    loaded = fresh(cfg)
    assert loaded.loaded_from == "disk"
    in_memory = Decontaminator(cfg)
    assert in_memory.loaded_from == "memory"
    uncached = fresh(DecontamConfig(benchmarks_dir=str(bench), cache_dir=""))
    assert uncached.loaded_from == "built" and sorted(p.name for p in cache.iterdir()) == files

    bad, clean = planted(bench)
    ref = verdicts(built, bad + clean)
    assert all(v is not None for v in ref[:len(bad)]), ref[:len(bad)]
    assert ref[len(bad):] == [None] * len(clean)
    reasons = {v["reason"] for v in ref[:len(bad)]}
    assert {"benchmark_substring", "benchmark_code", "benchmark_test", "benchmark_code_file",
            "benchmark_code_literal"} <= reasons, reasons
    for other in (loaded, in_memory, uncached):
        assert verdicts(other, bad + clean) == ref  # same reasons, items, fields and matched text

    # the whole index, not only these verdicts: the on-disk form of each is the same
    meta, arrays = built.index.to_arrays()
    for other in (loaded, uncached):
        m, a = other.index.to_arrays()
        assert m == meta and a.keys() == arrays.keys()
        for name in arrays:
            assert a[name].dtype == arrays[name].dtype and np.array_equal(a[name], arrays[name]), name
    with np.load(cache / f"{key}.npz", allow_pickle=False) as z:
        assert all(z[n].dtype != object for n in z.files)


def test_changed_benchmark_file_or_setting_invalidates_the_cache(bench, tmp_path):
    cache = tmp_path / "cache"
    cfg = DecontamConfig(benchmarks_dir=str(bench), cache_dir=str(cache))
    fresh(cfg)
    assert fresh(cfg).loaded_from == "disk"
    victim = read_benchmark(bench / "humaneval.jsonl.gz")[10]
    text = victim["prompt"] + victim["canonical_solution"]
    assert fresh(cfg).check(text)["item"] == "HumanEval/10"

    # the same files in another folder: the same index (the key is their content, not their place)
    moved = tmp_path / "moved"
    shutil.copytree(bench, moved)
    assert fresh(DecontamConfig(benchmarks_dir=str(moved), cache_dir=str(cache))).loaded_from == "disk"

    # a setting that changes the index
    assert fresh(DecontamConfig(benchmarks_dir=str(bench), cache_dir=str(cache), ngram=9)).loaded_from == "built"
    # a benchmark file changed in place (HumanEval/10 removed): rebuilt, and the item is gone from it
    rows = [r for r in read_benchmark(bench / "humaneval.jsonl.gz") if r["task_id"] != "HumanEval/10"]
    with gzip.open(bench / "humaneval.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    d = fresh(cfg)
    assert d.loaded_from == "built"
    hit = d.check(text)
    assert hit is None or hit["item"] != "HumanEval/10"
    assert len(list(cache.glob("*.npz"))) == 3  # three distinct inputs, three entries


@pytest.mark.parametrize("damage", ["flip_npz", "truncate_npz", "edit_json", "drop_npz"])
def test_a_damaged_cache_file_is_rebuilt(bench, tmp_path, damage, caplog):
    cache = tmp_path / "cache"
    cfg = DecontamConfig(benchmarks_dir=str(bench), cache_dir=str(cache))
    ref = fresh(cfg)
    bad, clean = planted(bench)
    key = index_key(cfg)
    npz, js = cache / f"{key}.npz", cache / f"{key}.json"
    good = npz.read_bytes()
    if damage == "flip_npz":  # one byte inside an array: the zip still opens, only the checksum sees it
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        npz.write_bytes(bytes(data))
        with zipfile.ZipFile(npz) as z:  # a damage np.load alone would not notice
            assert z.namelist()
    elif damage == "truncate_npz":
        npz.write_bytes(good[: len(good) // 3])
    elif damage == "edit_json":  # a pattern's text changed, checksum left as it was
        js.write_text(js.read_text().replace("return", "retrun", 1))
    else:
        npz.unlink()
    d = fresh(cfg)
    assert d.loaded_from == "built"
    assert damage == "drop_npz" or "damaged" in caplog.text
    assert verdicts(d, bad + clean) == verdicts(ref, bad + clean)
    assert npz.read_bytes() == good  # rewritten whole (the file is deterministic)
    assert fresh(cfg).loaded_from == "disk"


_RANK = """
import json, sys
from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator
d = Decontaminator(DecontamConfig(benchmarks_dir=sys.argv[1], cache_dir=sys.argv[2]))
cases = json.loads(open(sys.argv[3]).read())
hits = [d.check(t, lang) for t, lang in cases]
print(json.dumps({"from": d.loaded_from, "verdicts": [h and h.as_dict() for h in hits]}))
"""


def test_processes_building_at_once_agree_and_leave_one_intact_entry(bench, tmp_path):
    """Three processes start on an empty cache at once (as MPI ranks do), then one more loads it."""
    cache = tmp_path / "cache"
    bad, clean = planted(bench)
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(bad + clean[:4]))
    cmd = [sys.executable, "-c", _RANK, str(bench), str(cache), str(cases)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len(outs) == 3 and all(o["from"] in ("built", "disk") for o in outs)
    later = json.loads(subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=True).stdout)
    assert later["from"] == "disk"
    assert all(o["verdicts"] == later["verdicts"] for o in outs)
    assert all(v is not None for v in later["verdicts"][:len(bad)])
    key = index_key(DecontamConfig(benchmarks_dir=str(bench), cache_dir=str(cache)))
    assert sorted(p.name for p in cache.iterdir()) == [f"{key}.json", f"{key}.npz"]


def test_cache_location_follows_xdg_and_can_be_disabled(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dc.cache_dir(DecontamConfig()) == tmp_path / "xdg" / "megatron_snow" / "decontam"
    assert dc.cache_dir(DecontamConfig(cache_dir="")) is None
    assert dc.cache_dir(DecontamConfig(cache_dir=str(tmp_path / "c"))) == tmp_path / "c"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dc.cache_dir(DecontamConfig()) == Path.home() / ".cache" / "megatron_snow" / "decontam"


def test_only_the_most_recently_used_entries_are_kept(tmp_path):
    for i in range(5):
        for ext in ("json", "npz"):
            (tmp_path / f"k{i}.{ext}").write_text("x")
            os.utime(tmp_path / f"k{i}.{ext}", ns=(i * 10**9, i * 10**9))
    dc._prune(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"k{i}.{e}" for i in (2, 3, 4) for e in ("json", "npz")]
