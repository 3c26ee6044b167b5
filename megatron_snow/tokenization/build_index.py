"""Documents -> Megatron indexed dataset (``PREFIX.bin`` / ``PREFIX.idx``) plus a sidecar.

Layout written beside the index::

    PREFIX.bin, PREFIX.idx       megatron-core IndexedDataset (one sequence per document, EOD appended)
    PREFIX.docs.jsonl.gz         sidecar: line i = document i of the index {id, language, repo, path, tokens,
                                 file_ids (the files of a grouped repository document, when the record has them)}
    PREFIX.funnel.json           documents in = kept + dropped per reason, per language
    PREFIX.stats.json            per-language document/token counts, dtype, tokenizer hash, input plan
    PREFIX.step/                 the stage runner's directory: step.json (fingerprint), funnel.json,
                                 ranks.json, manifest.json (written last: the index is complete while
                                 the files above keep the sizes it lists); _work/ holds the parts while
                                 building (``keep_parts=true`` keeps them)

It is a step of the stage runner (``megatron_snow.stages``): the plan, the
ranks, resume, the fingerprint (settings, input content, tokenizer by hash),
the refusal of an index made otherwise (``--force`` replaces it), one-line
errors on every rank and the accounting are the runner's. How the work is
split: the input is cut into base units (``inputs.plan_units``) that do not
depend on the number of workers or ranks; when there are fewer of them than
processes (``workers`` x ranks), each is cut further by byte ranges (plain
JSONL) or record ranges (gzip files, records shards) so every process has work
(the run says how it split). Each unit becomes one partial index
``PREFIX.step/_work/part-NNNNN.*``; MPI ranks take units round-robin and each
rank spreads its units over ``workers`` forked processes. Rank 0 then
concatenates the parts in order (megatron-core ``add_index``) and compresses
the sidecar as one stream, so the output bytes are the same for any number of
workers or ranks. A killed run restarted with the same command skips the
parts whose unit marker exists.

Documents: an empty document is not written (an index entry holding only EOD
trains nothing) and is counted as ``dropped:empty``; a line that cannot be read
is counted under its reason (``invalid_json``, ``missing_text``,
``corrupt_gzip`` ... see ``inputs.read_unit``); text with lone surrogates (cannot
be UTF-8) is ``invalid_unicode``. Any token id outside the vocabulary stops the
build with an error rather than writing it. A records shard holding other than
its manifest says stops the build (records would be lost without a word), and
the documents in must add up to the records the input manifests hold.
"""
from __future__ import annotations

import gc
import gzip
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from megatron_snow.config import Config, setting
from megatron_snow.atomic import atomic_write_text, temp_path
from megatron_snow.dist import Comm, get_comm
from megatron_snow.funnel import Funnel
from megatron_snow.indexed import IndexFormatError, IndexWriter, check_idx, dtype_code, index_dtype, read_idx
from megatron_snow.stages.runner import RANKS_FILE, ArtefactStep, StepContext, StepError, UnitResult, run_step
from megatron_snow.tokenization.inputs import (
    Document, Unit, input_dependencies, manifest_records, plan_units, read_unit, split_units,
)
from megatron_snow.tokenization.tokenizer import CodeTokenizer, load_tokenizer

FORMAT = "megatron-snow-index-v2"
_DTYPES = {"uint16": np.uint16, "int32": np.int32}


@dataclass
class BuildIndexConfig(Config):
    """Settings of ``build-index``."""

    inputs: list[str] = setting(help="records directories and/or JSONL files", factory=list)
    output_prefix: str = setting("", help="writes OUTPUT_PREFIX.bin/.idx/.docs.jsonl.gz/.stats.json/.funnel.json")
    tokenizer: str = setting("", help="SentencePiece .model or Hugging Face tokenizer.json")
    workers: int = setting(
        1, help="processes per MPI rank (inputs are cut further when there are fewer units)", range=">= 1")
    dtype: Literal["auto", "uint16", "int32"] = setting("auto", help="auto: uint16 below 65,500 ids, int32 above")
    chunk_bytes: int = setting(
        64 << 20, help="base units of about this many bytes of text (shards by records, .jsonl by bytes)", range=">= 1")
    batch_docs: int = setting(64, help="documents per encode_batch call", range=">= 1")
    text_field: str = setting("text", help="JSONL inputs only (records datasets use \"content\")")
    id_field: str = setting("id", help="JSONL inputs only")
    language_field: str = setting("language", help="JSONL inputs only")
    keep_parts: bool = setting(False, help="keep PREFIX.parts/ after a successful merge")
    progress: bool = setting(True, help="progress bar on rank 0")


class IndexBuildError(StepError):
    """The index cannot be built as asked; nothing final was written (exit code 2: bad input or settings)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message, exit_code)


def index_paths(prefix: str | Path) -> dict[str, Path]:
    p = str(prefix)
    return {
        "bin": Path(f"{p}.bin"),
        "idx": Path(f"{p}.idx"),
        "docs": Path(f"{p}.docs.jsonl.gz"),
        "funnel": Path(f"{p}.funnel.json"),
        "stats": Path(f"{p}.stats.json"),
        "step": Path(f"{p}.step"),  # the stage runner's directory (parts under _work/ while building)
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
            f"tokenizer vocabulary of {vocab_size} ids does not fit {dtype} (at most {limit} ids); "
            "use dtype=int32 or auto"
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
    """What the output bytes are made from (kept in PREFIX.stats.json; ``--verify`` re-reads the source by it)."""
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
def build_part(unit: Unit, part_prefix: str, cfg: BuildIndexConfig, dtype: type[np.number],
               tok: CodeTokenizer) -> tuple[dict, Funnel]:
    """Tokenize one unit into ``part_prefix.{bin,idx,docs.jsonl}``; returns its counts and funnel."""
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
                raise IndexBuildError(f"document {d.id!r}: token id {int(arr.max())} outside the vocabulary of "
                                      f"{tok.vocab_size}", 1)
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
    info = {"documents": n_docs, "tokens": n_tokens,
            "languages": {k: {"documents": v[0], "tokens": v[1]} for k, v in sorted(languages.items())}}
    return info, funnel


# -- the whole build: a step of the stage runner ---------------------------------
def run_dir(prefix: str | Path) -> Path:
    """The runner's directory of an index: step.json, funnel, ranks, and the parts under _work/."""
    return index_paths(prefix)["step"]


class BuildIndexStep(ArtefactStep):
    """Units: the base plan cut for ``workers`` x ranks processes; each writes a partial index under
    _work/; ``finalize`` concatenates them in order into PREFIX.* (same bytes for any split)."""

    name = "build_index"
    weight_unit = "B"

    def __init__(self, cfg: BuildIndexConfig, tok: CodeTokenizer, dtype: type[np.number], base: list[Unit], log=print):
        self.settings, self.tok, self.dtype, self.base, self.log = cfg, tok, dtype, base, log
        self.workers = cfg.workers
        self.paths = index_paths(cfg.output_prefix)

    def fingerprint_settings(self) -> dict:
        cfg = self.settings
        return {"format": FORMAT, "dtype": np.dtype(self.dtype).name, "chunk_bytes": cfg.chunk_bytes,
                "fields": [cfg.text_field, cfg.id_field, cfg.language_field]}

    def depends_on(self) -> dict[str, str]:
        return {**input_dependencies(self.settings.inputs), "tokenizer": self.tok.path}

    def outputs(self) -> list[Path]:
        return [self.paths[k] for k in ("bin", "idx", "docs", "funnel", "stats")]

    def input_records(self) -> int | None:
        return manifest_records(self.settings.inputs)

    def units(self, ctx: StepContext) -> list:
        work, how = split_units(self.base, self.workers * ctx.comm.size)
        self.log(f"build_index: {how}; {ctx.comm.size} rank(s) x {self.workers} worker(s)")
        return [[base, u.to_dict()] for base, u in work]

    def weight(self, unit: list) -> int:
        return max(1, int(unit[1]["size"]))

    def describe(self, unit: list) -> str:
        u = unit[1]
        return f"{u['path']}[{u['start']}:{'' if u['end'] is None else u['end']}]"

    def prepare(self, ctx: StepContext, units: list) -> None:
        import megatron.core.datasets.indexed_dataset  # noqa: F401  (once here, not in every forked worker)

    def process(self, ctx: StepContext, index: int, unit: list) -> UnitResult:
        info, funnel = build_part(Unit(**unit[1]), str(ctx.work / f"part-{index:05d}"), self.settings, self.dtype,
                                  self.tok)
        return UnitResult([], [], funnel, stats={k: info[k] for k in ("documents", "tokens")},
                          represents=info["documents"], part={"base": unit[0], **info})

    def finalize(self, ctx: StepContext, parts: list[dict], funnel: Funnel) -> int:
        """Concatenate the parts in order into PREFIX.bin/.idx, the sidecar as one gzip stream, then
        PREFIX.funnel.json and PREFIX.stats.json. Nothing here depends on how the units were split."""
        paths, cfg = self.paths, self.settings
        n_docs = sum(p["documents"] for p in parts)
        if n_docs == 0:
            raise IndexBuildError(f"no documents to index: the input holds no non-empty documents "
                                  f"({funnel.total('in')[0]} in, {funnel.reasons() or 'none'} dropped)", 2)
        languages: dict[str, dict[str, int]] = {}
        per_unit = [{"documents": 0, "tokens": 0} for _ in self.base]
        for p in parts:
            per_unit[p["base"]]["documents"] += p["documents"]
            per_unit[p["base"]]["tokens"] += p["tokens"]
            for lang, c in p["languages"].items():
                t = languages.setdefault(lang, {"documents": 0, "tokens": 0})
                t["documents"] += c["documents"]
                t["tokens"] += c["tokens"]
        writer = IndexWriter(cfg.output_prefix, self.dtype)
        tmp_docs = temp_path(paths["docs"])
        # add_index runs gc.collect() for every part; with torch imported that is ~0.3 s a call. Freezing
        # the objects that exist now keeps those collections short (the merge itself allocates little).
        gc.freeze()
        try:
            with open(tmp_docs, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0,
                                                          filename="") as side:
                for i in range(len(parts)):
                    pp = str(ctx.work / f"part-{i:05d}")
                    writer.add_index(pp)
                    with open(pp + ".docs.jsonl", "rb") as f:
                        shutil.copyfileobj(f, side)
            held = writer.finish()
        except BaseException:
            writer.abort()
            tmp_docs.unlink(missing_ok=True)
            raise
        finally:
            gc.unfreeze()
        os.replace(tmp_docs, paths["docs"])
        funnel.write(paths["funnel"])
        plan = _plan(cfg, self.tok, self.base, self.dtype)
        stats = {
            "format": FORMAT,
            "documents": n_docs,
            "tokens": sum(p["tokens"] for p in parts),
            "languages": dict(sorted(languages.items())),
            "dtype": plan["dtype"],
            "vocab_size": plan["vocab_size"],
            "eod_id": plan["eod_id"],
            "tokenizer": os.path.abspath(self.tok.path),
            "tokenizer_sha256": plan["tokenizer_sha256"],
            "tokens_include_eod": True,
            "units": per_unit,
            "plan": plan,
        }
        atomic_write_text(paths["stats"], json.dumps(stats, indent=1, sort_keys=True) + "\n")
        self.log(funnel.table())
        return held

    def cleanup(self, ctx: StepContext) -> None:
        if not self.settings.keep_parts:
            shutil.rmtree(ctx.work, ignore_errors=True)  # a tokenized copy of the corpus


def build_index(cfg: BuildIndexConfig, comm: Comm | None = None, log=print, force: bool = False) -> dict:
    """Build ``cfg.output_prefix`` from ``cfg.inputs`` on every rank of ``comm``; returns the stats.

    An index already complete for the same settings, inputs and tokenizer is left as is; finished parts
    of a killed run are reused; an index made otherwise is refused (StaleOutputError) unless ``force``.
    """
    if not cfg.output_prefix or not cfg.tokenizer or not cfg.inputs:
        raise IndexBuildError("inputs, output_prefix and tokenizer are required", 2)
    comm = comm or get_comm()
    tok = load_tokenizer(cfg.tokenizer)
    dtype = choose_dtype(tok.vocab_size, cfg.dtype)
    step = BuildIndexStep(cfg, tok, dtype, plan_units(cfg.inputs, cfg.chunk_bytes),
                          log if comm.is_root else (lambda *_: None))
    run_step(step, run_dir(cfg.output_prefix), comm, force=force, progress=cfg.progress)
    if comm.size > 1:
        ranks = json.loads((run_dir(cfg.output_prefix) / RANKS_FILE).read_text())["ranks"]
        print(f"build_index rank {comm.rank}/{comm.size}: built {len(ranks[comm.rank]['units'])} parts", flush=True)
    return json.loads(index_paths(cfg.output_prefix)["stats"].read_text())


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
        n, n_tokens = int(stats["documents"]), int(stats["tokens"])
        eod, vocab = int(stats["eod_id"]), int(stats["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        return {"ok": False, "errors": [f"{paths['stats']}: damaged ({type(e).__name__}: {e})"], "checked": checked}
    if (stats.get("format") != FORMAT or not isinstance(stats.get("units"), list)
            or not isinstance(stats.get("plan"), dict)):
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

                errors += _verify_sample(IndexedDataset(str(prefix), mmap=True), stats, side, tok, sample, seed,
                                         checked)
    return {"ok": not errors, "errors": errors, "checked": checked}


def _verify_sample(ds, stats: dict, side: list[dict], tok: CodeTokenizer, sample: int, seed: int,
                   checked: dict) -> list[str]:
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


def cli_run(cfg, args, comm) -> None:
    """The ``build-index`` command; ``--verify PREFIX`` checks an index instead of building one."""
    from megatron_snow.stages import StepError
    from megatron_snow.tokenization.inputs import InputError
    from megatron_snow.tokenization.tokenizer import TokenizerError

    if args.verify:
        if comm.is_root:
            report = verify_index(args.verify, tokenizer=cfg.tokenizer or None, sample=args.sample)
            print(json.dumps(report, indent=1, default=str))
            print("verify: OK" if report["ok"] else f"verify: FAILED ({len(report['errors'])} problems)")
            if not report["ok"]:
                raise StepError(f"{args.verify}: {report['errors'][0]}", 1)
        return
    try:
        stats = build_index(cfg, comm, force=args.force)
    except (InputError, TokenizerError) as e:  # found before the runner starts: the same on every rank
        raise StepError(str(e), 2) from None
    if comm.is_root:
        print(f"{cfg.output_prefix}: {stats['documents']:,} documents, {stats['tokens']:,} tokens ({stats['dtype']})")


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow build-index`` / ``tools/preprocess/build_index.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["build-index"].main(argv)
