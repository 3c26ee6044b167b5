"""build_index: documents -> megatron-core indexed dataset + sidecar, parallel, resumable, verifiable."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from megatron_snow.faults import KILL_ENV, TRACE_ENV, read_trace
from megatron_snow.funnel import Funnel
from megatron_snow.tokenization import load_tokenizer
from megatron_snow.stages import RANKS_FILE, StaleOutputError, StepError
from megatron_snow.tokenization.build_index import (
    BuildIndexConfig,
    IndexBuildError,
    build_index,
    index_paths,
    verify_index,
)
from megatron_snow.indexed import read_idx_header
from megatron_snow.tokenization.inputs import InputError

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("bin", "idx", "docs", "stats", "funnel")
ENV1 = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1"}


def _work(prefix) -> Path:
    """Where the stage runner keeps an index's parts and unit markers while building."""
    return index_paths(prefix)["step"] / "_work"


def _build(records, tok, prefix, **kw) -> dict:
    kw.setdefault("progress", False)
    return build_index(BuildIndexConfig(inputs=[str(r) for r in records], tokenizer=str(tok),
                                        output_prefix=str(prefix), **kw))


def _outputs(prefix) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in index_paths(prefix).items() if k in OUTPUTS}


def _sidecar(prefix) -> list[dict]:
    with gzip.open(index_paths(prefix)["docs"], "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def single(corpus_records, sp_model, tmp_path_factory) -> Path:
    """The corpus indexed by one process, one worker: the reference bytes."""
    prefix = tmp_path_factory.mktemp("single") / "corpus"
    _build([corpus_records[0]], sp_model, prefix, workers=1)
    return prefix


def test_index_contents_counts_and_sidecar(single, corpus_records, sp_model):
    _, docs = corpus_records
    tok = load_tokenizer(sp_model)
    stats = json.loads(index_paths(single)["stats"].read_text())
    kept = [d for d in docs if d["content"]]
    assert stats["documents"] == len(kept) and stats["dtype"] == "uint16"
    assert read_idx_header(index_paths(single)["idx"]).dtype_code == 8  # uint16 below 65,500 ids
    side = _sidecar(single)
    assert [s["id"] for s in side] == [d["id"] for d in kept]  # input order, every document traceable
    expect: dict[str, dict[str, int]] = {}
    for d in kept:
        c = expect.setdefault(d["language"], {"documents": 0, "tokens": 0})
        c["documents"] += 1
        c["tokens"] += len(tok.encode(d["content"])) + 1  # + EOD
    assert stats["languages"] == expect
    funnel = Funnel.read(index_paths(single)["funnel"])
    funnel.check()
    assert funnel.reasons() == {"empty": 1}  # the one empty document is counted, not indexed
    report = verify_index(single, sample=1000)
    assert report["ok"], report["errors"]
    assert report["checked"]["decoded"] == len(kept)


def test_round_trip_through_megatron_gpt_dataset(single, corpus_records, sp_model, tmp_path):
    """text -> index -> GPTDataset samples -> stitched back in order -> decoded text == source."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    _, docs = corpus_records
    by_id = {d["id"]: d["content"] for d in docs}
    tok = load_tokenizer(sp_model)
    seq = 128
    cfg = GPTDatasetConfig(random_seed=7, sequence_length=seq, blend=([str(single)], None), split="100,0,0",
                           path_to_cache=str(tmp_path / "cache"), tokenizer=tok, reset_position_ids=False,
                           reset_attention_mask=False, eod_mask_loss=False)
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [None, None, None], lambda: True, cfg).build()
    assert isinstance(train, GPTDataset) and len(train) > 10
    # samples come shuffled; put them back in stream order (sample k starts at token k * seq)
    order = np.argsort(train.shuffle_index)
    stream: list[int] = []
    for k, j in enumerate(order):
        s = train[int(j)]
        sample = s["tokens"].tolist() + s["labels"][-1:].tolist()
        assert len(sample) == seq + 1
        stream += sample if k == 0 else sample[1:]  # consecutive samples share one token
    segments = np.split(np.asarray(stream), np.flatnonzero(np.asarray(stream) == tok.eod_id) + 1)
    side = _sidecar(single)
    n_full = 0
    for i, seg in enumerate(segments):
        source = by_id[side[int(train.document_index[i])]["id"]]  # sample -> index document -> source record
        if seg.size and seg[-1] == tok.eod_id:
            assert tok.decode(seg[:-1].tolist()) == source
            n_full += 1
        else:  # the epoch's tail that does not fill a whole sample
            assert tok.encode(source)[: seg.size] == seg.tolist()
    assert n_full >= len(side) - 2


def test_one_vs_three_workers_byte_identical(single, corpus_records, sp_model, tmp_path):
    _build([corpus_records[0]], sp_model, tmp_path / "w3", workers=3)
    assert _outputs(tmp_path / "w3") == _outputs(single)
    assert not _work(tmp_path / "w3").exists()  # partial indexes cleaned up
    assert (index_paths(tmp_path / "w3")["step"] / "manifest.json").is_file()


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "records"])
def test_one_unit_is_split_so_every_worker_works(sp_model, tmp_path, make_jsonl, make_records, kind, capsys):
    """One input unit and 3 workers: it is cut into 3 (byte ranges or records), 3 processes each tokenize
    a part, the run says how it split, and the bytes equal the one-worker build's."""
    rows = [{"id": f"d{i}", "text": f"def f{i}():\n    return {i}\n" * (1 + i % 4), "language": "python"}
            for i in range(40)]
    if kind == "records":
        src = make_records(tmp_path / "recs", [{"id": r["id"], "content": r["text"], "language": r["language"]}
                                               for r in rows], per_shard=100)
    else:
        src = make_jsonl(tmp_path / "d.jsonl", rows)
        if kind == "jsonl.gz":
            gz = tmp_path / "d.jsonl.gz"
            gz.write_bytes(gzip.compress(src.read_bytes()))
            src = gz
    one = _build([src], sp_model, tmp_path / "one", workers=1)
    capsys.readouterr()
    three = _build([src], sp_model, tmp_path / "three", workers=3, keep_parts=True)
    said = capsys.readouterr().out
    assert len(one["plan"]["units"]) == 1 and three["plan"] == one["plan"]
    assert ("byte ranges" if kind == "jsonl" else "record ranges") in said and "-> 3 units" in said, said
    markers = sorted(_work(tmp_path / "three").glob("unit-*.json"))
    infos = [json.loads(p.read_text())["part"] for p in markers]
    assert len(infos) == 3 and all(i["documents"] > 0 for i in infos)  # three processes, each with documents
    assert len({p.stat().st_mtime_ns for p in markers}) == 3
    assert _outputs(tmp_path / "three") == _outputs(tmp_path / "one")


def test_shards_split_into_record_ranges(single, corpus_records, sp_model, tmp_path):
    """Small units (records ranges inside shards) change the work split, not the index bytes."""
    stats = _build([corpus_records[0]], sp_model, tmp_path / "small", workers=2, chunk_bytes=20_000)
    ref = json.loads(index_paths(single)["stats"].read_text())
    assert len(stats["plan"]["units"]) > 2 * len(ref["plan"]["units"])
    assert any(u["start"] > 0 for u in stats["plan"]["units"])
    for k in ("bin", "idx"):
        assert index_paths(tmp_path / "small")[k].read_bytes() == index_paths(single)[k].read_bytes()
    assert index_paths(tmp_path / "small")["docs"].read_bytes() == index_paths(single)["docs"].read_bytes()
    assert stats["languages"] == ref["languages"]
    assert verify_index(tmp_path / "small", sample=10_000)["ok"]


@pytest.mark.mpi
def test_one_vs_two_mpi_ranks_byte_identical(single, corpus_records, sp_model, tmp_path):
    prefix = tmp_path / "mpi2"
    cmd = ["mpiexec", "-n", "2", sys.executable, str(REPO / "tools/preprocess/build_index.py"),
           "--input", str(corpus_records[0]), "--tokenizer", str(sp_model), "--output-prefix", str(prefix),
           "--workers", "2", "progress=false"]  # 2 ranks x 2 forked workers each
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for rank in (0, 1):  # each rank reported its rank and the world size, with work done
        assert re.search(rf"build_index rank {rank}/2: built [1-9]", r.stdout), r.stdout[-2000:]
    assert _outputs(prefix) == _outputs(single)


def test_jsonl_input_split_into_ranges(sp_model, tmp_path, make_jsonl):
    rows = []
    for i in range(60):
        rows.append({"text": f"def f{i}():\n\treturn {i}  \n" * (1 + i % 5), "language": "python" if i % 2 else "c"})
    rows[3] = "{not json"
    rows[7] = {"body": "no text field"}
    rows[8] = {"text": 123}
    rows[9] = {"text": ""}
    rows[10] = {"text": "bad \ud800 surrogate"}
    src = make_jsonl(tmp_path / "data.jsonl", rows)
    a = _build([src], sp_model, tmp_path / "a", workers=1, chunk_bytes=500)
    _build([src], sp_model, tmp_path / "b", workers=2, chunk_bytes=500)
    assert len(a["plan"]["units"]) > 5
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")
    funnel = Funnel.read(index_paths(tmp_path / "a")["funnel"])
    assert funnel.reasons() == {"invalid_json": 1, "empty": 1, "invalid_unicode": 1, "missing_text": 2}
    assert funnel.total("in")[0] == 60
    # every good line exactly once, in file order, across range boundaries; ids default to file@offset
    offsets, pos = [], 0
    for line in src.read_bytes().splitlines(keepends=True):
        offsets.append(pos)
        pos += len(line)
    good = [i for i in range(60) if i not in (3, 7, 8, 9, 10)]
    assert [s["id"] for s in _sidecar(tmp_path / "a")] == [f"data.jsonl@{offsets[i]}" for i in good]
    assert verify_index(tmp_path / "a", sample=100)["ok"]
    # the same rows gzip-compressed give the same index contents
    gz = tmp_path / "data.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    c = _build([gz], sp_model, tmp_path / "c")
    assert index_paths(tmp_path / "c")["bin"].read_bytes() == index_paths(tmp_path / "a")["bin"].read_bytes()
    assert c["languages"] == a["languages"]


def test_huggingface_tokenizer_builds_and_verifies(corpus_records, hf_tokenizer_json, tmp_path):
    records, docs = corpus_records
    stats = _build([records], hf_tokenizer_json, tmp_path / "hf", workers=2)
    tok = load_tokenizer(hf_tokenizer_json)
    assert stats["eod_id"] == tok.eod_id and stats["tokenizer_sha256"] == tok.sha256
    report = verify_index(tmp_path / "hf", sample=10_000)
    assert report["ok"], report["errors"]
    assert report["checked"]["decoded"] == sum(1 for d in docs if d["content"])
    # the literal "<|endoftext|>" in a document did not become an EOD: one EOD per document
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(tmp_path / "hf"))
    assert all(int((ds[i] == tok.eod_id).sum()) == 1 for i in range(len(ds)))


@pytest.mark.slow
def test_resume_after_sigkill_redoes_only_unfinished_parts(corpus_records, sp_model, tmp_path, single):
    """SIGKILL after 3 finished units (a kill point of megatron_snow/faults.py); the same command
    then builds only the other units and the index bytes equal an uninterrupted build's."""
    prefix = tmp_path / "r"
    cmd = ["build-index", "--input", str(corpus_records[0]), "--tokenizer", str(sp_model), "--output-prefix",
           str(prefix), "progress=false", "keep_parts=true"]
    killed = subprocess.run([sys.executable, "-m", "megatron_snow", *cmd], capture_output=True, text=True,
                            timeout=300, cwd=REPO, env={**ENV1, KILL_ENV: "unit.marker_written:*@3"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    markers = sorted(_work(prefix).glob("unit-*.json"))
    assert len(markers) == 3 and not index_paths(prefix)["bin"].exists()
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in _work(prefix).glob("part-0000[0-2].*")}
    assert len(before) == 9  # .bin, .idx, .docs.jsonl of units 0-2
    r = subprocess.run([sys.executable, "-m", "megatron_snow", *cmd], capture_output=True, text=True, timeout=300,
                       cwd=REPO, env=ENV1)
    assert r.returncode == 0, r.stderr[-2000:]
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in _work(prefix).glob("part-0000[0-2].*")}
    assert after == before  # skipped, not rebuilt
    n_units = len(json.loads(index_paths(single)["stats"].read_text())["units"])
    ranks = json.loads((index_paths(prefix)["step"] / RANKS_FILE).read_text())["ranks"]
    assert ranks[0]["units"] == list(range(3, n_units))
    assert _outputs(prefix) == _outputs(single)
    # a finished index is left alone by the same command
    stat_before = index_paths(prefix)["bin"].stat().st_mtime_ns
    _build([corpus_records[0]], sp_model, prefix)
    assert index_paths(prefix)["bin"].stat().st_mtime_ns == stat_before
    # ... but one with a file deleted since is built again
    index_paths(prefix)["idx"].unlink()
    _build([corpus_records[0]], sp_model, prefix)
    assert _outputs(prefix) == _outputs(single)


def test_other_tokenizer_or_unknown_output_is_refused_in_one_line(corpus_records, sp_model, hf_tokenizer_json,
                                                                   tmp_path, single):
    prefix = tmp_path / "x"
    _build([corpus_records[0]], sp_model, prefix)
    with pytest.raises(StaleOutputError, match=r"was made with other inputs \(tokenizer: .*; re-run with --force"):
        _build([corpus_records[0]], hf_tokenizer_json, prefix)
    with pytest.raises(StaleOutputError, match=r"other settings \(dtype: 'uint16' -> 'int32'\)"):
        _build([corpus_records[0]], sp_model, prefix, dtype="int32")
    r = subprocess.run([sys.executable, str(REPO / "tools/preprocess/build_index.py"), "--input",
                        str(corpus_records[0]), "--tokenizer", str(hf_tokenizer_json), "--output-prefix", str(prefix),
                        "progress=false"], capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV1)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--force" in r.stderr, r.stderr
    stats = build_index(BuildIndexConfig(inputs=[str(corpus_records[0])], tokenizer=str(hf_tokenizer_json),
                                         output_prefix=str(prefix), progress=False), force=True)
    assert stats["tokenizer_sha256"] == load_tokenizer(hf_tokenizer_json).sha256
    # index files of unknown origin (no PREFIX.step/step.json) are not overwritten
    _copy_index(single, tmp_path / "copy")
    with pytest.raises(StaleOutputError, match="unknown origin"):
        _build([corpus_records[0]], sp_model, tmp_path / "copy")


def test_bad_inputs_get_clear_errors_and_no_index(sp_model, tmp_path, make_records, make_jsonl):
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="not a finished records dataset"):
        _build([tmp_path / "emptydir"], sp_model, tmp_path / "o1")
    no_shards = make_records(tmp_path / "none", [])
    with pytest.raises(InputError, match="has no shards"):
        _build([no_shards], sp_model, tmp_path / "o1")
    with pytest.raises(InputError, match="no such file"):
        _build([tmp_path / "missing.jsonl"], sp_model, tmp_path / "o1")
    only_empty = make_records(tmp_path / "recs", [{"id": "a", "content": ""}, {"id": "b", "content": ""}])
    with pytest.raises(StepError, match="no documents to index") as e:
        _build([only_empty], sp_model, tmp_path / "o2")
    assert e.value.exit_code == 2
    assert not any(index_paths(tmp_path / "o2")[k].exists() for k in OUTPUTS)
    blank = make_jsonl(tmp_path / "blank.jsonl", [])
    with pytest.raises(StepError, match="no documents"):
        _build([blank], sp_model, tmp_path / "o3")


def test_large_vocabulary_needs_int32(tmp_path, make_jsonl):
    """A real 70,000-id tokenizer: uint16 is refused up front; auto picks int32, which megatron-core reads."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(70_000)}
    vocab["<|endoftext|>"] = 70_000
    vocab["[UNK]"] = 70_001
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t.save(str(tmp_path / "big.json"))
    src = make_jsonl(tmp_path / "d.jsonl", [{"text": "w1 w69999 w65536"}, {"text": "w70000 w5"}])
    with pytest.raises(IndexBuildError, match="does not fit uint16"):
        _build([src], tmp_path / "big.json", tmp_path / "u16", dtype="uint16")
    assert not index_paths(tmp_path / "u16")["step"].exists()
    stats = _build([src], tmp_path / "big.json", tmp_path / "auto")
    assert stats["dtype"] == "int32" and read_idx_header(index_paths(tmp_path / "auto")["idx"]).dtype_code == 4
    ds = IndexedDataset(str(tmp_path / "auto"))
    assert ds[0].tolist() == [1, 69999, 65536, 70_000] and ds[1].tolist() == [70_001, 5, 70_000]
    assert verify_index(tmp_path / "auto", sample=0)["ok"]


def _copy_index(src, dst) -> None:
    for k in OUTPUTS:
        shutil.copy(index_paths(src)[k], index_paths(dst)[k])


def test_verify_catches_corruption(single, tmp_path):
    stats = json.loads(index_paths(single)["stats"].read_text())
    dtype = np.dtype(stats["dtype"])
    side = _sidecar(single)
    sizes = [s["tokens"] for s in side]
    d = max(range(len(sizes)), key=lambda i: sizes[i])  # a long document
    start = sum(sizes[:d])

    def corrupted(name, fn):
        prefix = tmp_path / name
        _copy_index(single, prefix)
        fn(prefix)
        return verify_index(prefix, sample=10_000)

    def flip_token(prefix):  # one token of one document changed (not to EOD)
        data = np.memmap(index_paths(prefix)["bin"], dtype=dtype, mode="r+")
        data[start + 5] = 300 if int(data[start + 5]) != 300 else 301
        data.flush()

    r = corrupted("flip", flip_token)
    assert not r["ok"] and any("does not decode to its source" in e for e in r["errors"]), r["errors"]

    def drop_eod(prefix):
        data = np.memmap(index_paths(prefix)["bin"], dtype=dtype, mode="r+")
        data[start + sizes[d] - 1] = 300
        data.flush()

    r = corrupted("eod", drop_eod)
    assert any("do not end with EOD" in e for e in r["errors"]), r["errors"]

    def truncate_sidecar(prefix):
        p = index_paths(prefix)["docs"]
        lines = gzip.decompress(p.read_bytes()).splitlines(keepends=True)
        p.write_bytes(gzip.compress(b"".join(lines[:-1])))

    r = corrupted("side", truncate_sidecar)
    assert any("sidecar has" in e for e in r["errors"]), r["errors"]

    def grow_bin(prefix):
        with open(index_paths(prefix)["bin"], "ab") as f:
            f.write(b"\0\0")

    r = corrupted("grow", grow_bin)
    assert any(".bin is" in e for e in r["errors"]), r["errors"]

    def bad_magic(prefix):
        p = index_paths(prefix)["idx"]
        p.write_bytes(b"XXXX" + p.read_bytes()[4:])

    r = corrupted("magic", bad_magic)
    assert not r["ok"] and "bad magic" in r["errors"][0]

    # damaged files are findings, never a traceback
    def cut_idx(prefix):
        p = index_paths(prefix)["idx"]
        p.write_bytes(p.read_bytes()[:60])

    r = corrupted("cutidx", cut_idx)
    assert not r["ok"] and "truncated" in r["errors"][0], r["errors"]

    def garbage_sidecar(prefix):
        index_paths(prefix)["docs"].write_bytes(b"\x1f\x8b\x08garbage")

    r = corrupted("gsidecar", garbage_sidecar)
    assert not r["ok"] and any("damaged sidecar" in e for e in r["errors"]), r["errors"]

    def garbage_stats(prefix):
        index_paths(prefix)["stats"].write_text("{not json")

    r = corrupted("gstats", garbage_stats)
    assert not r["ok"] and "unreadable" in r["errors"][0], r["errors"]

    def huge_header(prefix):  # a header promising more sequences than the file holds
        p = index_paths(prefix)["idx"]
        b = bytearray(p.read_bytes())
        b[18:26] = (10**9).to_bytes(8, "little")
        p.write_bytes(bytes(b))

    r = corrupted("hdr", huge_header)
    assert not r["ok"] and "promises" in r["errors"][0], r["errors"]
    cli = subprocess.run([sys.executable, str(REPO / "tools/preprocess/build_index.py"), "--verify",
                          str(tmp_path / "hdr")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr and "verify: FAILED" in cli.stdout, cli.stderr


def test_cli_verify_and_train_run_as_scripts(single, corpus_records, tmp_path):
    """The thin CLIs work as `python tools/preprocess/X.py`."""
    r = subprocess.run([sys.executable, str(REPO / "tools/preprocess/build_index.py"), "--verify", str(single),
                        "--sample", "5"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0 and "verify: OK" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    out = tmp_path / "cli.model"
    r = subprocess.run([sys.executable, str(REPO / "tools/preprocess/train_tokenizer.py"), "--input",
                        str(corpus_records[0]), "--output", str(out), "vocab_size=600", "sample_bytes=200000",
                        "num_threads=1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    r = subprocess.run([sys.executable, str(REPO / "tools/preprocess/train_tokenizer.py"), "--input",
                        str(corpus_records[0]), "--output", str(out), "vocab_sise=600"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and "unknown key 'vocab_sise'" in r.stderr
    r = subprocess.run([sys.executable, str(REPO / "tools/preprocess/build_index.py"), "workers=0"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and "workers=0 is out of range" in r.stderr and "Traceback" not in r.stderr


def test_grouped_repository_documents_trace_to_files(sp_model, tmp_path, make_records):
    """Phase-1 grouped documents: file separators are single tokens, the sidecar lists each document's files."""
    from megatron_snow.phase1.grouping import GroupingConfig, build_documents
    from megatron_snow.records import CodeRecord

    files = [CodeRecord(id=f"f{i}", content=f"def g{i}():\n\treturn {i}\n", language="python", repo=f"org/r{i % 2}",
                        path=f"pkg/m{i}.py") for i in range(6)]
    docs = build_documents(files, GroupingConfig())
    recs = make_records(tmp_path / "grouped", [d.to_dict() for d in docs])
    _build([recs], sp_model, tmp_path / "g")
    tok = load_tokenizer(sp_model)
    side = _sidecar(tmp_path / "g")
    assert sorted(f for s in side for f in s["file_ids"]) == [f"f{i}" for i in range(6)]
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(tmp_path / "g"))
    for i, s in enumerate(side):
        ids = ds[i].tolist()
        assert ids.count(tok.file_sep_id) == len(s["file_ids"])  # one separator token per file
        assert tok.decode(ids[:-1]) == next(d.content for d in docs if d.id == s["id"])


@pytest.mark.slow
def test_damaged_shard_is_counted_and_a_lying_manifest_fails(sp_model, tmp_path, make_records, corpus_records):
    """A truncated records shard: every record its manifest promised is accounted for (the lost ones as
    corrupt_gzip), the readable ones indexed. A manifest that under-counts its shard stops the build."""
    rng = np.random.default_rng(0)
    rows = [{"id": f"d{i:02d}", "content": "".join(f"v{int(x)} = {int(x) * 7}\n" for x in rng.integers(0, 10**9, 40)),
             "language": "python"} for i in range(30)]
    recs = make_records(tmp_path / "recs", rows, per_shard=10)  # 3 shards
    shard = sorted(recs.glob("part-*.jsonl.gz"))[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    stats = _build([recs], sp_model, tmp_path / "t", workers=2)
    funnel = Funnel.read(index_paths(tmp_path / "t")["funnel"])
    funnel.check()
    lost = funnel.reasons().get("corrupt_gzip", 0)
    assert funnel.total("in")[0] == 30 and 0 < lost < 10 and stats["documents"] == 30 - lost
    ids = [s["id"] for s in _sidecar(tmp_path / "t")]
    assert ids == [r["id"] for r in rows[: 10 + (10 - lost)]] + [r["id"] for r in rows[20:]]

    # A manifest that says shard 1 holds 8 records (it holds 10): the build fails, naming the shard.
    liar = make_records(tmp_path / "liar", rows, per_shard=10)
    m = json.loads((liar / "manifest.json").read_text())
    m["shards"][1]["records"] -= 2
    m["records"] -= 2
    (liar / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StepError, match="part-00001.jsonl.gz holds 10 records but its manifest says 8"):
        _build([liar], sp_model, tmp_path / "l", workers=2)
    assert not index_paths(tmp_path / "l")["stats"].exists()
    # under 2 MPI ranks the unit of shard 1 is rank 1's: every rank ends, rank 0 says the one line
    assert shutil.which("mpiexec"), "mpiexec not on PATH: this case needs 2 MPI ranks (no fallback to one)"
    cmd = ["mpiexec", "-n", "2", sys.executable, str(REPO / "tools/preprocess/build_index.py"), "--input", str(liar),
           "--tokenizer", str(sp_model), "--output-prefix", str(tmp_path / "l2"), "progress=false",
           "batch_docs=1"]  # each document written as it is read: rank 1 adds shard 1's before the count is wrong
    trace = tmp_path / "l2.trace"  # the points each process passed (megatron_snow/faults.py): who tokenized what
    cli = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, TRACE_ENV: str(trace)})
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr[-2000:]
    errors = [line for line in cli.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("build-index: error: build_index: unit 1 ("), cli.stderr
    assert "manifest says 8" in errors[0] and not index_paths(tmp_path / "l2")["bin"].exists()
    pids = {name.split(":")[1]: pid for name, pid in read_trace(trace) if name.startswith("index.document:")}
    assert set(pids) >= {"part-00000", "part-00001"} and pids["part-00000"] != pids["part-00001"], pids


def test_train_tokenizer_counts_a_truncated_gzip(corpus_records, tmp_path):
    """A truncated .jsonl.gz given to train_tokenizer: the damaged end is counted, the model is trained."""
    from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer

    _, docs = corpus_records
    raw = "".join(json.dumps({"id": d["id"], "text": d["content"], "language": d["language"]}) + "\n" for d in docs)
    gz = gzip.compress(raw.encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(gz[: int(len(gz) * 0.8)])
    report = train_tokenizer(TrainTokenizerConfig(inputs=[str(tmp_path / "cut.jsonl.gz")],
                                                  output=str(tmp_path / "t.model"),
                                                  vocab_size=600, sample_bytes=200_000, num_threads=1))
    funnel = Funnel.from_dict(report["funnel"])
    funnel.check()
    assert funnel.reasons().get("corrupt_gzip") == 1 and 0 < funnel.total("kept")[0] < len(docs)
    assert (tmp_path / "t.model").is_file()
