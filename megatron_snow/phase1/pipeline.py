"""The phase-1 stage runner: shards in, shards out, over 1 or N MPI ranks, resumable.

Layout under ``output_dir``::

    01_ingest/ 02_filter/ 03_exact_dedup/ 04_near_dedup/ 05_decontaminate/ 06_pii/ 07_grouped/
        part-NNNNN.jsonl.gz  manifest.json     kept records (a records.py dataset)
        dropped/part-NNNNN.jsonl.gz ...        set-aside records, meta["dropped"] = {stage, reason, ...}
        funnel.json  stats.json                 this stage's funnel and extra counts
        _work/                                  per-shard funnels and dedup keys (resume state)
    funnel.json  funnel.txt                     every finished stage, as JSON and as tables

Output shard i of a stage depends only on input shard i (or, for grouping,
on hash bucket i), never on which rank made it, so 1 and N ranks write the
same bytes. A shard file is renamed into place last, after its dropped
records and funnel: a killed run re-run with the same command skips every
shard that exists and ends identical to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import xxhash
from tqdm import tqdm

from megatron_snow.config import ConfigError, to_dict
from megatron_snow.dist import Comm, get_comm, my_items
from megatron_snow.funnel import Funnel
from megatron_snow.phase1 import clusters
from megatron_snow.phase1.decontaminate import DecontamConfig, Decontaminator
from megatron_snow.phase1.filters import FilterConfig, filter_reason
from megatron_snow.phase1.grouping import GroupingConfig, bucket_of, build_documents
from megatron_snow.phase1.ingest import Dropped, IngestConfig, Ingestor, list_units
from megatron_snow.phase1.minhash import NearDedupConfig, ShingleHasher, band_hashes, optimal_lsh_params, signature
from megatron_snow.phase1.pii import PIIConfig, redact
from megatron_snow.records import CodeRecord, MANIFEST, list_shards, read_shard, shard_name, write_manifest, write_shard

STAGES = ("ingest", "filter", "exact_dedup", "near_dedup", "decontaminate", "pii", "group")
STAGE_DIRS = {"ingest": "01_ingest", "filter": "02_filter", "exact_dedup": "03_exact_dedup",
              "near_dedup": "04_near_dedup", "decontaminate": "05_decontaminate", "pii": "06_pii",
              "group": "07_grouped"}
KILL_ENV = "MEGATRON_SNOW_KILL_AFTER_SHARDS"  # fault injection for resume tests: SIGKILL after N shards


@dataclass
class ExactDedupConfig:
    enabled: bool = True


@dataclass
class Phase1Config:
    output_dir: str = "phase1_out"
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # which to run (in recipe order)
    keep_dropped: bool = True  # write set-aside records with their reason under STAGE/dropped/
    progress: bool = True
    ingest: IngestConfig = field(default_factory=IngestConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    decontaminate: DecontamConfig = field(default_factory=DecontamConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)

    def __post_init__(self):
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ConfigError(f"stages: unknown {bad} (known: {list(STAGES)})")


def _nbytes(rec: CodeRecord) -> int:
    return rec.meta["bytes"] if not rec.content and "bytes" in rec.meta else len(rec.content.encode("utf-8"))


_written = 0


def _maybe_kill() -> None:
    global _written
    _written += 1
    limit = os.environ.get(KILL_ENV)
    if limit and _written >= int(limit):
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _merge_stats(into: dict, other: dict) -> dict:
    for k, v in other.items():
        if isinstance(v, dict):
            _merge_stats(into.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v
        else:
            into[k] = v
    return into


class Stage:
    """Writes one stage's shards (skipping finished ones) and, at the end, its manifest and funnel."""

    def __init__(self, name: str, out_dir: Path, n_shards: int, comm: Comm, keep_dropped: bool, progress: bool,
                 settings: dict | None = None):
        self.name, self.out, self.n, self.comm = name, out_dir, n_shards, comm
        self.keep_dropped, self.progress = keep_dropped, progress
        self.work = out_dir / "_work"
        self.work.mkdir(parents=True, exist_ok=True)
        (out_dir / "dropped").mkdir(exist_ok=True)
        error = comm.run_root_first(lambda: self._check_settings({"shards": n_shards, "keep_dropped": keep_dropped,
                                                                  **(settings or {})}))
        if error:
            raise ConfigError(error)

    def _check_settings(self, settings: dict) -> str | None:
        """Resuming must not mix shards made with other settings: refuse, naming the first difference."""
        path = self.work / "settings.json"
        settings = json.loads(json.dumps(settings, sort_keys=True))
        if path.is_file():
            old = json.loads(path.read_text())
            if old != settings:
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                return (f"{self.out} was made with other {self.name} settings ({diff[0]}: {old.get(diff[0])!r} -> "
                        f"{settings.get(diff[0])!r}); use a new output_dir or delete it")
            return None
        path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        return None

    def complete(self) -> bool:
        return (self.out / MANIFEST).is_file() and (self.out / "funnel.json").is_file()

    def done(self, i: int) -> bool:
        return (self.out / shard_name(i)).is_file()

    def todo(self) -> list[int]:
        return [i for i in my_items(self.n, self.comm) if not self.done(i)]

    def bar(self, items: list[int], desc: str) -> Iterable[int]:
        return tqdm(items, desc=f"{self.name}: {desc}", unit="shard", disable=not (self.progress and self.comm.is_root),
                    leave=False)

    def write(self, i: int, kept: list[CodeRecord], dropped: list[Dropped], funnel: Funnel, stats: dict) -> None:
        drop_recs = []
        for d in dropped:
            d.record.meta["dropped"] = {"stage": self.name, "reason": d.reason, **d.details}
            drop_recs.append(d.record)
        drop_entry = write_shard(self.out / "dropped" / shard_name(i), drop_recs if self.keep_dropped else [])
        entry = {"name": shard_name(i), "records": len(kept),
                 "content_bytes": sum(len(r.content.encode("utf-8")) for r in kept)}
        funnel.check()
        part = {"entry": entry, "dropped_entry": drop_entry, "funnel": funnel.to_dict(), "stats": stats}
        (self.work / f"part-{i:05d}.json").write_text(json.dumps(part, sort_keys=True))
        write_shard(self.out / shard_name(i), kept)  # last: its presence means shard i is finished
        _maybe_kill()

    def finish(self) -> Funnel:
        """After every rank is done: manifests, funnel.json, stats.json (rank 0), then sync."""
        self.comm.barrier()
        funnel = Funnel(self.name)
        if self.comm.is_root:
            for d in (self.out, self.out / "dropped", self.work):  # temp files of writes killed mid-way
                for tmp in d.glob(".*.tmp*"):
                    tmp.unlink()
            entries, drop_entries, stats = [], [], {}
            for i in range(self.n):
                part = json.loads((self.work / f"part-{i:05d}.json").read_text())
                entries.append(part["entry"])
                drop_entries.append(part["dropped_entry"])
                funnel.merge(part["funnel"])
                _merge_stats(stats, part["stats"])
            funnel.check()
            write_manifest(self.out / "dropped", drop_entries, stage=self.name, kind="dropped")
            funnel.write(self.out / "funnel.json")
            (self.out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
            write_manifest(self.out, entries, stage=self.name)
        self.comm.barrier()
        return Funnel.read(self.out / "funnel.json")


# -- stages -------------------------------------------------------------------

def run_ingest(cfg: Phase1Config, out: Path, comm: Comm) -> None:
    sources = cfg.ingest.sources
    if not sources:
        raise ConfigError("ingest.sources: no input sources configured")
    if (out / MANIFEST).is_file() and (out / "funnel.json").is_file():
        return
    units = comm.run_root_first(lambda: list_units(sources))
    stage = Stage("ingest", out, len(units), comm, cfg.keep_dropped, cfg.progress, {"ingest": to_dict(cfg.ingest)})
    if stage.complete():
        return
    ing = Ingestor(cfg.ingest)
    for i in stage.bar(stage.todo(), "read"):
        kept, dropped, funnel = [], [], Funnel("ingest")
        for r in ing.read_unit(units[i], sources):
            rec = r.record if isinstance(r, Dropped) else r
            funnel.seen(rec.language, _nbytes(rec))
            if isinstance(r, Dropped):
                funnel.dropped(rec.language, _nbytes(rec), r.reason)
                dropped.append(r)
            else:
                funnel.kept(rec.language, _nbytes(rec))
                kept.append(rec)
        stage.write(i, kept, dropped, funnel, {})
    stage.finish()


def run_map_stage(name: str, cfg: Phase1Config, inp: Path, out: Path, comm: Comm,
                  fn: Callable[[CodeRecord], tuple[CodeRecord | None, str | None, dict]],
                  stats_fn: Callable[[CodeRecord], dict] | None = None, settings: dict | None = None) -> None:
    """A stage that looks at one record at a time: fn -> (kept record or None, drop reason, details)."""
    shards = list_shards(inp)
    stage = Stage(name, out, len(shards), comm, cfg.keep_dropped, cfg.progress, settings)
    if stage.complete():
        return
    for i in stage.bar(stage.todo(), "shards"):
        kept, dropped, funnel, stats = [], [], Funnel(name), {}
        for rec in read_shard(shards[i]):
            n = _nbytes(rec)
            funnel.seen(rec.language, n)
            new, reason, details = fn(rec)
            if new is None:
                funnel.dropped(rec.language, n, reason)
                dropped.append(Dropped(rec, reason, details))
                if "benchmark" in details:
                    _merge_stats(stats, {"matches": {details["benchmark"]: {reason: 1}}})
            else:
                funnel.kept(new.language, len(new.content.encode("utf-8")))
                kept.append(new)
                if stats_fn:
                    _merge_stats(stats, stats_fn(new))
        stage.write(i, kept, dropped, funnel, stats)
    stage.finish()


def run_dedup_stage(name: str, cfg: Phase1Config, inp: Path, out: Path, comm: Comm,
                    keys_fn: Callable[[list[CodeRecord]], tuple[np.ndarray, np.ndarray | None]], reason: str,
                    settings: dict | None = None,
                    verify_fn: Callable[[Path], Callable[[np.ndarray], np.ndarray]] | None = None) -> None:
    """Phase A: bucket hashes (and signatures) per shard, saved; B: clusters across ranks; C: write survivors."""
    shards = list_shards(inp)
    stage = Stage(name, out, len(shards), comm, cfg.keep_dropped, cfg.progress, settings)
    if stage.complete():
        return
    mine = my_items(len(shards), comm)
    for i in stage.bar([i for i in mine if not (stage.work / f"keys-{i:05d}.npy").is_file()], "hash"):
        recs = list(read_shard(shards[i]))
        (stage.work / f"ids-{i:05d}.json").write_text(json.dumps([r.id for r in recs]))
        keys, sigs = keys_fn(recs)
        if sigs is not None:
            _save_npy(stage.work / f"sig-{i:05d}.npy", sigs)
        _save_npy(stage.work / f"keys-{i:05d}.npy", keys)  # last: its presence means phase A is done
    pending = comm.allreduce_sum(len(stage.todo()))
    if pending:
        hashes, gkeys = [], []
        for i in mine:
            k = np.load(stage.work / f"keys-{i:05d}.npy")
            valid = (k != 0).all(axis=1) if k.ndim == 2 else np.ones(0, bool)
            hashes.append(k[valid])
            gkeys.append(clusters.global_keys(i, len(k))[valid])
        drop = clusters.duplicates(comm, hashes, gkeys, verify_fn(stage.work) if verify_fn else None)
        id_cache: dict[int, list[str]] = {}

        def id_of(key: int) -> str:
            s, row = clusters.split_key(key)
            if s not in id_cache:
                id_cache[s] = json.loads((stage.work / f"ids-{s:05d}.json").read_text())
            return id_cache[s][row]

        for i in stage.bar(stage.todo(), "write"):
            kept, dropped, funnel = [], [], Funnel(name)
            for row, rec in enumerate(read_shard(shards[i])):
                n = _nbytes(rec)
                funnel.seen(rec.language, n)
                root = drop.get((i << clusters.ROW_BITS) | row)
                if root is None:
                    funnel.kept(rec.language, n)
                    kept.append(rec)
                else:
                    funnel.dropped(rec.language, n, reason)
                    dropped.append(Dropped(rec, reason, {"duplicate_of": id_of(root)}))
            stage.write(i, kept, dropped, funnel, {})
    stage.finish()


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def exact_keys(recs: list[CodeRecord]) -> tuple[np.ndarray, None]:
    """One 64-bit content hash per record (0 is reserved for 'no key')."""
    h = np.array([xxhash.xxh3_64_intdigest(r.content.encode("utf-8")) for r in recs], dtype=np.uint64)
    h[h == 0] = 1
    return h.reshape(-1, 1), None


def signature_verifier(threshold: float) -> Callable[[Path], Callable[[np.ndarray], np.ndarray]]:
    """Edges -> keep mask: estimated Jaccard (share of equal signature values) >= threshold."""
    def make(work: Path) -> Callable[[np.ndarray], np.ndarray]:
        cache: dict[int, np.ndarray] = {}

        def sig(key: int) -> np.ndarray:
            s, row = clusters.split_key(key)
            if s not in cache:
                cache[s] = np.load(work / f"sig-{s:05d}.npy", mmap_mode="r")
            return cache[s][row]

        def verify(edges: np.ndarray) -> np.ndarray:
            return np.array([float(np.mean(sig(a) == sig(b))) >= threshold for a, b in edges.tolist()], dtype=bool)

        return verify
    return make


def near_keys_fn(cfg: NearDedupConfig) -> tuple[Callable[[list[CodeRecord]], tuple[np.ndarray, np.ndarray]], int, int]:
    if cfg.bands and cfg.rows:
        if cfg.bands * cfg.rows > cfg.num_perm:
            raise ConfigError(f"near_dedup: bands*rows = {cfg.bands * cfg.rows} > num_perm = {cfg.num_perm}")
        b, r = cfg.bands, cfg.rows
    else:
        b, r = optimal_lsh_params(cfg.threshold, cfg.num_perm, cfg.false_positive_weight, cfg.false_negative_weight)
    hasher = ShingleHasher()

    def keys(recs: list[CodeRecord]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(recs), b), dtype=np.uint64)
        sigs = np.zeros((len(recs), cfg.num_perm), dtype=np.uint32)
        for j, rec in enumerate(recs):
            sh = hasher.shingles(rec.content, cfg.ngram)
            if len(sh):  # files without tokens take no part (row stays 0)
                sig = signature(sh, cfg.num_perm, cfg.seed, cfg.block)
                sigs[j] = sig
                bh = band_hashes(sig, b, r)
                bh[bh == 0] = 1
                out[j] = bh
        return out, sigs

    return keys, b, r


def run_group(cfg: Phase1Config, inp: Path, out: Path, comm: Comm) -> None:
    """Scatter records into (language, repo) hash buckets on disk, then build one shard per bucket."""
    g = cfg.grouping
    shards = list_shards(inp)
    stage = Stage("group", out, g.num_shards, comm, cfg.keep_dropped, cfg.progress,
                  {"grouping": to_dict(g), "input_shards": len(shards)})
    buckets = stage.work / "buckets"
    if stage.complete():
        if comm.is_root and buckets.exists():
            shutil.rmtree(buckets)
        return
    if comm.allreduce_sum(len(stage.todo())):
        for i in stage.bar([i for i in my_items(len(shards), comm)
                            if not (buckets / f"scatter-{i:05d}.done").is_file()], "scatter"):
            parts: dict[int, list[CodeRecord]] = {}
            for rec in read_shard(shards[i]):
                parts.setdefault(bucket_of(rec, g.num_shards), []).append(rec)
            for b, recs in parts.items():
                write_shard(buckets / f"b{b:05d}" / f"from-{i:05d}.jsonl.gz", recs)
            (buckets / f"scatter-{i:05d}.done").write_text("")
        comm.barrier()
        for b in stage.bar(stage.todo(), "group"):
            bdir = buckets / f"b{b:05d}"
            files = [bdir / f"from-{i:05d}.jsonl.gz" for i in range(len(shards))]
            recs = [r for f in files if f.is_file() for r in read_shard(f)]
            funnel = Funnel("group")
            for r in recs:
                n = _nbytes(r)
                funnel.seen(r.language, n)
                funnel.kept(r.language, n)
            docs = build_documents(recs, g)
            stats = {"documents": {}, "files": {}}
            for d in docs:
                stats["documents"][d.language] = stats["documents"].get(d.language, 0) + 1
                stats["files"][d.language] = stats["files"].get(d.language, 0) + d.meta["files"]
            stage.write(b, docs, [], funnel, stats)
    stage.finish()
    comm.barrier()
    if comm.is_root and buckets.exists():
        shutil.rmtree(buckets)  # a full copy of the corpus; the grouped shards replace it


# -- the chain ------------------------------------------------------------------

def stage_dir(cfg: Phase1Config, stage: str) -> Path:
    return Path(cfg.output_dir) / STAGE_DIRS[stage]


def enabled_stages(cfg: Phase1Config) -> list[str]:
    switch = {"exact_dedup": cfg.exact_dedup.enabled, "near_dedup": cfg.near_dedup.enabled,
              "decontaminate": cfg.decontaminate.enabled, "pii": cfg.pii.enabled, "group": cfg.grouping.enabled}
    return [s for s in STAGES if switch.get(s, True)]


def run_phase1(cfg: Phase1Config, comm: Comm | None = None) -> dict[str, Funnel]:
    """Run the configured stages in recipe order; each reads the previous enabled stage's output."""
    comm = comm or get_comm()
    chain = enabled_stages(cfg)
    wanted = [s for s in chain if s in cfg.stages]
    for s in wanted:
        out = stage_dir(cfg, s)
        prev = chain[chain.index(s) - 1] if chain.index(s) > 0 else None
        inp = stage_dir(cfg, prev) if prev else None
        if inp is not None and not (inp / MANIFEST).is_file():
            raise FileNotFoundError(f"stage '{s}' needs the finished output of '{prev}' in {inp}; run that stage first")
        if comm.is_root and cfg.progress:
            print(f"[phase1] {s} -> {out}" + (" (already complete)" if (out / "funnel.json").is_file() else ""),
                  file=sys.stderr, flush=True)
        if s == "ingest":
            run_ingest(cfg, out, comm)
        elif s == "filter":
            fc = cfg.filter

            def do_filter(rec: CodeRecord):
                reason = filter_reason(rec.content, rec.path, fc.for_language(rec.language))
                return (None, reason, {}) if reason else (rec, None, {})

            run_map_stage(s, cfg, inp, out, comm, do_filter, settings={"filter": to_dict(fc)})
        elif s == "exact_dedup":
            run_dedup_stage(s, cfg, inp, out, comm, exact_keys, "exact_duplicate")
        elif s == "near_dedup":
            keys, b, r = near_keys_fn(cfg.near_dedup)
            run_dedup_stage(s, cfg, inp, out, comm, keys, "near_duplicate",
                            settings={"near_dedup": to_dict(cfg.near_dedup), "bands": b, "rows": r},
                            verify_fn=signature_verifier(cfg.near_dedup.threshold) if cfg.near_dedup.verify else None)
            if comm.is_root:
                st = {"bands": b, "rows": r, "num_perm": cfg.near_dedup.num_perm, "verify": cfg.near_dedup.verify,
                      "threshold": cfg.near_dedup.threshold, "ngram": cfg.near_dedup.ngram}
                (out / "stats.json").write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")
        elif s == "decontaminate":
            if (out / "funnel.json").is_file():
                continue
            dec = Decontaminator(cfg.decontaminate)

            def do_decontam(rec: CodeRecord):
                hit = dec.check(rec.content)
                if hit is None:
                    return rec, None, {}
                return None, hit.pop("reason"), hit

            dsettings = {k: v for k, v in to_dict(cfg.decontaminate).items() if k != "benchmarks_dir"}
            run_map_stage(s, cfg, inp, out, comm, do_decontam, settings={"decontaminate": dsettings,
                                                                         "benchmarks": dec.benchmarks})
        elif s == "pii":
            pc = cfg.pii

            def do_pii(rec: CodeRecord):
                text, counts = redact(rec.content, pc)
                if counts:
                    rec.content = text
                    rec.meta["pii"] = counts
                return rec, None, {}

            run_map_stage(s, cfg, inp, out, comm, do_pii,
                          stats_fn=lambda rec: {"redacted": {rec.language: rec.meta.get("pii", {})}},
                          settings={"pii": to_dict(pc)})
        elif s == "group":
            run_group(cfg, inp, out, comm)
    funnels = {s: Funnel.read(stage_dir(cfg, s) / "funnel.json") for s in chain
               if (stage_dir(cfg, s) / "funnel.json").is_file()}
    if comm.is_root:
        summary = {s: f.to_dict() for s, f in funnels.items()}
        Path(cfg.output_dir, "funnel.json").write_text(json.dumps(summary, indent=2) + "\n")  # stage order
        tables = "\n\n".join(f.table() for f in funnels.values())
        Path(cfg.output_dir, "funnel.txt").write_text(tables + "\n")
        if cfg.progress:
            print(tables, file=sys.stderr, flush=True)
    comm.barrier()
    return funnels
