"""Documents -> Megatron indexed dataset (``PREFIX.bin`` / ``PREFIX.idx``) plus a sidecar.

Layout written beside the index::

    PREFIX.bin, PREFIX.idx       megatron-core IndexedDataset (one sequence per document, EOD appended)
    PREFIX.docs.jsonl.gz         sidecar: line i = document i of the index {id, language, repo, path, tokens,
                                 file_ids (the files of a grouped repository document, when the record has them)}
    PREFIX.funnel.json           documents in = kept + dropped per reason, per language
    PREFIX.stats.json            per-language document/token counts, dtype, tokenizer hash, input plan;
                                 written last, so its presence means the index is complete

How the work is split: the input is cut into base units (``inputs.plan_units``)
that do not depend on the number of workers or ranks; when there are fewer of
them than processes (``workers`` x ranks), each is cut further by byte ranges
(plain JSONL) or record ranges (gzip files, records shards) so every process
has work (the run says how it split). Each unit becomes one partial index
``PREFIX.parts/unit-NNNNNN.*``; MPI ranks take units round-robin and each rank
spreads its units over ``workers`` processes. Rank 0 then concatenates the
parts in order (megatron-core ``add_index``) and compresses the sidecar as one
stream, so the output bytes are the same for any number of workers or ranks.
A part whose ``.json`` marker exists is finished: a killed run restarted with
the same command skips it.

Documents: an empty document is not written (an index entry holding only EOD
trains nothing) and is counted as ``dropped:empty``; a line that cannot be read
is counted under its reason (``invalid_json``, ``missing_text``,
``corrupt_gzip`` ... see ``inputs.read_unit``); text with lone surrogates (cannot
be UTF-8) is ``invalid_unicode``. Any token id outside the vocabulary stops the
build with an error rather than writing it. A records shard holding other than
its manifest says stops the build (records would be lost without a word).
"""
from __future__ import annotations

import gc
import gzip
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from megatron_snow.atomic import atomic_write_text
from megatron_snow.dist import Comm, get_comm, my_items
from megatron_snow.funnel import Funnel
from megatron_snow.indexed import IndexFormatError, IndexWriter, check_idx, dtype_code, index_dtype, read_idx
from megatron_snow.tokenization.inputs import Document, Unit, plan_units, read_unit, split_units
from megatron_snow.tokenization.tokenizer import CodeTokenizer, load_tokenizer

FORMAT = "megatron-snow-index-v2"
_DTYPES = {"uint16": np.uint16, "int32": np.int32}


@dataclass
class BuildIndexConfig:
    """Settings of ``build-index``."""

    inputs: list[str] = field(default_factory=list)  # records directories and/or JSONL files
    output_prefix: str = ""  # writes OUTPUT_PREFIX.bin/.idx/.docs.jsonl.gz/.stats.json/.funnel.json
    tokenizer: str = ""  # SentencePiece .model or Hugging Face tokenizer.json
    workers: int = 1  # processes per MPI rank (inputs are cut further when there are fewer units)
    dtype: Literal["auto", "uint16", "int32"] = "auto"  # auto: uint16 below 65,500 ids, int32 above
    chunk_bytes: int = 64 << 20  # base units of about this many bytes of text (shards by records, .jsonl by bytes)
    batch_docs: int = 64  # documents per encode_batch call
    text_field: str = "text"  # JSONL inputs only (records datasets use "content")
    id_field: str = "id"  # JSONL inputs only
    language_field: str = "language"  # JSONL inputs only
    keep_parts: bool = False  # keep PREFIX.parts/ after a successful merge
    progress: bool = True  # progress bar on rank 0

    RANGES: ClassVar[dict[str, str]] = {"workers": ">= 1", "batch_docs": ">= 1", "chunk_bytes": ">= 1"}


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


def unusable_count(funnel: Funnel, doc: Document, nbytes: int) -> str | None:
    """Count a document in the funnel (seen, and dropped when unusable); returns the reason or None."""
    reason = unusable_reason(doc)
    for _ in range(doc.count):
        funnel.seen(doc.language, nbytes)
        if reason:
            funnel.dropped(doc.language, nbytes, reason)
    return reason


def _doc_bytes(doc: Document) -> int:
    return len(doc.text.encode("utf-8", "surrogatepass")) if doc.text else 0


def _plan(cfg: BuildIndexConfig, tok: CodeTokenizer, units: list[Unit], dtype: type[np.number]) -> dict:
    """What determines the output bytes; a resumed run must match it."""
    from megatron_snow.stages import content_hash

    return {
        "format": FORMAT,
        "units": [u.to_dict() for u in units],
        "inputs_content": [content_hash(os.path.abspath(p)) for p in cfg.inputs],
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


def build_part(unit_index: int, unit: Unit, part_prefix: str, cfg: BuildIndexConfig, dtype: type[np.number],
               tok: CodeTokenizer | None = None) -> dict:
    """Tokenize one unit into ``part_prefix.{bin,idx,docs.jsonl}``; ``part_prefix.json`` marks it done."""
    tok = tok or _TOK
    assert tok is not None
    writer = IndexWriter(part_prefix, dtype)
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
            writer.add(arr)
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

    try:
        for doc in read_unit(unit, cfg.text_field, cfg.id_field, cfg.language_field):
            nbytes = _doc_bytes(doc)
            if unusable_count(funnel, doc, nbytes):
                continue
            funnel.kept(doc.language, nbytes)
            batch.append(doc)
            if len(batch) >= cfg.batch_docs:
                flush()
        if batch:
            flush()
    except BaseException:
        writer.abort()
        raise
    writer.finish()
    atomic_write_text(f"{part_prefix}.docs.jsonl", "".join(side))
    info = {"unit": unit_index, "documents": n_docs, "tokens": n_tokens,
            "languages": {k: {"documents": v[0], "tokens": v[1]} for k, v in sorted(languages.items())},
            "funnel": funnel.to_dict()}
    atomic_write_text(f"{part_prefix}.json", json.dumps(info, sort_keys=True))
    return info


def _build_part_star(args: tuple) -> dict:
    return build_part(*args)


def _part_prefix(parts_dir: Path, i: int) -> str:
    return str(parts_dir / f"unit-{i:06d}")


def _part_done(part_prefix: str) -> bool:
    """A part is finished when its marker (written last) and its three files exist."""
    return all(os.path.isfile(part_prefix + s) for s in (".json", ".bin", ".idx", ".docs.jsonl"))


# -- the whole build -----------------------------------------------------------
def _prepare(paths: dict[str, Path], plan: dict, split: list) -> str:
    """Rank 0: 'done' if the index exists for this plan, 'ok' to build; raises on a conflicting state.

    Parts of an interrupted run are reused when the plan and the split (which follows the
    number of processes) are the same; parts of another split are discarded.
    """
    if paths["stats"].is_file():
        try:
            old_plan = json.loads(paths["stats"].read_text()).get("plan")
        except ValueError:
            old_plan = None
        if old_plan != plan:
            raise IndexBuildError(f"{paths['stats']} exists but was built from other inputs/tokenizer/settings; "
                                  "use --force to replace it, or another output prefix")
        if all(paths[k].is_file() for k in ("bin", "idx", "docs", "funnel")):
            return "done"
        paths["stats"].unlink()  # some output was deleted since: build again
    parts = paths["parts"]
    parts.mkdir(parents=True, exist_ok=True)
    plan_file = parts / "plan.json"
    want = {"plan": plan, "split": split}
    if plan_file.is_file():
        try:
            old = json.loads(plan_file.read_text())
        except ValueError:
            old = {}
        if old.get("plan") != plan:
            raise IndexBuildError(f"{parts} holds partial results of a different build (inputs, tokenizer or "
                                  "settings changed); delete it to start over")
        if old.get("split") != split:  # another number of processes: the parts do not line up
            shutil.rmtree(parts)
            parts.mkdir(parents=True)
            plan_file.write_text(json.dumps(want, indent=1, sort_keys=True))
    else:
        plan_file.write_text(json.dumps(want, indent=1, sort_keys=True))
    return "ok"


def _merge(paths: dict[str, Path], plan: dict, split: list, dtype: type[np.number], cfg: BuildIndexConfig) -> dict:
    """Rank 0: concatenate parts in order into the final files; stats written last.

    Nothing written here depends on how the units were split: the sidecar is
    compressed as one stream and counts are kept per base unit.
    """
    infos = [json.loads(Path(_part_prefix(paths["parts"], i) + ".json").read_text()) for i in range(len(split))]
    funnel = Funnel("build_index")
    languages: dict[str, dict[str, int]] = {}
    per_unit = [{"documents": 0, "tokens": 0} for _ in plan["units"]]
    for (base, _), info in zip(split, infos):
        funnel.merge(info["funnel"])
        per_unit[base]["documents"] += info["documents"]
        per_unit[base]["tokens"] += info["tokens"]
        for lang, c in info["languages"].items():
            t = languages.setdefault(lang, {"documents": 0, "tokens": 0})
            t["documents"] += c["documents"]
            t["tokens"] += c["tokens"]
    funnel.check()
    n_docs = sum(i["documents"] for i in infos)
    if n_docs == 0:
        raise IndexBuildError(f"no documents to index: the input holds no non-empty documents\n{funnel.table()}")

    writer = IndexWriter(cfg.output_prefix, dtype)
    tmp_docs = Path(f"{paths['docs']}.tmp-{os.getpid()}")
    # add_index runs gc.collect() for every part; with torch imported that is ~0.3 s a call. Freezing
    # the objects that exist now keeps those collections short (the merge itself allocates little).
    gc.freeze()
    try:
        with open(tmp_docs, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0,
                                                      filename="") as side:
            for i in range(len(split)):
                pp = _part_prefix(paths["parts"], i)
                writer.add_index(pp)
                with open(pp + ".docs.jsonl", "rb") as f:
                    shutil.copyfileobj(f, side)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        gc.unfreeze()
    os.replace(tmp_docs, paths["docs"])
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
        "units": per_unit,
        "plan": plan,
    }
    atomic_write_text(paths["stats"], json.dumps(stats, indent=1, sort_keys=True) + "\n")
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


def build_index(cfg: BuildIndexConfig, comm: Comm | None = None, log=print, force: bool = False) -> dict:
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
            if force:  # replace whatever is there
                for k, path in paths.items():
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            work, how = split_units(units, cfg.workers * comm.size)
            split = [[base, u.to_dict()] for base, u in work]
            return _prepare(paths, plan, split), split, how
        except Exception as e:  # under MPI the other ranks wait for an answer: send the error instead
            if comm.size == 1:
                raise
            return f"error: {e}", None, None

    state, split, how = comm.run_root_first(root_prepare)
    if state.startswith("error: "):
        raise IndexBuildError(state[len("error: "):])
    if state == "done":
        if comm.is_root:
            log(f"{paths['stats']} exists for the same inputs and tokenizer: nothing to do")
        return json.loads(paths["stats"].read_text())
    work_units = [Unit(**u) for _, u in split]
    if comm.is_root:
        log(f"build_index: {how}; {comm.size} rank(s) x {cfg.workers} worker(s)")

    todo = [i for i in my_items(len(work_units), comm) if not _part_done(_part_prefix(paths["parts"], i))]
    import megatron.core.datasets.indexed_dataset  # noqa: F401  (once here, not in every forked worker)

    error = None
    try:
        _run_units(todo, work_units, paths, cfg, dtype, tok, show=cfg.progress and comm.is_root)
    except Exception as e:  # every rank must learn of a failure, or the others wait at the barrier forever
        error = f"{type(e).__name__}: {e}" if comm.size == 1 else f"rank {comm.rank}: {type(e).__name__}: {e}"
    if comm.size > 1:
        print(f"build_index rank {comm.rank}/{comm.size}: built {len(todo)} parts", flush=True)
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise IndexBuildError("; ".join(errors))

    def root_merge():
        try:
            stats = _merge(paths, plan, split, dtype, cfg)
            log(Funnel.read(paths["funnel"]).table())
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
def _read_json(path: Path, errors: list[str]) -> dict | None:
    try:
        d = json.loads(path.read_text())
        if isinstance(d, dict):
            return d
        errors.append(f"{path}: not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        errors.append(f"{path}: unreadable ({type(e).__name__}: {e})")
    return None


def verify_index(prefix: str | Path, tokenizer: str | None = None, sample: int = 16, seed: int = 0) -> dict:
    """Re-read an index and check it against its stats, sidecar and (for a sample) the source text.

    Returns {"ok": bool, "errors": [...], "checked": {...}}; a damaged file is a finding, never a raise.
    """
    paths = index_paths(prefix)
    errors: list[str] = []
    checked: dict = {}
    for k in ("bin", "idx", "docs", "stats", "funnel"):
        if not paths[k].is_file():
            errors.append(f"missing {paths[k]}")
    if errors:
        return {"ok": False, "errors": errors, "checked": checked}
    stats = _read_json(paths["stats"], errors)
    if stats is None:
        return {"ok": False, "errors": errors, "checked": checked}
    try:
        dtype = np.dtype(stats["dtype"])
        n, n_tokens, eod, vocab = int(stats["documents"]), int(stats["tokens"]), int(stats["eod_id"]), int(stats["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        return {"ok": False, "errors": [f"{paths['stats']}: damaged ({type(e).__name__}: {e})"], "checked": checked}
    if stats.get("format") != FORMAT or not isinstance(stats.get("units"), list) or not isinstance(stats.get("plan"), dict):
        return {"ok": False, "errors": [f"{paths['stats']}: format {stats.get('format')!r}, not {FORMAT!r} (an older "
                                        "or damaged index): build it again"], "checked": checked}

    # the .idx, parsed with every size checked
    try:
        idx = read_idx(prefix)
    except IndexFormatError as e:
        return {"ok": False, "errors": [str(e)], "checked": checked}
    head = idx.header
    checked["header"] = {"version": head.version, "dtype_code": head.dtype_code, "sequences": head.sequences,
                         "document_indices": head.document_indices}
    if head.dtype_code != dtype_code(dtype):
        errors.append(f"idx dtype code {head.dtype_code} does not match stats dtype {dtype.name}")
    if head.sequences != n or head.document_indices != n + 1:
        errors.append(f"idx header counts {head.sequences}/{head.document_indices} != {n} documents")
    errors += [f"{paths['idx']}: {e}" for e in check_idx(idx, paths["bin"].stat().st_size)]
    sizes = idx.sequence_lengths.astype(np.int64)
    if not np.array_equal(idx.document_indices, np.arange(len(sizes) + 1)):
        errors.append("document_indices are not one sequence per document")
    total = int(sizes.sum())
    if total != n_tokens:
        errors.append(f"sizes add up to {total} tokens, stats say {n_tokens}")
    if (sizes < 1).any():
        errors.append(f"{int((sizes < 1).sum())} documents have no tokens")
    elif not errors:
        data = np.memmap(paths["bin"], dtype=head.dtype, mode="r")
        ends = np.cumsum(sizes) - 1
        if not (data[ends] == eod).all():
            errors.append(f"{int((data[ends] != eod).sum())} documents do not end with EOD")
        step = 1 << 24
        top = max((int(data[i:i + step].max()) for i in range(0, total, step)), default=-1)
        if top >= vocab:
            errors.append(f"token id {top} outside the vocabulary of {vocab}")
        del data
    checked["documents"], checked["tokens"] = len(sizes), total

    # sidecar
    side: list[dict] = []
    try:
        with gzip.open(paths["docs"], "rt", encoding="utf-8") as f:
            side = [json.loads(line) for line in f]
        if not all(isinstance(x, dict) and isinstance(x.get("tokens"), int) for x in side):
            raise ValueError("a line is not a document entry")
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as e:
        errors.append(f"{paths['docs']}: damaged sidecar ({type(e).__name__}: {e})")
        side = []
    if side and len(side) != n:
        errors.append(f"sidecar has {len(side)} lines for {n} documents")
    elif side and len(sizes) == n:
        bad = [i for i, x in enumerate(side) if x["tokens"] != sizes[i]]
        if bad:
            errors.append(f"sidecar token counts differ from the index for {len(bad)} documents (first: {bad[0]})")
        langs: dict[str, dict[str, int]] = {}
        for x, sz in zip(side, sizes):
            c = langs.setdefault(x.get("language") or "unknown", {"documents": 0, "tokens": 0})
            c["documents"] += 1
            c["tokens"] += int(sz)
        if langs != stats.get("languages"):
            errors.append("per-language counts in the sidecar differ from stats")
    funnel_d = _read_json(paths["funnel"], errors)
    if funnel_d is not None:
        try:
            funnel = Funnel.from_dict(funnel_d)
            funnel.check()
            if funnel.total("kept")[0] != n:
                errors.append(f"funnel kept {funnel.total('kept')[0]} documents, index holds {n}")
        except Exception as e:  # noqa: BLE001 - a damaged funnel is a finding
            errors.append(f"{paths['funnel']}: damaged ({type(e).__name__}: {e})")

    # decode a sample back to its source text
    if sample > 0 and n > 0 and not errors:
        try:
            tok = load_tokenizer(tokenizer or stats["tokenizer"])
        except Exception as e:  # noqa: BLE001
            errors.append(f"cannot load the tokenizer to decode a sample: {e}")
        else:
            if tok.sha256 != stats["tokenizer_sha256"]:
                errors.append(f"tokenizer {tok.path} is not the one the index was built with")
            else:
                from megatron.core.datasets.indexed_dataset import IndexedDataset

                errors += _verify_sample(IndexedDataset(str(prefix), mmap=True), stats, side, tok, sample, seed, checked)
    return {"ok": not errors, "errors": errors, "checked": checked}


def _verify_sample(ds, stats: dict, side: list[dict], tok: CodeTokenizer, sample: int, seed: int, checked: dict) -> list[str]:
    plan = stats["plan"]
    text_field, id_field, language_field = plan["fields"]
    n = stats["documents"]
    picks = sorted(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False).tolist())
    starts = np.cumsum([0] + [u["documents"] for u in stats["units"]])
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
        except (OSError, ValueError) as e:
            errors.append(f"cannot re-read source {unit.path}: {e}")
            continue
        if wanted:
            errors.append(f"source {unit.path} has fewer documents than the index says")
    checked["decoded"] = decoded
    return errors


USAGE = """examples:
  python -m megatron_snow build-index --input data/grouped --tokenizer tok/code64k.model \\
      --output-prefix data/index/phase1 --workers 8
  mpiexec -n 4 python -m megatron_snow build-index --config build.yaml workers=8
  python -m megatron_snow build-index --verify data/index/phase1"""


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow build-index`` / ``tools/preprocess/build_index.py``."""
    from megatron_snow.stages import StepError
    from megatron_snow.stages.cli import run_cli
    from megatron_snow.tokenization.inputs import InputError
    from megatron_snow.tokenization.tokenizer import TokenizerError

    def add_arguments(ap) -> None:
        ap.add_argument("--input", action="append", help="records directory or JSONL file (repeatable)")
        ap.add_argument("--tokenizer", help="SentencePiece .model or Hugging Face tokenizer.json")
        ap.add_argument("--output-prefix", help="writes PREFIX.bin, .idx, .docs.jsonl.gz, .stats.json, .funnel.json")
        ap.add_argument("--workers", type=int, help="worker processes per MPI rank (default 1)")
        ap.add_argument("--dtype", choices=["auto", "uint16", "int32"], help="token dtype (default auto)")
        ap.add_argument("--verify", metavar="PREFIX", help="check an existing index instead of building one")
        ap.add_argument("--sample", type=int, default=16, help="with --verify: documents decoded and compared to source")

    def extra_overrides(args) -> list[str]:
        out = [f"inputs={json.dumps(args.input)}"] if args.input else []
        for key, val in (("tokenizer", args.tokenizer), ("output_prefix", args.output_prefix),
                         ("workers", args.workers), ("dtype", args.dtype)):
            if val is not None:
                out.append(f"{key}={json.dumps(val)}")
        return out

    def run(cfg, args, comm):
        if args.verify:
            if comm.is_root:
                report = verify_index(args.verify, tokenizer=args.tokenizer, sample=args.sample)
                print(json.dumps(report, indent=1, default=str))
                print("verify: OK" if report["ok"] else f"verify: FAILED ({len(report['errors'])} problems)")
                if not report["ok"]:
                    raise StepError(f"{args.verify}: {report['errors'][0]}", 1)
            return
        try:
            stats = build_index(cfg, comm, force=args.force)
        except (InputError, TokenizerError) as e:
            raise StepError(str(e), 2) from None
        except IndexBuildError as e:
            raise StepError(str(e), 1) from None
        if comm.is_root:
            print(f"{cfg.output_prefix}: {stats['documents']:,} documents, {stats['tokens']:,} tokens ({stats['dtype']})")

    return run_cli(argv, prog="build-index", doc=__doc__.split("\n\n")[0] + "\n\n" + USAGE,
                   config_cls=BuildIndexConfig, run=run, add_arguments=add_arguments, extra_overrides=extra_overrides)
