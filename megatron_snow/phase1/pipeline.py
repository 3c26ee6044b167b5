"""Phase 1 of the recipe as steps of the stage runner (``megatron_snow.stages``).

Layout under ``output_dir``::

    01_ingest/ 02_filter/ 03_exact_dedup/ 04_near_dedup/ 05_decontaminate/ 06_pii/ 07_grouped/
        part-NNNNN.jsonl.gz  manifest.json     kept records (a records.py dataset)
        dropped/part-NNNNN.jsonl.gz ...        set-aside records, meta["dropped"] = {stage, reason, ...}
        funnel.json  stats.json  step.json      this step's funnel, extra counts, fingerprint
        ranks.json                              which rank did which units (world size)
        _work/                                  unit markers and dedup keys (resume state)
    funnel.json  funnel.txt                     every finished stage, as JSON and as tables

Output shard i of a step depends only on input unit i (or, for grouping, on
hash bucket i), never on which rank made it, so 1 and N ranks write the same
bytes; the runner resumes a killed run and refuses output of other settings
or inputs (``--force`` replaces it).

``PHASE1`` lists the stages in order; adding one is its step class (its
settings a ``Phase1Config`` field, when it has any) and one ``Stage`` line there.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xxhash

from megatron_snow.atomic import atomic_save_npy, atomic_write_json, atomic_write_text
from megatron_snow.benchmarks import benchmark_path
from megatron_snow.config import Config, ConfigError, setting, to_dict
from megatron_snow.dist import Comm, get_comm
from megatron_snow.funnel import Funnel
from megatron_snow.phase1 import clusters
from megatron_snow.phase1.decontam import BENCHMARK_FIELDS, DecontamConfig, Decontaminator
from megatron_snow.phase1.filters import FilterConfig, filter_reason
from megatron_snow.phase1.grouping import GroupingConfig, bucket_of, build_documents
from megatron_snow.phase1.ingest import Ingestor, IngestConfig, list_units
from megatron_snow.phase1.minhash import NearDedupConfig, make_verifier, near_keys_fn
from megatron_snow.phase1.pii import PIIConfig, redact
from megatron_snow.records import BadRecord, CodeRecord, read_shard_checked, write_shard
from megatron_snow.stages import (
    FUNNEL_FILE, Dropped, RecordStep, Step, StepContext, StepError, UnitResult, count_bad, is_complete, nbytes_of,
    run_step, set_aside,
)

@dataclass
class ExactDedupConfig(Config):
    enabled: bool = setting(True, help="drop byte-identical copies (the first in input order is kept)")


@dataclass
class Phase1Config(Config):
    output_dir: str = setting("phase1_out", help="one folder per stage is written under it")
    stages: list[str] = setting(help="which to run (in recipe order)", factory=lambda: list(STAGES))
    keep_dropped: bool = setting(True, help="write set-aside records with their reason under STAGE/dropped/")
    shard_compresslevel: int = setting(
        1, help="gzip level of every stage's shards (kept, dropped, group's scratch buckets): 0-3 written by ISA-L, "
                "4-9 by zlib; 1 writes ~13x faster than 6, files ~20% larger; the records are the same at any level",
        range="[0, 9]")
    progress: bool = setting(True, help="progress bars and the funnel tables on stderr (rank 0)")
    ingest: IngestConfig = setting(help="stage 1: reading the sources", factory=IngestConfig)
    filter: FilterConfig = setting(help="stage 2: quality filters", factory=FilterConfig)
    exact_dedup: ExactDedupConfig = setting(help="stage 3: exact deduplication", factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = setting(help="stage 4: near deduplication", factory=NearDedupConfig)
    decontaminate: DecontamConfig = setting(help="stage 5: benchmark decontamination", factory=DecontamConfig)
    pii: PIIConfig = setting(help="stage 6: PII redaction", factory=PIIConfig)
    grouping: GroupingConfig = setting(help="stage 7: repository grouping", factory=GroupingConfig)

    def validate(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ConfigError(f"stages: unknown {bad} (known: {list(STAGES)})")


# -- steps --------------------------------------------------------------------

class IngestStep(Step):
    """Raw sources -> records; one unit per directory chunk, JSONL file, parquet row group or arrow file."""

    name = "ingest"

    def __init__(self, cfg: IngestConfig):
        self.settings = cfg
        self._units: list[dict] | None = None

    def _plan(self) -> list[dict]:
        if self._units is None:
            if not self.settings.sources:
                raise ConfigError("ingest.sources: no input sources configured")
            self._units = list_units(self.settings.sources)
            if not self._units:
                raise FileNotFoundError("ingest: the configured sources hold no input files")
        return self._units

    def fingerprint_settings(self) -> Any:
        # the sources' content as listed: each unit's files with their sizes (cheap; catches a changed corpus)
        listing = []
        for u in self._plan():
            files = u.get("files") or [u.get("file")]
            sizes = []
            for f in files:
                base = Path(self.settings.sources[u["source"]].path) if u["kind"] == "directory" else Path("")
                try:
                    sizes.append((base / f).stat().st_size if f and "\x00" not in f else -1)
                except OSError:
                    sizes.append(-1)
            listing.append([u["kind"], len(files), sum(sizes), u.get("row_group")])
        digest = xxhash.xxh3_128_hexdigest(json.dumps(listing).encode())
        return {"ingest": to_dict(self.settings), "listing": {"units": len(listing), "hash": digest}}

    def units(self, ctx: StepContext) -> list[dict]:
        return self._plan()

    def describe(self, unit: Any) -> str:
        return unit.get("file") or f"{len(unit.get('files', []))} files of source {unit['source']}"

    def process(self, ctx: StepContext, index: int, unit: Any) -> UnitResult:
        if not hasattr(self, "_ing"):
            self._ing = Ingestor(self.settings)
        kept, dropped, funnel = [], [], Funnel(self.name)
        for r in self._ing.read_unit(unit, self.settings.sources):
            rec = r.record if isinstance(r, Dropped) else r
            n = nbytes_of(rec)
            funnel.seen(rec.language, n)
            if isinstance(r, Dropped):
                set_aside(funnel, dropped, rec, r.reason, r.details, nbytes=n)
            else:
                funnel.kept(rec.language, n)
                kept.append(rec)
        return UnitResult(kept, dropped, funnel)


class FilterStep(RecordStep):
    name = section = "filter"

    def __init__(self, cfg: FilterConfig, input_dir: Path):
        self.settings, self.input_dir = cfg, input_dir

    def map(self, rec: CodeRecord):
        reason = filter_reason(rec.content, rec.path, self.settings.for_language(rec.language))
        return (None, reason, {}) if reason else (rec, None, {})


class DecontaminateStep(RecordStep):
    """Drops files that hold benchmark text; depends on the benchmark files' content, not their folder."""

    name = section = "decontaminate"

    def __init__(self, cfg: DecontamConfig, input_dir: Path):
        self.settings, self.input_dir = cfg, input_dir
        self._dec: Decontaminator | None = None

    def fingerprint_settings(self) -> Any:
        return {"decontaminate": {k: v for k, v in to_dict(self.settings).items()
                                  if k not in ("benchmarks_dir", "cache_dir")}}  # where, not what

    def depends_on(self) -> dict[str, Path]:
        stems = self.settings.benchmarks or list(BENCHMARK_FIELDS)
        found = {s: benchmark_path(self.settings.benchmarks_dir, s) for s in stems if s in BENCHMARK_FIELDS}
        return {f"benchmark:{s}": p for s, p in found.items() if p is not None}

    def map(self, rec: CodeRecord):
        if self._dec is None:
            self._dec = Decontaminator(self.settings)
        hit = self._dec.check(rec.content, rec.language)  # the language picks the lexer of the code rules
        if hit is None:
            return rec, None, {}
        return None, hit.reason, hit.details()

    def dropped_stats(self, reason: str, details: dict) -> dict:
        """stats.json: matches per benchmark and rule."""
        return {"matches": {details["benchmark"]: {reason: 1}}} if "benchmark" in details else {}


class PIIStep(RecordStep):
    name = section = "pii"

    def __init__(self, cfg: PIIConfig, input_dir: Path):
        self.settings, self.input_dir = cfg, input_dir

    def map(self, rec: CodeRecord):
        text, counts = redact(rec.content, self.settings)
        if counts:
            rec.content = text
            rec.meta["pii"] = counts
        return rec, None, {}

    def stats_of(self, rec: CodeRecord) -> dict:
        return {"redacted": {rec.language: rec.meta.get("pii", {})}}


class DedupStep(Step):
    """prepare: bucket hashes (and signatures) per input shard, saved; clusters found across ranks
    (the all-to-all exchange of ``clusters.duplicates``); process: write the survivors of a shard."""

    def __init__(self, name: str, input_dir: Path, settings: Any, reason: str,
                 keys_fn: Callable[[list[CodeRecord]], tuple[np.ndarray, np.ndarray | None]],
                 verify_fn: Callable[[Path], Callable[[np.ndarray], np.ndarray]] | None = None,
                 summary: dict | None = None):
        self.name, self.input_dir, self.settings, self.reason = name, input_dir, settings, reason
        self.keys_fn, self.verify_fn, self.summary = keys_fn, verify_fn, summary or {}
        self.drop: dict[int, int] = {}

    def fingerprint_settings(self) -> Any:
        return {self.name: to_dict(self.settings), **self.summary}

    def _rows(self, ctx: StepContext, i: int) -> list[CodeRecord | BadRecord]:
        return list(ctx.read_input(i))

    def prepare(self, ctx: StepContext, units: list[Any]) -> None:
        mine = ctx.my_items(len(units))

        def hash_mine() -> None:
            for i in ctx.bar([i for i in mine if not (ctx.work / f"keys-{i:05d}.npy").is_file()], "hash"):
                rows = self._rows(ctx, i)
                good = [r if isinstance(r, CodeRecord) else CodeRecord(id=r.record.id, content="") for r in rows]
                atomic_write_json(ctx.work / f"ids-{i:05d}.json", [r.id for r in good], indent=None)
                keys, sigs = self.keys_fn(good)
                for j, r in enumerate(rows):  # damaged lines take no part
                    if isinstance(r, BadRecord):
                        keys[j] = 0
                if sigs is not None:
                    atomic_save_npy(ctx.work / f"sig-{i:05d}.npy", sigs)
                atomic_save_npy(ctx.work / f"keys-{i:05d}.npy", keys)  # last: phase A of shard i is done

        ctx.agree(hash_mine, f"{self.name}: ")
        hashes, gkeys = [], []
        for i in mine:
            k = np.load(ctx.work / f"keys-{i:05d}.npy")
            valid = (k != 0).all(axis=1) if k.ndim == 2 else np.ones(0, bool)
            hashes.append(k[valid])
            gkeys.append(clusters.global_keys(i, len(k))[valid])
        self.drop = clusters.duplicates(ctx.comm, hashes, gkeys, self.verify_fn(ctx.work) if self.verify_fn else None)
        self._ids: dict[int, list[str]] = {}

    def _id_of(self, ctx: StepContext, key: int) -> str:
        s, row = clusters.split_key(key)
        if s not in self._ids:
            self._ids[s] = json.loads((ctx.work / f"ids-{s:05d}.json").read_text())
        return self._ids[s][row]

    def describe(self, unit: Any) -> str:
        return f"input shard {unit['shard']} of {self.input_dir}"

    def process(self, ctx: StepContext, index: int, unit: Any) -> UnitResult:
        kept, dropped, funnel = [], [], Funnel(self.name)
        for row, rec in enumerate(ctx.read_input(unit["shard"])):
            if isinstance(rec, BadRecord):
                count_bad(funnel, dropped, rec)
                continue
            n = nbytes_of(rec)
            funnel.seen(rec.language, n)
            root = self.drop.get((index << clusters.ROW_BITS) | row)
            if root is None:
                funnel.kept(rec.language, n)
                kept.append(rec)
            else:
                # the kept partner and its output shard (where the report finds it to show it beside this one)
                set_aside(funnel, dropped, rec, self.reason, {"duplicate_of": self._id_of(ctx, root),
                                                              "kept_in_shard": clusters.split_key(root)[0]}, nbytes=n)
        return UnitResult(kept, dropped, funnel)


def exact_keys(recs: list[CodeRecord]) -> tuple[np.ndarray, None]:
    """One 64-bit content hash per record (0 is reserved for 'no key')."""
    h = np.array([xxhash.xxh3_64_intdigest(r.content.encode("utf-8")) for r in recs], dtype=np.uint64)
    h[h == 0] = 1
    return h.reshape(-1, 1), None


class NearDedupStep(DedupStep):
    """MinHash LSH near dedup (``minhash.near_keys_fn``: band keys and a verification payload per shard)."""

    def __init__(self, cfg: NearDedupConfig, input_dir: Path):
        keys, b, r = near_keys_fn(cfg)

        def verifier(work: Path):
            return make_verifier(cfg, lambda s: np.load(work / f"sig-{s:05d}.npy", mmap_mode="r"))

        super().__init__("near_dedup", input_dir, cfg, "near_duplicate", keys, verifier if cfg.verify else None,
                         {"bands": b, "rows": r})

    def summary_stats(self) -> dict:
        c = self.settings
        return {"bands": self.summary["bands"], "rows": self.summary["rows"], "num_perm": c.num_perm,
                "verify": c.verify, "verify_exact": c.verify_exact, "threshold": c.threshold, "ngram": c.ngram}


class GroupStep(Step):
    """prepare: scatter records into (language, repo) hash buckets on disk; process: one shard per bucket."""

    name = "group"
    section = "grouping"
    transforms = True  # files in, repository documents out

    def __init__(self, cfg: GroupingConfig, input_dir: Path):
        self.settings, self.input_dir = cfg, input_dir

    def units(self, ctx: StepContext) -> list[Any]:
        return [{"bucket": b} for b in range(self.settings.num_shards)]

    def describe(self, unit: Any) -> str:
        return f"bucket {unit['bucket']}"

    def prepare(self, ctx: StepContext, units: list[Any]) -> None:
        buckets, n_in = ctx.work / "buckets", len(ctx.input_shards_cached())

        def scatter() -> None:
            for i in ctx.bar([i for i in ctx.my_items(n_in) if not (buckets / f"scatter-{i:05d}.done").is_file()],
                             "scatter"):
                parts: dict[int, list[dict | CodeRecord]] = {}
                for rec in ctx.read_input(i):
                    if isinstance(rec, BadRecord):  # damaged line: counted by the bucket it lands in
                        d = rec.record.to_dict()
                        d["meta"]["bad"] = {"reason": rec.reason, **rec.details()}
                        parts.setdefault(i % len(units), []).append(d)
                    else:  # the record as read: written back as its own line
                        parts.setdefault(bucket_of(rec, len(units), self.settings.by), []).append(rec)
                for b, recs in sorted(parts.items()):
                    write_shard(buckets / f"b{b:05d}" / f"from-{i:05d}.jsonl.gz", recs, self.shard_compresslevel)
                atomic_write_text(buckets / f"scatter-{i:05d}.done", "")  # last: input shard i is scattered

        ctx.agree(scatter, "group: ")

    def process(self, ctx: StepContext, index: int, unit: Any) -> UnitResult:
        bdir = ctx.work / "buckets" / f"b{index:05d}"
        funnel, dropped, files = Funnel(self.name), [], []
        for i in range(len(ctx.input_shards_cached())):
            f = bdir / f"from-{i:05d}.jsonl.gz"
            if not f.is_file():
                continue
            for r in read_shard_checked(f):
                if isinstance(r, BadRecord):
                    raise StepError(f"group: scratch file {f} is damaged ({r.reason}); re-run with --force")
                bad = r.meta.pop("bad", None)
                if bad:
                    count_bad(funnel, dropped, BadRecord(bad["reason"], bad["file"], bad["line"], bad["error"], r))
                    continue
                n = nbytes_of(r)
                funnel.seen(r.language, n)
                funnel.kept(r.language, n)
                files.append(r)
        docs = build_documents(files, self.settings)
        stats: dict = {"documents": {}, "files": {}}
        for d in docs:
            stats["documents"][d.language] = stats["documents"].get(d.language, 0) + 1
            stats["files"][d.language] = stats["files"].get(d.language, 0) + d.meta["files"]
        return UnitResult(docs, dropped, funnel, stats, represents=len(files))

    def cleanup(self, ctx: StepContext) -> None:
        shutil.rmtree(ctx.work / "buckets", ignore_errors=True)  # a full copy of the corpus


# -- the chain ------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One phase-1 stage: its name (``stages=``, the funnel's stage), its folder under ``output_dir``, the
    ``Phase1Config`` field that holds its settings (an ``enabled`` flag there can switch it off), and how
    its step is made from those settings and the previous enabled stage's output (None for the first)."""

    name: str
    folder: str
    section: str
    make: Callable[[Any, Path | None], Step]


# The stages in recipe order: everything else (names, folders, the enabled chain, the steps) follows.
PHASE1 = (
    Stage("ingest", "01_ingest", "ingest", lambda s, inp: IngestStep(s)),
    Stage("filter", "02_filter", "filter", FilterStep),
    Stage("exact_dedup", "03_exact_dedup", "exact_dedup",
          lambda s, inp: DedupStep("exact_dedup", inp, s, "exact_duplicate", exact_keys)),
    Stage("near_dedup", "04_near_dedup", "near_dedup", NearDedupStep),
    Stage("decontaminate", "05_decontaminate", "decontaminate", DecontaminateStep),
    Stage("pii", "06_pii", "pii", PIIStep),
    Stage("group", "07_grouped", "grouping", GroupStep),
)
STAGES = tuple(s.name for s in PHASE1)
STAGE_DIRS = {s.name: s.folder for s in PHASE1}
_BY_NAME = {s.name: s for s in PHASE1}


def stage_dir(cfg: Phase1Config, stage: str) -> Path:
    return Path(cfg.output_dir) / STAGE_DIRS[stage]


def enabled_stages(cfg: Phase1Config) -> list[str]:
    return [s.name for s in PHASE1 if getattr(getattr(cfg, s.section), "enabled", True)]


def make_step(cfg: Phase1Config, stage: str, inp: Path | None) -> Step:
    """The runner step of one phase-1 stage reading ``inp`` (the previous enabled stage's output)."""
    s = _BY_NAME[stage]
    step = s.make(getattr(cfg, s.section), inp)
    step.shard_compresslevel = cfg.shard_compresslevel
    return step


def run_phase1(cfg: Phase1Config, comm: Comm | None = None, force: bool = False) -> dict[str, Funnel]:
    """Run the configured stages in recipe order; each reads the previous enabled stage's output."""
    comm = comm or get_comm()
    chain = enabled_stages(cfg)
    wanted = [s for s in chain if s in cfg.stages]
    for s in wanted:
        out = stage_dir(cfg, s)
        prev = chain[chain.index(s) - 1] if chain.index(s) > 0 else None
        inp = stage_dir(cfg, prev) if prev else None
        if inp is not None and not is_complete(inp):
            raise StepError(f"stage '{s}' needs the finished output of '{prev}' in {inp}; run that stage first", 2)
        if comm.is_root and cfg.progress:
            print(f"[phase1] {s} -> {out}" + (" (already complete)" if is_complete(out) else ""),
                  file=sys.stderr, flush=True)
        run_step(make_step(cfg, s, inp), out, comm, force=force, progress=cfg.progress,
                 keep_dropped=cfg.keep_dropped)
    funnels = {s: Funnel.read(stage_dir(cfg, s) / FUNNEL_FILE) for s in chain if is_complete(stage_dir(cfg, s))}
    if comm.is_root:
        summary = {s: f.to_dict() for s, f in funnels.items()}
        atomic_write_text(Path(cfg.output_dir) / "funnel.json", json.dumps(summary, indent=2) + "\n")  # stage order
        tables = "\n\n".join(f.table() for f in funnels.values())
        atomic_write_text(Path(cfg.output_dir) / "funnel.txt", tables + "\n")
        if cfg.progress:
            print(tables, file=sys.stderr, flush=True)
    comm.barrier()
    return funnels
