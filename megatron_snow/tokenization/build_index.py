"""Documents -> Megatron indexed dataset (``PREFIX.bin`` / ``PREFIX.idx``) plus a sidecar.

Layout written beside the index::

    PREFIX.bin, PREFIX.idx       megatron-core IndexedDataset (one sequence per document, EOD appended)
    PREFIX.docs.jsonl.gz         sidecar: line i = document i of the index {id, language, repo, path, tokens,
                                 file_ids (the files of a grouped repository document, when the record has them)}
    PREFIX.funnel.json           documents in = kept + dropped per reason, per language
    PREFIX.stats.json            per-language document/token counts, dtype, tokenizer hash, input plan;
                                 written last, so its presence means the index is complete

How the work is split: the input is cut into units (``inputs.plan_units``)
that do not depend on the number of workers or ranks. Each unit becomes one
partial index ``PREFIX.parts/unit-NNNNNN.*``; MPI ranks take units round-robin
and each rank spreads its units over ``workers`` processes. Rank 0 then
concatenates the parts in unit order (megatron-core ``add_index``), so the
output bytes are the same for any number of workers or ranks. A part whose
``.json`` marker exists is finished: a killed run restarted with the same
command skips it.

Documents: an empty document is not written (an index entry holding only EOD
trains nothing) and is counted as ``dropped:empty``; a line that is not a JSON
object, or has no text field, is ``bad_json`` / ``missing_text``; text with
lone surrogates (cannot be UTF-8) is ``invalid_unicode``. Any token id outside
the vocabulary stops the build with an error rather than writing it.
"""
from __future__ import annotations

import gc
import gzip
import io
import json
import multiprocessing
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from megatron_snow.dist import Comm, get_comm, my_items
from megatron_snow.funnel import Funnel
from megatron_snow.indexed import index_dtype
from megatron_snow.tokenization.inputs import Document, Unit, plan_units, read_unit
from megatron_snow.tokenization.tokenizer import CodeTokenizer, load_tokenizer

FORMAT = "megatron-snow-index-v1"
_DTYPES = {"uint16": np.uint16, "int32": np.int32}
_IDX_MAGIC = b"MMIDIDX\x00\x00"
_DTYPE_CODES = {np.uint16: 8, np.int32: 4}


@dataclass
class BuildIndexConfig:
    inputs: list[str] = field(default_factory=list)  # records directories and/or JSONL files
    output_prefix: str = ""  # writes OUTPUT_PREFIX.bin/.idx/...
    tokenizer: str = ""  # SentencePiece .model or Hugging Face tokenizer.json
    workers: int = 1  # processes per MPI rank
    dtype: Literal["auto", "uint16", "int32"] = "auto"  # auto: uint16 below 65,500 ids, int32 above
    chunk_bytes: int = 64 << 20  # units of about this many bytes of text (shards split by records, .jsonl by bytes)
    batch_docs: int = 64  # documents per encode_batch call
    text_field: str = "text"  # JSONL inputs only (records datasets use "content")
    id_field: str = "id"
    language_field: str = "language"
    keep_parts: bool = False  # keep PREFIX.parts/ after a successful merge
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1 or self.batch_docs < 1 or self.chunk_bytes < 1:
            raise ValueError("workers, batch_docs and chunk_bytes must be >= 1")


class IndexBuildError(RuntimeError):
    """The index cannot be built as asked; nothing final was written."""


def index_paths(prefix: str | Path) -> dict[str, Path]:
    p = str(prefix)
    return {
        "bin": Path(f"{p}.bin"),
        "idx": Path(f"{p}.idx"),
        "docs": Path(f"{p}.docs.jsonl.gz"),
        "funnel": Path(f"{p}.funnel.json"),
        "stats": Path(f"{p}.stats.json"),
        "parts": Path(f"{p}.parts"),
    }


def choose_dtype(vocab_size: int, dtype: str = "auto") -> type[np.number]:
    """The token dtype; an explicit dtype too small for the vocabulary is an error."""
    if dtype == "auto":
        return index_dtype(vocab_size)
    if dtype not in _DTYPES:
        raise IndexBuildError(f"dtype must be auto, uint16 or int32, got {dtype!r}")
    np_dtype = _DTYPES[dtype]
    limit = int(np.iinfo(np_dtype).max) + 1
    if vocab_size > limit:
        raise IndexBuildError(
            f"tokenizer vocabulary of {vocab_size} ids does not fit {dtype} (at most {limit} ids); use dtype=int32 or auto"
        )
    return np_dtype


def unusable_reason(doc: Document) -> str | None:
    """Why a document is not written to the index (None: it is written)."""
    if doc.error:
        return doc.error
    if doc.text == "":
        return "empty"
    try:
        doc.text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_unicode"
    return None


def _doc_bytes(doc: Document) -> int:
    return len(doc.text.encode("utf-8", "surrogatepass")) if doc.text else 0


def _plan(cfg: BuildIndexConfig, tok: CodeTokenizer, units: list[Unit], dtype: type[np.number]) -> dict:
    """What determines the output bytes; a resumed run must match it."""
    return {
        "format": FORMAT,
        "units": [u.to_dict() for u in units],
        "tokenizer_sha256": tok.sha256,
        "vocab_size": tok.vocab_size,
        "eod_id": tok.eod_id,
        "dtype": np.dtype(dtype).name,
        "fields": [cfg.text_field, cfg.id_field, cfg.language_field],
    }


# -- one unit -> one partial index ---------------------------------------------
_TOK: CodeTokenizer | None = None


def _init_worker(tok: CodeTokenizer) -> None:
    global _TOK
    _TOK = tok


def _gzip_bytes(lines: list[str]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write("".join(lines).encode("utf-8"))
    return raw.getvalue()


def build_part(unit_index: int, unit: Unit, part_prefix: str, cfg: BuildIndexConfig, dtype: type[np.number],
               tok: CodeTokenizer | None = None) -> dict:
    """Tokenize one unit into ``part_prefix.{bin,idx,docs.jsonl.gz}``; ``part_prefix.json`` marks it done."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tok = tok or _TOK
    assert tok is not None
    pid = os.getpid()
    tmp = {k: f"{part_prefix}.{k}.tmp-{pid}" for k in ("bin", "idx", "docs")}
    builder = IndexedDatasetBuilder(tmp["bin"], dtype=dtype)
    funnel = Funnel("build_index")
    languages: dict[str, list[int]] = {}
    side: list[str] = []
    n_docs = n_tokens = 0
    batch: list[Document] = []

    def flush() -> None:
        nonlocal n_docs, n_tokens
        encoded = tok.encode_batch([d.text for d in batch], num_threads=1)
        for d, ids in zip(batch, encoded):
            arr = np.empty(len(ids) + 1, dtype=np.int64)
            arr[:-1] = ids
            arr[-1] = tok.eod_id
            if arr.min() < 0 or arr.max() >= tok.vocab_size:
                raise IndexBuildError(f"document {d.id!r}: token id {int(arr.max())} outside the vocabulary of {tok.vocab_size}")
            builder.add_document(arr, [arr.size])
            entry = {"id": d.id, "language": d.language, "repo": d.repo, "path": d.path, "tokens": int(arr.size)}
            if d.file_ids:
                entry["file_ids"] = d.file_ids
            side.append(json.dumps(entry, sort_keys=True) + "\n")  # ASCII: ids with lone surrogates stay writable
            c = languages.setdefault(d.language or "unknown", [0, 0])
            c[0] += 1
            c[1] += int(arr.size)
            n_docs += 1
            n_tokens += int(arr.size)
        batch.clear()

    for doc in read_unit(unit, cfg.text_field, cfg.id_field, cfg.language_field):
        nbytes = _doc_bytes(doc)
        funnel.seen(doc.language, nbytes)
        reason = unusable_reason(doc)
        if reason:
            funnel.dropped(doc.language, nbytes, reason)
            continue
        funnel.kept(doc.language, nbytes)
        batch.append(doc)
        if len(batch) >= cfg.batch_docs:
            flush()
    if batch:
        flush()
    builder.finalize(tmp["idx"])
    Path(tmp["docs"]).write_bytes(_gzip_bytes(side))
    for k in ("bin", "idx", "docs"):
        os.replace(tmp[k], f"{part_prefix}.{'docs.jsonl.gz' if k == 'docs' else k}")
    info = {"unit": unit_index, "documents": n_docs, "tokens": n_tokens,
            "languages": {k: {"documents": v[0], "tokens": v[1]} for k, v in sorted(languages.items())},
            "funnel": funnel.to_dict()}
    marker = Path(f"{part_prefix}.json")
    marker.with_name(marker.name + f".tmp-{pid}").write_text(json.dumps(info, sort_keys=True))
    os.replace(marker.with_name(marker.name + f".tmp-{pid}"), marker)
    return info


def _build_part_star(args: tuple) -> dict:
    return build_part(*args)


def _part_prefix(parts_dir: Path, i: int) -> str:
    return str(parts_dir / f"unit-{i:06d}")


def _part_done(part_prefix: str) -> bool:
    """A part is finished when its marker (written last) and its three files exist."""
    return all(os.path.isfile(part_prefix + s) for s in (".json", ".bin", ".idx", ".docs.jsonl.gz"))


# -- the whole build -----------------------------------------------------------
def _prepare(paths: dict[str, Path], plan: dict) -> str:
    """Rank 0: 'done' if the index exists for this plan, 'ok' to build; raises on a conflicting state."""
    if paths["stats"].is_file():
        stats = json.loads(paths["stats"].read_text())
        if stats.get("plan") != plan:
            raise IndexBuildError(f"{paths['stats']} exists but was built from other inputs/tokenizer/settings; "
                                  "remove the old index or choose another output prefix")
        if all(paths[k].is_file() for k in ("bin", "idx", "docs", "funnel")):
            return "done"
        paths["stats"].unlink()  # some output was deleted since: build again
    parts = paths["parts"]
    parts.mkdir(parents=True, exist_ok=True)
    plan_file = parts / "plan.json"
    if plan_file.is_file():
        if json.loads(plan_file.read_text()) != plan:
            raise IndexBuildError(f"{parts} holds partial results of a different build (inputs, tokenizer or "
                                  "settings changed); delete it to start over")
    else:
        plan_file.write_text(json.dumps(plan, indent=1, sort_keys=True))
    return "ok"


def _merge(paths: dict[str, Path], plan: dict, dtype: type[np.number], cfg: BuildIndexConfig) -> dict:
    """Rank 0: concatenate parts in unit order into the final files; stats written last."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    n_units = len(plan["units"])
    infos = [json.loads(Path(_part_prefix(paths["parts"], i) + ".json").read_text()) for i in range(n_units)]
    funnel = Funnel("build_index")
    languages: dict[str, dict[str, int]] = {}
    for info in infos:
        funnel.merge(info["funnel"])
        for lang, c in info["languages"].items():
            t = languages.setdefault(lang, {"documents": 0, "tokens": 0})
            t["documents"] += c["documents"]
            t["tokens"] += c["tokens"]
    funnel.check()
    n_docs = sum(i["documents"] for i in infos)
    if n_docs == 0:
        raise IndexBuildError(f"no documents to index: the input holds no non-empty documents\n{funnel.table()}")

    pid = os.getpid()
    tmp = {k: Path(f"{paths[k]}.tmp-{pid}") for k in ("bin", "idx", "docs")}
    builder = IndexedDatasetBuilder(str(tmp["bin"]), dtype=dtype)
    # add_index runs gc.collect() for every part; with torch imported that is ~0.3 s a call. Freezing
    # the objects that exist now keeps those collections short (the merge itself allocates little).
    gc.freeze()
    try:
        with open(tmp["docs"], "wb") as side:
            for i in range(n_units):
                pp = _part_prefix(paths["parts"], i)
                builder.add_index(pp)
                with open(pp + ".docs.jsonl.gz", "rb") as f:  # gzip members concatenate into one valid stream
                    shutil.copyfileobj(f, side)
        builder.finalize(str(tmp["idx"]))
    finally:
        gc.unfreeze()
    for k in ("bin", "idx", "docs"):
        os.replace(tmp[k], paths[k])
    funnel.write(paths["funnel"])
    stats = {
        "format": FORMAT,
        "documents": n_docs,
        "tokens": sum(i["tokens"] for i in infos),
        "languages": dict(sorted(languages.items())),
        "dtype": plan["dtype"],
        "vocab_size": plan["vocab_size"],
        "eod_id": plan["eod_id"],
        "tokenizer": os.path.abspath(cfg.tokenizer),
        "tokenizer_sha256": plan["tokenizer_sha256"],
        "tokens_include_eod": True,
        "parts": [{"unit": i["unit"], "documents": i["documents"], "tokens": i["tokens"]} for i in infos],
        "plan": plan,
    }
    tmp_stats = Path(f"{paths['stats']}.tmp-{pid}")
    tmp_stats.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
    os.replace(tmp_stats, paths["stats"])
    if not cfg.keep_parts:
        shutil.rmtree(paths["parts"], ignore_errors=True)
    return stats


def _run_units(todo: list[int], units: list[Unit], paths: dict[str, Path], cfg: BuildIndexConfig,
               dtype: type[np.number], tok: CodeTokenizer, show: bool) -> None:
    from tqdm import tqdm

    todo = sorted(todo, key=lambda i: -units[i].size)  # biggest first: a short tail when workers finish
    args = [(i, units[i], _part_prefix(paths["parts"], i), cfg, dtype) for i in todo]
    bar = tqdm(total=sum(units[i].size for i in todo), unit="B", unit_scale=True, desc="build_index",
               disable=not show, dynamic_ncols=True)
    tokens = done = 0
    pool = None
    try:
        if cfg.workers == 1 or len(todo) <= 1:
            results = (build_part(*a, tok=tok) for a in args)
        else:
            # fork: workers inherit the imported libraries; they never call MPI and leave via os._exit.
            ctx = multiprocessing.get_context("fork")
            pool = ctx.Pool(min(cfg.workers, len(todo)), initializer=_init_worker, initargs=(tok,))
            results = pool.imap_unordered(_build_part_star, args)
        for info in results:
            tokens += info["tokens"]
            done += 1
            bar.update(units[info["unit"]].size)
            bar.set_postfix(tokens=f"{tokens:,}", parts=f"{done}/{len(todo)}")
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()


def build_index(cfg: BuildIndexConfig, comm: Comm | None = None) -> dict:
    """Build ``cfg.output_prefix`` from ``cfg.inputs``; returns the stats (same on every rank).

    Idempotent: an index already complete for the same plan is left as is;
    finished parts of an interrupted run are reused.
    """
    if not cfg.output_prefix or not cfg.tokenizer or not cfg.inputs:
        raise IndexBuildError("inputs, output_prefix and tokenizer are required")
    comm = comm or get_comm()
    tok = load_tokenizer(cfg.tokenizer)
    dtype = choose_dtype(tok.vocab_size, cfg.dtype)
    units = plan_units(cfg.inputs, cfg.chunk_bytes)
    plan = _plan(cfg, tok, units, dtype)
    paths = index_paths(cfg.output_prefix)
    paths["stats"].parent.mkdir(parents=True, exist_ok=True)

    def root_prepare():
        try:
            return _prepare(paths, plan)
        except Exception as e:  # under MPI the other ranks wait for an answer: send the error instead
            if comm.size == 1:
                raise
            return f"error: {e}"

    state = comm.run_root_first(root_prepare)
    if state.startswith("error: "):
        raise IndexBuildError(state[len("error: "):])
    if state == "done":
        if comm.is_root:
            print(f"{paths['stats']} exists for the same inputs and tokenizer: nothing to do")
        return json.loads(paths["stats"].read_text())

    todo = [i for i in my_items(len(units), comm) if not _part_done(_part_prefix(paths["parts"], i))]
    import megatron.core.datasets.indexed_dataset  # noqa: F401  (once here, not in every forked worker)

    error = None
    try:
        _run_units(todo, units, paths, cfg, dtype, tok, show=cfg.progress and comm.is_root)
    except Exception as e:  # every rank must learn of a failure, or the others wait at the barrier forever
        error = f"rank {comm.rank}: {type(e).__name__}: {e}"
        if comm.size == 1:
            raise
    if comm.size > 1:
        print(f"rank {comm.rank}/{comm.size}: built {len(todo)} parts", flush=True)
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise IndexBuildError("; ".join(errors))

    def root_merge():
        try:
            stats = _merge(paths, plan, dtype, cfg)
            print(Funnel.read(paths["funnel"]).table())
            return stats
        except Exception as e:
            if comm.size == 1:
                raise
            return f"error: {e}"

    result = comm.run_root_first(root_merge)
    if isinstance(result, str):
        raise IndexBuildError(result[len("error: "):])
    return result


# -- verification --------------------------------------------------------------
def read_idx_header(idx_path: str | Path) -> dict:
    """The fixed header of a megatron-core ``.idx`` file."""
    with open(idx_path, "rb") as f:
        head = f.read(len(_IDX_MAGIC) + 8 + 1 + 8 + 8)
    if len(head) < len(_IDX_MAGIC) + 25 or head[: len(_IDX_MAGIC)] != _IDX_MAGIC:
        raise IndexBuildError(f"{idx_path}: not a megatron-core index (bad magic)")
    o = len(_IDX_MAGIC)
    (version,) = struct.unpack("<Q", head[o:o + 8])
    (code,) = struct.unpack("<B", head[o + 8:o + 9])
    seqs, docs = struct.unpack("<QQ", head[o + 9:o + 25])
    return {"version": version, "dtype_code": code, "sequences": seqs, "document_indices": docs}


def verify_index(prefix: str | Path, tokenizer: str | None = None, sample: int = 16, seed: int = 0) -> dict:
    """Re-read an index and check it against its stats, sidecar and (for a sample) the source text.

    Returns {"ok": bool, "errors": [...], "checked": {...}}; never raises for a bad index.
    """
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    paths = index_paths(prefix)
    errors: list[str] = []
    checked: dict = {}
    for k in ("bin", "idx", "docs", "stats", "funnel"):
        if not paths[k].is_file():
            errors.append(f"missing {paths[k]}")
    if errors:
        return {"ok": False, "errors": errors, "checked": checked}
    stats = json.loads(paths["stats"].read_text())
    dtype = np.dtype(stats["dtype"])
    n = stats["documents"]

    # header
    try:
        head = read_idx_header(paths["idx"])
        if head["version"] != 1:
            errors.append(f"idx version {head['version']} != 1")
        if head["dtype_code"] != _DTYPE_CODES[dtype.type]:
            errors.append(f"idx dtype code {head['dtype_code']} does not match stats dtype {dtype.name}")
        if head["sequences"] != n or head["document_indices"] != n + 1:
            errors.append(f"idx header counts {head['sequences']}/{head['document_indices']} != {n} documents")
        checked["header"] = head
    except IndexBuildError as e:
        return {"ok": False, "errors": [str(e)], "checked": checked}

    # sizes and pointers
    ds = IndexedDataset(str(prefix), mmap=True)
    sizes = np.asarray(ds.index.sequence_lengths, dtype=np.int64)
    pointers = np.asarray(ds.index.sequence_pointers, dtype=np.int64)
    doc_idx = np.asarray(ds.index.document_indices, dtype=np.int64)
    if len(ds) != n:
        errors.append(f"index holds {len(ds)} documents, stats say {n}")
    if not np.array_equal(doc_idx, np.arange(len(sizes) + 1)):
        errors.append("document_indices are not one sequence per document")
    expect_ptr = np.concatenate([[0], np.cumsum(sizes)[:-1]]) * dtype.itemsize
    if not np.array_equal(pointers, expect_ptr):
        errors.append("sequence pointers do not follow the sizes")
    total = int(sizes.sum())
    if total != stats["tokens"]:
        errors.append(f"sizes add up to {total} tokens, stats say {stats['tokens']}")
    if paths["bin"].stat().st_size != total * dtype.itemsize:
        errors.append(f"{paths['bin']} is {paths['bin'].stat().st_size} bytes, expected {total * dtype.itemsize}")
    if (sizes < 1).any():
        errors.append(f"{int((sizes < 1).sum())} documents have no tokens")
    else:
        data = np.memmap(paths["bin"], dtype=dtype, mode="r")
        if data.size == total:
            ends = np.cumsum(sizes) - 1
            if not (data[ends] == stats["eod_id"]).all():
                errors.append(f"{int((data[ends] != stats['eod_id']).sum())} documents do not end with EOD")
            step = 1 << 24
            top = max(int(data[i:i + step].max()) for i in range(0, total, step))
            if top >= stats["vocab_size"]:
                errors.append(f"token id {top} outside the vocabulary of {stats['vocab_size']}")
        del data
    checked["documents"], checked["tokens"] = len(ds), total

    # sidecar
    side = []
    with gzip.open(paths["docs"], "rt", encoding="utf-8") as f:
        side = [json.loads(line) for line in f]
    if len(side) != n:
        errors.append(f"sidecar has {len(side)} lines for {n} documents")
    else:
        bad = [i for i, s in enumerate(side) if s["tokens"] != sizes[i]]
        if bad:
            errors.append(f"sidecar token counts differ from the index for {len(bad)} documents (first: {bad[0]})")
        langs: dict[str, dict[str, int]] = {}
        for s, sz in zip(side, sizes):
            c = langs.setdefault(s["language"] or "unknown", {"documents": 0, "tokens": 0})
            c["documents"] += 1
            c["tokens"] += int(sz)
        if langs != stats["languages"]:
            errors.append("per-language counts in the sidecar differ from stats")
    funnel = Funnel.read(paths["funnel"])
    if funnel.total("kept")[0] != n:
        errors.append(f"funnel kept {funnel.total('kept')[0]} documents, index holds {n}")

    # decode a sample back to its source text
    if sample > 0 and n > 0 and not errors:
        tok = load_tokenizer(tokenizer or stats["tokenizer"])
        if tok.sha256 != stats["tokenizer_sha256"]:
            errors.append(f"tokenizer {tok.path} is not the one the index was built with")
        else:
            errors += _verify_sample(ds, stats, side, tok, sample, seed, checked)
    return {"ok": not errors, "errors": errors, "checked": checked}


def _verify_sample(ds, stats: dict, side: list[dict], tok: CodeTokenizer, sample: int, seed: int, checked: dict) -> list[str]:
    plan = stats["plan"]
    text_field, id_field, language_field = plan["fields"]
    n = stats["documents"]
    picks = sorted(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False).tolist())
    starts = np.cumsum([0] + [p["documents"] for p in stats["parts"]])
    errors: list[str] = []
    by_unit: dict[int, list[int]] = {}
    for d in picks:
        u = int(np.searchsorted(starts, d, side="right") - 1)
        by_unit.setdefault(u, []).append(d)
    decoded = 0
    for u, docs in by_unit.items():
        unit = Unit(**plan["units"][u])
        wanted = {d - int(starts[u]): d for d in docs}
        k = 0
        try:
            for doc in read_unit(unit, text_field, id_field, language_field):
                if unusable_reason(doc):
                    continue
                if k in wanted:
                    d = wanted.pop(k)
                    if side[d]["id"] != doc.id:
                        errors.append(f"document {d}: sidecar id {side[d]['id']!r} but source has {doc.id!r}")
                    ids = np.asarray(ds[d], dtype=np.int64)
                    if tok.decode(ids[:-1].tolist()) != doc.text:
                        errors.append(f"document {d} ({doc.id!r}) does not decode to its source text")
                    decoded += 1
                    if not wanted:
                        break
                k += 1
        except OSError as e:
            errors.append(f"cannot re-read source {unit.path}: {e}")
            continue
        if wanted:
            errors.append(f"source {unit.path} has fewer documents than the index says")
    checked["decoded"] = decoded
    return errors
