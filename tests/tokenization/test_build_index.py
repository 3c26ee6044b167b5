"""build_index: documents -> megatron-core indexed dataset + sidecar, parallel, resumable, verifiable."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from megatron_snow.funnel import Funnel
from megatron_snow.tokenization import load_tokenizer
from megatron_snow.tokenization.build_index import (
    BuildIndexConfig,
    IndexBuildError,
    build_index,
    index_paths,
    read_idx_header,
    verify_index,
)
from megatron_snow.tokenization.inputs import InputError

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("bin", "idx", "docs", "stats", "funnel")


def _build(records, tok, prefix, **kw) -> dict:
    kw.setdefault("progress", False)
    return build_index(BuildIndexConfig(inputs=[str(r) for r in records], tokenizer=str(tok), output_prefix=str(prefix), **kw))


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
    assert read_idx_header(index_paths(single)["idx"])["dtype_code"] == 8  # uint16 below 65,500 ids
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
    stats = _build([corpus_records[0]], sp_model, tmp_path / "w3", workers=3)
    assert len(stats["parts"]) >= 3
    assert _outputs(tmp_path / "w3") == _outputs(single)
    assert not index_paths(tmp_path / "w3")["parts"].exists()  # partial shards cleaned up


def test_shards_split_into_record_ranges(single, corpus_records, sp_model, tmp_path):
    """Small units (records ranges inside shards) change the work split, not the index bytes."""
    stats = _build([corpus_records[0]], sp_model, tmp_path / "small", workers=2, chunk_bytes=20_000)
    ref = json.loads(index_paths(single)["stats"].read_text())
    assert len(stats["plan"]["units"]) > 2 * len(ref["plan"]["units"])
    assert any(u["start"] > 0 for u in stats["plan"]["units"])
    for k in ("bin", "idx"):
        assert index_paths(tmp_path / "small")[k].read_bytes() == index_paths(single)[k].read_bytes()
    assert _sidecar(tmp_path / "small") == _sidecar(single)  # same lines (gzip members split differently)
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
    assert "rank 1/2: built" in r.stdout and "rank 0/2: built" in r.stdout  # both ranks did work
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
    b = _build([src], sp_model, tmp_path / "b", workers=2, chunk_bytes=500)
    assert len(a["plan"]["units"]) > 5
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")
    funnel = Funnel.read(index_paths(tmp_path / "a")["funnel"])
    assert funnel.reasons() == {"bad_json": 1, "empty": 1, "invalid_unicode": 1, "missing_text": 2}
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


def test_resume_reuses_finished_parts(corpus_records, sp_model, tmp_path, single):
    prefix = tmp_path / "r"
    _build([corpus_records[0]], sp_model, prefix, keep_parts=True)
    parts = index_paths(prefix)["parts"]
    # make it look like a run killed after some parts: final files gone, two parts unfinished
    for k in OUTPUTS:
        index_paths(prefix)[k].unlink()
    (parts / "unit-000001.json").unlink()
    (parts / "unit-000002.bin").unlink()
    (parts / "unit-000002.json").unlink()
    kept_part = parts / "unit-000000.bin"
    before = kept_part.stat().st_mtime_ns, kept_part.stat().st_ino
    _build([corpus_records[0]], sp_model, prefix, keep_parts=True)
    assert (kept_part.stat().st_mtime_ns, kept_part.stat().st_ino) == before  # skipped, not rebuilt
    assert (parts / "unit-000002.json").is_file()
    assert _outputs(prefix) == _outputs(single)
    # a finished index is left alone by the same command
    stat_before = index_paths(prefix)["bin"].stat().st_mtime_ns
    _build([corpus_records[0]], sp_model, prefix)
    assert index_paths(prefix)["bin"].stat().st_mtime_ns == stat_before
    # ... but one with a file deleted since is built again
    index_paths(prefix)["idx"].unlink()
    _build([corpus_records[0]], sp_model, prefix)
    assert _outputs(prefix) == _outputs(single)


def test_conflicting_state_is_refused(corpus_records, sp_model, hf_tokenizer_json, tmp_path):
    prefix = tmp_path / "x"
    _build([corpus_records[0]], sp_model, prefix, keep_parts=True)
    with pytest.raises(IndexBuildError, match="built from other inputs"):
        _build([corpus_records[0]], hf_tokenizer_json, prefix)
    index_paths(prefix)["stats"].unlink()
    with pytest.raises(IndexBuildError, match="different build"):
        _build([corpus_records[0]], hf_tokenizer_json, prefix)


def test_bad_inputs_get_clear_errors_and_no_index(sp_model, tmp_path, make_records, make_jsonl):
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="not a finished records dataset"):
        _build([tmp_path / "emptydir"], sp_model, tmp_path / "o1")
    no_shards = make_records(tmp_path / "none", [])
    with pytest.raises(InputError, match="no part-"):
        _build([no_shards], sp_model, tmp_path / "o1")
    with pytest.raises(InputError, match="no such file"):
        _build([tmp_path / "missing.jsonl"], sp_model, tmp_path / "o1")
    only_empty = make_records(tmp_path / "recs", [{"id": "a", "content": ""}, {"id": "b", "content": ""}])
    with pytest.raises(IndexBuildError, match="no documents to index"):
        _build([only_empty], sp_model, tmp_path / "o2")
    assert not any(index_paths(tmp_path / "o2")[k].exists() for k in OUTPUTS)
    blank = make_jsonl(tmp_path / "blank.jsonl", [])
    with pytest.raises(IndexBuildError, match="no documents"):
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
    assert not index_paths(tmp_path / "u16")["parts"].exists()
    stats = _build([src], tmp_path / "big.json", tmp_path / "auto")
    assert stats["dtype"] == "int32" and read_idx_header(index_paths(tmp_path / "auto")["idx"])["dtype_code"] == 4
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


def test_cli_verify_and_train_run_as_scripts(single, corpus_records, tmp_path):
    """The thin CLIs work as `python tools/preprocess/X.py` (beside select.py, which must not shadow stdlib)."""
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
