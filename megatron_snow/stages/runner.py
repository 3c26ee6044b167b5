"""The stage runner core: one way to plan, run, resume, check and account for a data step.

See ``megatron_snow/stages/__init__.py`` for how to write a step.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

from megatron_snow import faults
from megatron_snow.atomic import atomic_write_json, atomic_write_text, is_temp, remove_temp_files
from megatron_snow.config import ConfigError, to_dict
from megatron_snow.dist import Comm, get_comm, my_items
from megatron_snow.funnel import Funnel, FunnelError
from megatron_snow.records import (
    COMPRESSLEVEL, MANIFEST, BadRecord, CodeRecord, RecordError, read_manifest, read_shard_checked, shard_name,
    write_manifest, write_shard,
)

T = TypeVar("T")

STEP_FILE = "step.json"  # what the output was made with and on; written before any unit
RANKS_FILE = "ranks.json"  # which rank did which units in the last run (the one file that depends on N)
FUNNEL_FILE = "funnel.json"
STATS_FILE = "stats.json"


class StepError(RuntimeError):
    """A step cannot go on. Raised on every rank with the same one-line message; ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class StaleOutputError(StepError):
    """Existing output was made with other settings or inputs (bad input: exit 2)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


@dataclass
class Dropped:
    """A record set aside, with the reason (a funnel counter) and details (written into its meta)."""

    record: CodeRecord
    reason: str
    details: dict = field(default_factory=dict)


@dataclass
class UnitResult:
    """What ``process`` returns for one unit: the kept records (one output shard), the dropped ones,
    the unit's funnel (must balance), free-form numeric stats (summed over units), and how many
    input records the kept output stands for when a step turns records into others (grouping:
    files into documents; default ``len(kept)``)."""

    kept: list[CodeRecord]
    dropped: list[Dropped]
    funnel: Funnel
    stats: dict = field(default_factory=dict)
    represents: int | None = None
    part: Any = None  # an artefact step: what the unit wrote under ctx.work (JSON-able); given to finalize


class Step:
    """Base class of a data step whose output is a records dataset (its directory); override what you
    need (see the package docstring). An ``ArtefactStep`` writes files instead."""

    name: str = "step"
    settings: Any = None  # a config dataclass: fingerprinted
    input_dir: Path | None = None  # the records dataset this step reads (accounting, fingerprint)
    transforms: bool = False  # kept output is not the kept input records (set UnitResult.represents)
    section: str | None = None  # the settings' key in a larger config (names them in the refusal line)
    workers: int = 1  # processes per rank that run ``process`` (forked; results come back to this one)
    weight_unit: str = "unit"  # what ``weight`` counts (the progress bar's unit)
    shard_compresslevel: int = COMPRESSLEVEL  # gzip level of the shards the runner writes (fingerprinted if not 6)

    def fingerprint_settings(self) -> Any:
        """What of the settings decides the output (default: all of them)."""
        return {self.section: to_dict(self.settings)} if self.section else to_dict(self.settings)

    def depends_on(self) -> dict[str, Path]:
        """Files or datasets the output depends on, fingerprinted by content (input_dir is added)."""
        return {}

    def input_records(self) -> int | None:
        """Records the input holds by its manifest(s): the funnel's "in" must equal it (None: no check)."""
        return read_manifest(self.input_dir)["records"] if self.input_dir is not None else None

    def weight(self, unit: Any) -> int:
        """Relative size of a unit: the progress bar counts it, and forked workers take the biggest first."""
        return 1

    def units(self, ctx: "StepContext") -> list[Any]:
        """The unit plan (JSON-able, deterministic); computed on rank 0 and shared. One output shard each."""
        if self.input_dir is None:
            raise NotImplementedError(f"{self.name}: define units()")
        return [{"shard": i} for i in range(len(read_manifest(self.input_dir)["shards"]))]

    def prepare(self, ctx: "StepContext", units: list[Any]) -> None:
        """Collective work before the units (every rank calls it): e.g. an exchange between ranks."""

    def process(self, ctx: "StepContext", index: int, unit: Any) -> UnitResult:
        raise NotImplementedError

    def cleanup(self, ctx: "StepContext") -> None:
        """Rank 0, after the manifest: remove scratch state under ctx.work."""

    def summary_stats(self) -> dict:
        """Values for stats.json that are not sums over units (e.g. the LSH bands chosen)."""
        return {}

    def describe(self, unit: Any) -> str:
        """How errors name a unit (a file, for instance)."""
        return json.dumps(unit, sort_keys=True)[:200]


class ArtefactStep(Step):
    """A step whose output is files outside its directory (a tokenizer model, a Megatron index), not a
    records dataset: each unit writes a part under ``ctx.work`` and returns it as ``UnitResult.part``
    (no kept records); ``finalize`` merges the parts into ``outputs()``."""

    def outputs(self) -> list[Path]:
        """The files ``finalize`` writes: the step is complete while they keep the sizes its manifest lists."""
        raise NotImplementedError

    def finalize(self, ctx: "StepContext", parts: list[Any], funnel: Funnel) -> int | None:
        """Rank 0, after every unit, before the files that declare the step complete: merge the units'
        parts (in unit order; ``funnel`` merged and balanced) into ``outputs()``. Returns how many records
        the output holds (checked against the funnel's kept), or None."""
        raise NotImplementedError


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [1, {"c": 2}]}} -> {"a.b[0]": 1, "a.b[1].c": 2}: a difference names one leaf."""
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d:
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


_HASH_CACHE: dict[tuple, str] = {}


def content_hash(path: str | Path) -> str:
    """A fingerprint of a file (its bytes) or a dataset (its manifest, which holds each shard's hash);
    a directory without a manifest by its listing (relative names and sizes)."""
    p = Path(path)
    h = hashlib.blake2b(digest_size=16)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return content_hash(p / MANIFEST)
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(p)}\0{f.stat().st_size}\n".encode("utf-8", "surrogateescape"))
        return "listing:" + h.hexdigest()
    if not p.is_file():
        return "missing"
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def fingerprint(step: Step) -> dict:
    """{step, settings, inputs: {label: content hash}, fingerprint}: deterministic, free of output paths."""
    deps = dict(step.depends_on())
    if step.input_dir is not None:
        deps.setdefault("input", step.input_dir)
    settings = step.fingerprint_settings()
    if step.shard_compresslevel != COMPRESSLEVEL:  # other bytes, same records: resume refuses a mix of levels
        settings = {**(settings if isinstance(settings, dict) else {"settings": settings}),
                    "shard_compresslevel": step.shard_compresslevel}
    record = {"step": step.name, "settings": json.loads(json.dumps(settings, sort_keys=True)),
              "inputs": {k: content_hash(v) for k, v in sorted(deps.items())}}
    record["fingerprint"] = hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=16).hexdigest()
    return record


def _first_difference(old: dict, new: dict) -> str:
    for part in ("settings", "inputs"):
        a, b = _flatten(old.get(part, {})), _flatten(new.get(part, {}))
        diff = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
        if diff:
            k = diff[0]
            what = "settings" if part == "settings" else "inputs"
            old_v, new_v = repr(a.get(k, "<unset>"))[:100], repr(b.get(k, "<unset>"))[:100]
            return f"other {what} ({k}: {old_v} -> {new_v})"
    return "another step version"


class StepContext:
    """What a step sees while it runs: where to write, the communicator, helpers."""

    def __init__(self, step: Step, out: Path, comm: Comm, *, progress: bool, keep_dropped: bool):
        self.step, self.out, self.comm = step, out, comm
        self.work = out / "_work"
        self.kind = _kind_of(step)  # what the output is: a records dataset or an artefact step's files
        self.progress, self.keep_dropped = progress, keep_dropped

    def bar(self, items: Iterable[T] | None, desc: str, unit: str = "unit", total: int | None = None) -> Any:
        items = list(items) if items is not None else None
        return tqdm(items, desc=f"{self.step.name}: {desc}", unit=unit, leave=False, total=total,
                    unit_scale=unit != "unit", disable=not (self.progress and self.comm.is_root))

    def my_items(self, n: int) -> list[int]:
        return my_items(n, self.comm)

    def unit_finished(self, i: int, unit: Any) -> bool:
        """Unit i (of this plan) has its completion marker: a resumed run skips it."""
        return _finished(self, i, unit)

    def agree(self, fn: Callable[[], T], what: str = "") -> T:
        """Run local work ``fn`` on every rank, then agree: if it failed anywhere, every rank raises the
        same StepError (the lowest failing rank's one line). Put local work before a collective in here."""
        error = None
        result = None
        try:
            result = fn()
        except StepError as e:
            error = (str(e), e.exit_code, isinstance(e, StaleOutputError))
        except (ConfigError, FileNotFoundError, RecordError) as e:
            error = (str(e) if str(e).startswith(what) else f"{what}{e}", 2, False)
        except Exception as e:  # noqa: BLE001 - any failure becomes one line on every rank
            error = (f"{what}{type(e).__name__}: {e}".replace("\n", " "), 1, False)
        errors = [e for e in self.comm.allgather(error) if e is not None]
        if errors:
            msg, code, stale = errors[0]
            raise StaleOutputError(msg) if stale else StepError(msg, code)
        return result  # type: ignore[return-value]

    def root_then_share(self, fn: Callable[[], T], what: str = "") -> T:
        """Run ``fn`` on rank 0 only, share its result; a failure there raises the same StepError everywhere."""
        out = self.agree(lambda: fn() if self.comm.is_root else None, what)
        return self.comm.bcast(out)

    # -- reading the input dataset ------------------------------------------------
    def input_shards(self) -> list[dict]:
        if self.step.input_dir is None:
            return []
        return read_manifest(self.step.input_dir)["shards"]

    def read_input(self, i: int) -> Iterator[CodeRecord | BadRecord]:
        """Records of input shard i, damaged lines as BadRecord. A damaged gzip's lost tail is one
        BadRecord that stands for the records its manifest entry says are missing; a shard that holds
        more records than its entry says, or fewer without damage, fails the step (the manifest lies)."""
        entry = self.input_shards_cached()[i]
        path = Path(self.step.input_dir) / entry["name"]
        expected, n, tail = int(entry["records"]), 0, None
        for item in read_shard_checked(path, name=str(path)):
            if isinstance(item, BadRecord) and item.reason in ("corrupt_gzip", "unreadable_file"):
                tail = item  # the last item: the rest of the file cannot be read
                continue
            n += 1
            yield item
        if tail is not None:
            tail.count = max(1, expected - n)
            n += tail.count
            yield tail
        if n != expected:
            raise StepError(f"{self.step.name}: input shard {path} holds {n} records but its manifest says "
                            f"{expected}; re-make that dataset (its step with --force)")

    def input_shards_cached(self) -> list[dict]:
        if not hasattr(self, "_shards"):
            self._shards = self.input_shards()
        return self._shards


def set_aside(funnel: Funnel, dropped: list[Dropped], rec: CodeRecord, reason: str, details: dict | None = None, *,
              nbytes: int | None = None, count: int = 1) -> None:
    """Count a record set aside in a unit's funnel (already counted as seen) and add it to the unit's
    dropped list: the one place a step drops a record, so the funnel and ``dropped/`` always agree.
    ``nbytes``: what it counts for (default ``nbytes_of(rec)``); ``count``: how many records it stands for."""
    funnel.dropped(rec.language, nbytes_of(rec) if nbytes is None else nbytes, reason, count)
    dropped.append(Dropped(rec, reason, details or {}))


def count_bad(funnel: Funnel, dropped: list[Dropped], bad: BadRecord, stage: str = "") -> None:
    """Count a damaged line or file in a unit's funnel (seen, then set aside under its reason)."""
    funnel.seen(bad.record.language, 0, bad.count)
    set_aside(funnel, dropped, bad.record, bad.reason, bad.details(), nbytes=0, count=bad.count)


def unit_marker(work: Path, i: int) -> Path:
    """Unit i's completion marker under a step's ``_work/``: the name is the runner's; a step that needs to
    know whether a unit is done asks ``StepContext.unit_finished``."""
    return Path(work) / f"unit-{i:05d}.json"


def _finished(ctx: StepContext, i: int, unit: Any) -> bool:
    """Unit i has a marker made for this very unit (a plan that follows the number of processes, as
    build-index's does, may give index i another unit in the next run: then it is done again)."""
    m = unit_marker(ctx.work, i)
    if not m.is_file():
        return False
    try:
        made_for = json.loads(m.read_text()).get("unit", _unit_key(unit))
    except ValueError:
        return False
    return made_for == _unit_key(unit)


def _unit_key(unit: Any) -> str:
    """A short fingerprint of a unit (units may hold file names that are not UTF-8)."""
    return hashlib.blake2b(json.dumps(unit, sort_keys=True).encode(), digest_size=8).hexdigest()


def _write_unit(ctx: StepContext, i: int, unit: Any, res: UnitResult) -> None:
    """Dropped shard, kept shard (a records step), then the unit's marker (last: its presence means unit i
    is finished). An artefact step wrote its part under ctx.work itself; the marker records ``res.part``."""
    drop_recs = []
    for d in res.dropped:
        d.record.meta["dropped"] = {"stage": ctx.step.name, "reason": d.reason, **d.details}
        drop_recs.append(d.record)
    drop_entry = None
    if drop_recs or ctx.kind.dropped_always:
        drop_entry = write_shard(ctx.out / "dropped" / shard_name(i), drop_recs if ctx.keep_dropped else [],
                                 ctx.step.shard_compresslevel)
    res.funnel.check()
    faults.point(f"unit.dropped_written:{ctx.step.name}:{i:05d}")
    entry = ctx.kind.write_kept(ctx, i, res)
    faults.point(f"unit.shard_written:{ctx.step.name}:{i:05d}")  # a whole shard, no marker yet
    marker = {"unit": _unit_key(unit), "entry": entry, "dropped_entry": drop_entry, "funnel": res.funnel.to_dict(),
              "stats": res.stats, "represents": len(res.kept) if res.represents is None else res.represents,
              "part": res.part}
    atomic_write_text(unit_marker(ctx.work, i), json.dumps(marker, sort_keys=True) + "\n")  # ASCII: any label
    faults.point(f"unit.marker_written:{ctx.step.name}:{i:05d}")


# -- forked workers inside a rank (Step.workers > 1) ------------------------------
_POOL: tuple[Step, StepContext] | None = None


def _pool_init(step: Step, ctx: StepContext) -> None:
    global _POOL
    _POOL = (step, ctx)  # inherited through fork, not pickled


def _pool_process(args: tuple[int, Any]) -> tuple[int, Any, tuple[str, int] | None]:
    """In a worker: (i, result with its funnel as a dict, None) or (i, None, (one-line error, exit code))."""
    i, unit = args
    assert _POOL is not None
    step, ctx = _POOL
    try:
        res = step.process(ctx, i, unit)
        res.funnel = res.funnel.to_dict()  # type: ignore[assignment]  (a Funnel does not pickle)
        return i, res, None
    except StepError as e:
        return i, None, (str(e), e.exit_code)
    except Exception as e:  # noqa: BLE001
        return i, None, (_unit_error(step, i, unit, e), 1)


def _unit_error(step: Step, i: int, unit: Any, e: BaseException) -> str:
    return f"{step.name}: unit {i} ({step.describe(unit)}): {type(e).__name__}: {e}".replace("\n", " ")


def _results(ctx: StepContext, todo: list[int], units: list[Any]) -> Iterator[tuple[int, UnitResult]]:
    """(i, result) of the units in ``todo``: in this process in order, or on ``step.workers`` forked
    processes biggest first (workers never call MPI; the markers are written here, in this process)."""
    step = ctx.step
    bar = ctx.bar(None, "units", unit=step.weight_unit, total=sum(step.weight(units[i]) for i in todo))
    try:
        if step.workers <= 1 or len(todo) <= 1:
            for i in todo:
                try:
                    res = step.process(ctx, i, units[i])
                except StepError:
                    raise
                except Exception as e:  # noqa: BLE001
                    raise StepError(_unit_error(step, i, units[i], e)) from e
                yield i, res
                bar.update(step.weight(units[i]))
            return
        import multiprocessing

        order = sorted(todo, key=lambda i: -step.weight(units[i]))  # a short tail when workers finish
        pool = multiprocessing.get_context("fork").Pool(min(step.workers, len(todo)), _pool_init, (step, ctx))
        try:
            for i, res, error in pool.imap_unordered(_pool_process, [(i, units[i]) for i in order]):
                if error is not None:
                    raise StepError(*error)
                res.funnel = Funnel.from_dict(res.funnel)
                yield i, res
                bar.update(step.weight(units[i]))
            pool.close()
            pool.join()
        finally:
            pool.terminate()
    finally:
        bar.close()


def merge_stats(into: dict, other: dict) -> dict:
    """Sum numbers, recurse into dicts, last value wins otherwise."""
    for k, v in other.items():
        if isinstance(v, dict):
            merge_stats(into.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v
        else:
            into[k] = v
    return into


def is_complete(out: str | Path) -> bool:
    """The step's directory is finished; for an artefact step, its outputs also still exist, whole."""
    out = Path(out)
    if not ((out / MANIFEST).is_file() and (out / FUNNEL_FILE).is_file() and (out / STEP_FILE).is_file()):
        return False
    try:
        outputs = json.loads((out / MANIFEST).read_text()).get("outputs") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return all((out.parent / name).is_file() and (out.parent / name).stat().st_size == size
               for name, size in outputs.items())


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def _remove_output_temps(outputs: list[Path]) -> None:
    """Temp files of killed writes of the outputs (``.NAME.tmp-PID`` and ``NAME.tmp-PID``)."""
    for p in outputs:
        if p.parent.is_dir():
            for t in list(p.parent.glob(f".{p.name}.tmp-*")) + list(p.parent.glob(f"{p.name}.tmp-*")):
                t.unlink(missing_ok=True)


# -- the two kinds of step: what the output is, chosen once per run ------------------
class _RecordsOutput:
    """A records step (``Step``): its directory is its output, one kept shard and one dropped shard per
    unit, and the manifest of the kept shards (written last)."""

    outputs: list[Path] | tuple[()] = ()  # a records step writes nothing outside its directory
    dropped_always = True  # a dropped shard (maybe empty) for every unit

    def __init__(self, step: Step):
        self.step = step

    def write_kept(self, ctx: StepContext, i: int, res: UnitResult) -> dict | None:
        return write_shard(ctx.out / shard_name(i), res.kept, ctx.step.shard_compresslevel)

    def holds(self, written: int, n_kept: int) -> bool:
        """The kept shards hold what the funnel kept (a step that transforms records: not by count)."""
        return self.step.transforms or written == n_kept

    def finalize(self, ctx: StepContext, parts: list[Any], funnel: Funnel) -> int | None:
        return None

    def write_manifest(self, ctx: StepContext, entries: list[dict], fp: str, n_kept: int) -> None:
        write_manifest(ctx.out, entries, stage=self.step.name, fingerprint=fp)


class _ArtefactOutput(_RecordsOutput):
    """An artefact step (``ArtefactStep``): parts under _work/, ``finalize`` writes ``outputs()``; the
    manifest lists those files and their sizes. Dropped shards only for units that set records aside."""

    dropped_always = False

    def __init__(self, step: ArtefactStep):
        self.step = step
        self.outputs = [Path(p) for p in step.outputs()]

    def write_kept(self, ctx: StepContext, i: int, res: UnitResult) -> dict | None:
        if res.kept:
            raise StepError(f"{self.step.name}: unit {i}: an artefact step writes its part under ctx.work, "
                            "not kept records")
        return None

    def holds(self, written: int, n_kept: int) -> bool:
        return True  # checked against what finalize says the outputs hold

    def finalize(self, ctx: StepContext, parts: list[Any], funnel: Funnel) -> int | None:
        held = self.step.finalize(ctx, parts, funnel)  # type: ignore[attr-defined]
        missing = [str(p) for p in self.outputs if not p.is_file()]
        if missing:
            raise StepError(f"{self.step.name}: finalize did not write {', '.join(missing)}")
        return held

    def write_manifest(self, ctx: StepContext, entries: list[dict], fp: str, n_kept: int) -> None:
        out = ctx.out
        atomic_write_json(out / MANIFEST, {"format": "megatron-snow-artefact-v1", "stage": self.step.name,
                                           "fingerprint": fp, "kept": n_kept, "outputs": {
                                               os.path.relpath(p, out.parent): p.stat().st_size for p in self.outputs}})


def _kind_of(step: Step) -> _RecordsOutput:
    """The one place the runner tells the two kinds apart."""
    if isinstance(step, ArtefactStep):
        return _ArtefactOutput(step)
    if hasattr(step, "outputs") or hasattr(step, "finalize"):
        raise TypeError(f"{step.name}: a step with outputs()/finalize() must subclass ArtefactStep")
    return _RecordsOutput(step)


def _check_fingerprint(out: Path, fp: dict, force: bool, name: str, outputs: list[Path] = ()) -> None:
    """Rank 0: refuse output made with another fingerprint (or wipe it with force); record ours."""
    path = out / STEP_FILE
    existing = [p for p in outputs if p.exists()]
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        if old.get("fingerprint") == fp["fingerprint"]:
            return
        if not force:
            raise StaleOutputError(f"{out} was made with {_first_difference(old, fp)}; re-run with --force to "
                                   f"replace it, or use a new output {'path' if outputs else 'directory'}")
    elif existing and not force:
        raise StaleOutputError(f"{existing[0]} exists but was made with other settings (output of unknown origin: "
                               f"no {path}); re-run with --force to replace it, or use a new output path")
    elif out.is_dir() and any(p.name != "_work" for p in out.iterdir()) and not force:
        raise StaleOutputError(f"{out} was made with other settings (it holds output of unknown origin: no "
                               f"{STEP_FILE}); re-run with --force to replace it, or use a new output directory")
    for p in existing:
        _remove(p)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    atomic_write_json(path, fp)


def run_step(step: Step, out: str | Path, comm: Comm | None = None, *, force: bool = False,
             progress: bool = True, keep_dropped: bool = True) -> Funnel:
    """Run ``step`` into ``out`` on every rank of ``comm``; resume what a killed run left; return the funnel.

    Raises StepError (the same one line on every rank) when the step cannot finish, and
    StaleOutputError when ``out`` holds output of another fingerprint and ``force`` is false.
    """
    comm = comm or get_comm()
    out = Path(out)
    ctx = StepContext(step, out, comm, progress=progress, keep_dropped=keep_dropped)
    tag = f"{step.name}: "

    def setup() -> bool:
        fp = fingerprint(step)
        _check_fingerprint(out, fp, force, step.name, ctx.kind.outputs)
        remove_temp_files(out)
        _remove_output_temps(ctx.kind.outputs)
        ctx.work.mkdir(parents=True, exist_ok=True)
        for p in ctx.work.rglob("*.tmp-*"):  # a step's own temp names (not megatron_snow.atomic's)
            if p.is_file() and not is_temp(p):
                p.unlink()
        if ctx.kind.dropped_always:
            (out / "dropped").mkdir(exist_ok=True)
        if is_complete(out):
            step.cleanup(ctx)  # a run killed between the manifest and the cleanup
            return True
        (out / MANIFEST).unlink(missing_ok=True)  # an artefact step's output changed since: finish again
        return False

    if ctx.root_then_share(setup, tag):
        return Funnel.read(out / FUNNEL_FILE)
    units = ctx.root_then_share(lambda: step.units(ctx), tag)
    n = len(units)
    pending = comm.allreduce_sum(sum(not ctx.unit_finished(i, units[i]) for i in ctx.my_items(n)))
    done_here: list[int] = []
    if pending:
        try:
            step.prepare(ctx, units)
        except StepError:
            raise
        except Exception as e:  # noqa: BLE001 - may be one rank inside a collective: end the job
            comm.fail(f"{tag}{type(e).__name__}: {e}".replace("\n", " "), code=1)

        def work() -> None:
            todo = [i for i in ctx.my_items(n) if not ctx.unit_finished(i, units[i])]
            for i, res in _results(ctx, todo, units):
                _write_unit(ctx, i, units[i], res)
                done_here.append(i)

        ctx.agree(work, tag)
    ranks = comm.allgather({"rank": comm.rank, "world_size": comm.size, "host": socket.gethostname(),
                            "pid": os.getpid(), "units": sorted(done_here)})
    ctx.root_then_share(lambda: _finish(ctx, n, ranks), tag)
    return Funnel.read(out / FUNNEL_FILE)


def _finish(ctx: StepContext, n: int, ranks: list[dict]) -> None:
    """Rank 0: merge the unit markers, check the accounting, let an artefact step write its outputs
    (``finalize``), then funnel, stats, ranks and the manifest (last: the step is complete)."""
    step, out = ctx.step, ctx.out
    funnel = Funnel(step.name)
    entries, drop_entries, parts, stats, represents = [], [], [], {}, 0
    for i in range(n):
        m = unit_marker(ctx.work, i)
        if not m.is_file():
            raise StepError(f"{step.name}: unit {i} has no completion marker after every rank finished")
        part = json.loads(m.read_text())
        entries.append(part["entry"])
        drop_entries.append(part["dropped_entry"])
        parts.append(part.get("part"))
        funnel.merge(part["funnel"])
        merge_stats(stats, part["stats"])
        represents += part["represents"]
    try:
        funnel.check()
    except FunnelError as e:
        raise StepError(f"{step.name}: funnel does not balance: {e}") from None
    n_in, n_kept = funnel.total("in")[0], funnel.total("kept")[0]
    written = sum(e["records"] for e in entries if e is not None)
    if n_kept != represents or not ctx.kind.holds(written, n_kept):
        raise StepError(f"{step.name}: accounting: funnel keeps {n_kept} records but the shards hold {written} "
                        f"(standing for {represents})")
    expected = step.input_records()
    if expected is not None and n_in != expected:
        raise StepError(f"{step.name}: accounting: {n_in} records in but the input {step.input_dir or 'manifests'} "
                        f"{'holds' if step.input_dir else 'say'} {expected}: records were lost")
    faults.point(f"finish.before_finalize:{step.name}")
    held = ctx.kind.finalize(ctx, parts, funnel)
    faults.point(f"finish.finalized:{step.name}")
    if held is not None and held != n_kept:
        raise StepError(f"{step.name}: accounting: funnel keeps {n_kept} records but the output holds {held}")
    stats.update(step.summary_stats())
    remove_temp_files(out)
    if ctx.kind.dropped_always or any(e is not None for e in drop_entries):
        write_manifest(out / "dropped", [e for e in drop_entries if e is not None], stage=step.name, kind="dropped")
    funnel.write(out / FUNNEL_FILE)
    atomic_write_json(out / STATS_FILE, stats)
    atomic_write_json(out / RANKS_FILE, {"world_size": len(ranks), "ranks": ranks})
    fp = json.loads((out / STEP_FILE).read_text())["fingerprint"]
    faults.point(f"finish.before_manifest:{step.name}")
    ctx.kind.write_manifest(ctx, entries, fp, n_kept)  # last: the step is complete
    faults.point(f"finish.manifest_written:{step.name}")
    step.cleanup(ctx)


def nbytes_of(rec: CodeRecord) -> int:
    """Bytes a record counts for in a funnel (a record set aside unread keeps its size in meta['bytes'])."""
    if not rec.content and isinstance(rec.meta.get("bytes"), int):
        return rec.meta["bytes"]
    return len(rec.content.encode("utf-8", "surrogatepass"))


class RecordStep(Step):
    """A step that looks at one record at a time over a records dataset: one unit per input shard.

    Override ``map(rec) -> (record or None, reason, details)``; ``None`` sets the record aside under
    ``reason``. ``stats_of(rec)`` and ``dropped_stats(reason, details)`` (optional) add numbers to
    stats.json for each kept and each set-aside record.
    """

    def map(self, rec: CodeRecord) -> tuple[CodeRecord | None, str | None, dict]:
        raise NotImplementedError

    def stats_of(self, rec: CodeRecord) -> dict:
        return {}

    def dropped_stats(self, reason: str, details: dict) -> dict:
        return {}

    def describe(self, unit: Any) -> str:
        return str(Path(self.input_dir) / shard_name(unit["shard"])) if self.input_dir else super().describe(unit)

    def process(self, ctx: StepContext, index: int, unit: Any) -> UnitResult:
        kept, dropped, funnel, stats = [], [], Funnel(self.name), {}
        for rec in ctx.read_input(unit["shard"]):
            if isinstance(rec, BadRecord):
                count_bad(funnel, dropped, rec)
                continue
            n = nbytes_of(rec)
            funnel.seen(rec.language, n)
            new, reason, details = self.map(rec)
            if new is None:
                set_aside(funnel, dropped, rec, reason or "dropped", details, nbytes=n)
                merge_stats(stats, self.dropped_stats(reason or "dropped", details))
            else:
                funnel.kept(new.language, nbytes_of(new))
                kept.append(new)
                merge_stats(stats, self.stats_of(new))
        return UnitResult(kept, dropped, funnel, stats)


def print_funnel(funnel: Funnel, comm: Comm | None = None, file=None) -> None:
    if (comm or get_comm()).is_root:
        print(funnel.table(), file=file or sys.stderr, flush=True)


# Types re-exported for steps
__all__ = ["ArtefactStep", "BadRecord", "CodeRecord", "Dropped", "RecordError", "RecordStep", "StaleOutputError",
           "Step", "StepContext", "nbytes_of",
           "StepError", "UnitResult", "content_hash", "count_bad", "fingerprint", "is_complete", "merge_stats",
           "run_step", "set_aside", "unit_marker"]
