#!/usr/bin/env python
"""Phase 1 on real code, per stage and end to end, in MB of input per CPU-second (= per core), beside
what a user would pick instead, in one run; and a byte-for-byte comparison of two phase-1 outputs.

  python bench/bench_phase1.py --mb 40                    # stages, whole step, references
  python bench/bench_phase1.py --mb 40 --ranks 2 --no-reference   # the same stages on 2 MPI ranks
  python bench/bench_phase1.py --mb 20 40 80 160 --no-reference   # a series: cost per MB as the corpus grows
  python bench/bench_phase1.py --compare OUT_A OUT_B      # kept/dropped records and funnels identical?

Input: the code files (.py .c .h .cpp .hpp .js .sh ...) of the installed Python packages and of
/usr/include, as JSONL shards of 4 MB (repo = top-level package or header folder), files in a fixed
hash order: a smaller corpus is a prefix of a larger one. Real code, not generated text.

Stages: each runs as its own ``python -m megatron_snow phase1 --stages S`` process (under ``mpiexec
-n R`` with --ranks R), as a user runs it; CPU seconds and peak RSS come from ``os.wait4`` on that
process (CPU: all ranks together; peak RSS: the largest single process, i.e. per rank). The stage's
rate is its input's MB over its CPU seconds, start-up included; "whole step" is the raw corpus MB
over the sum of the stages' CPU seconds (seven start-ups), and "one process" the same step run as a user
runs it, one ``python -m megatron_snow phase1`` (its output is checked equal to the staged run's).
The decontamination index is built first, once, into the bench's own cache (WORK/decontam-index) and
measured on its own line: a machine's first phase-1 run builds it, every later run loads it.

References, in this process on the first --ref-mb of the corpus (CPU time, one thread):
  JSONL read      ours records.read_shard_checked      vs datatrove JsonlReader (gzip)
  JSONL write     ours records.encode_shard (gzip 1,    vs datatrove JsonlWriter (gzip)
                  ISA-L: phase 1's default; new records)
  filter          ours filters.filter_reason           (datatrove 0.10.1's filters are web-text rules:
                                                        C4, Gopher, FineWeb, language, URL; none is a code rule)
  exact dedup     ours xxh3 key + clusters.duplicates  vs datatrove ExactDedupSignature -> ExactFindDedups
                                                        -> ExactDedupFilter
  near dedup      ours clusters.near_duplicates        vs datatrove MinhashDedup* (4 stages, 42 band tasks)
                                                        and datasketch MinHash + MinHashLSH
  PII             ours pii.redact                      vs datatrove PIIFormatter (emails and IPs only)
bench/bench_near_dedup.py compares near-dedup quality (recall, false merges) at equal settings.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import run_info  # noqa: E402

from megatron_snow.phase1 import clusters  # noqa: E402
from megatron_snow.phase1.pipeline import STAGE_DIRS, STAGES  # noqa: E402

NON_ALNUM = re.compile(r"[^A-Za-z_0-9]")


CODE_EXTENSIONS = (".py", ".c", ".h", ".cc", ".cpp", ".hpp", ".js", ".sh", ".go", ".rs", ".java")


def code_files() -> list[tuple[str, str, Path]]:
    """(repo, path in the repo, file) of every code file of the installed packages and the system headers."""
    roots = [Path(sysconfig.get_paths()["purelib"]), Path("/usr/include")]
    out = []
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.suffix in CODE_EXTENSIONS and not p.is_symlink():
                    rel = p.relative_to(root)
                    repo = f"{root.name}/{rel.parts[0]}" if len(rel.parts) > 1 else root.name
                    out.append((repo, str(Path(*rel.parts[1:])) if len(rel.parts) > 1 else fn, p))
    return out


def make_corpus(out: Path, mb: float, files_per_shard_mb: float = 4.0) -> dict:
    """JSONL shards of ``mb`` MB of real code (repo, path, content), files in a fixed hash order, so a
    smaller corpus is a prefix of a larger one. Returns {files, bytes, shards}; reuses a finished one."""
    import json

    import xxhash

    done = out / "corpus.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("mb") == mb:
            return info
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.jsonl"):
        old.unlink()
    files = sorted(code_files(), key=lambda f: xxhash.xxh64_intdigest(str(f[2]).encode()))
    total, shard, n, fh, shard_bytes = 0, 0, 0, None, 0
    for repo, path, p in files:
        if total >= mb * 1e6:
            break
        try:
            data = p.read_bytes()
        except OSError:
            continue
        if len(data) > 2_000_000:
            continue
        if fh is None or shard_bytes >= files_per_shard_mb * 1e6:
            if fh:
                fh.close()
            fh = open(out / f"part-{shard:05d}.jsonl", "w", encoding="utf-8")
            shard, shard_bytes = shard + 1, 0
        text = data.decode("utf-8", "replace")  # a few headers are Latin-1: kept as text, as a crawl would
        fh.write(json.dumps({"repo": repo, "path": path, "content": text}) + "\n")
        total += len(data)
        shard_bytes += len(data)
        n += 1
    if fh:
        fh.close()
    info = {"mb": mb, "files": n, "bytes": total, "shards": shard}
    done.write_text(json.dumps(info))
    return info


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(CPU seconds of the process tree, wall seconds, peak RSS in MiB of its largest process)."""
    t0 = time.perf_counter()
    # cwd: ``python -m`` imports from the current directory first; this tree's code is what is measured
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {err.decode(errors='replace')[-2000:]}")
    return ru.ru_utime + ru.ru_stime, time.perf_counter() - t0, ru.ru_maxrss // 1024


def write_config(path: Path, corpus: Path) -> None:
    path.write_text(f"""progress: false
ingest:
  sources:
    - {{kind: jsonl, path: {corpus}, name: bench}}
decontaminate: {{cache_dir: {index_cache(corpus.parent)}}}
grouping: {{num_shards: 8}}
""")


def index_cache(work: Path) -> Path:
    """The bench's own decontamination index cache: built once per bench run (measured), never a user's."""
    return work / "decontam-index"


def build_index(work: Path) -> dict:
    """The decontamination index built from the benchmark files into an empty cache, as the first phase-1 run
    on a machine does (every later run, any corpus size, loads it): measured once, not per MB."""
    shutil.rmtree(index_cache(work), ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = ("from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator; "
            f"d = Decontaminator(DecontamConfig(cache_dir={str(index_cache(work))!r})); "
            "assert d.loaded_from == 'built'")
    cpu, wall, rss = run_measured([sys.executable, "-c", code], env)
    return {"cpu_s": cpu, "wall_s": wall, "peak_rss_mib": rss}


def content_mb(stage_dir: Path) -> float:
    return json.loads((stage_dir / "manifest.json").read_text())["content_bytes"] / 1e6


def run_stages(corpus: Path, out: Path, ranks: int, corpus_mb: float) -> list[dict]:
    """Every phase-1 stage as its own process (``mpiexec -n ranks`` when ranks > 1), measured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cfg = out.parent / f"{out.name}.yaml"
    write_config(cfg, corpus)
    shutil.rmtree(out, ignore_errors=True)
    launch = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    if launch and shutil.which("mpiexec") is None:
        sys.exit("--ranks > 1 needs mpiexec")
    rows = []
    cpu, _, rss = run_measured([sys.executable, "-c", "import megatron_snow.phase1.pipeline"], env)
    rows.append({"stage": "start-up (import)", "mb": 0.0, "cpu_s": cpu, "peak_rss_mib": rss})
    prev_mb = corpus_mb
    for stage in STAGES:
        cmd = launch + [sys.executable, "-m", "megatron_snow", "phase1", "--config", str(cfg), "--stages", stage,
                        f"output_dir={out}"]
        cpu, wall, rss = run_measured(cmd, env)
        rows.append({"stage": stage, "mb": prev_mb, "cpu_s": cpu, "wall_s": wall, "peak_rss_mib": rss})
        prev_mb = content_mb(out / STAGE_DIRS[stage])
    return rows


def held_in_full(out: Path) -> dict:
    """What every rank of near dedup holds in full: the candidate edge list (16 B an edge, all-gathered) and
    the union-find over the nodes on it, rebuilt here from the stage's saved band keys."""
    work = out / STAGE_DIRS["near_dedup"] / "_work"
    hashes, keys = [], []
    for f in sorted(work.glob("keys-*.npy")):
        i = int(f.stem.split("-")[1])
        k = np.load(f)
        valid = (k != 0).all(axis=1) if k.ndim == 2 else np.ones(0, bool)
        hashes.append(k[valid])
        keys.append(clusters.global_keys(i, len(k))[valid])
    docs = sum(len(k) for k in keys)
    if not docs:
        return {"documents": 0, "edges": 0, "edge_bytes": 0, "nodes": 0}
    bands = hashes[0].shape[1]
    entries = np.stack([np.concatenate(hashes).reshape(-1), np.repeat(np.concatenate(keys), bands)], axis=1)
    edges = clusters.bucket_edges(entries)
    edges = np.unique(edges, axis=0) if len(edges) else edges
    nodes = len(np.unique(edges)) if len(edges) else 0
    payload = sum(f.stat().st_size for f in work.glob("sig-*.npy"))
    return {"documents": docs, "edges": int(len(edges)), "edge_bytes": int(edges.nbytes), "nodes": int(nodes),
            "payload_bytes": int(payload)}


# -- references, in process ---------------------------------------------------------------------

def cpu(fn):
    t0 = time.process_time()  # CPU time: robust to other load on a shared machine
    out = fn()
    return out, time.process_time() - t0


def sample_records(ingest_dir: Path, ref_mb: float):
    from megatron_snow.records import CodeRecord, list_shards, read_shard

    recs: list[CodeRecord] = []
    size = 0
    shards = []
    for s in list_shards(ingest_dir):
        shards.append(s)
        for r in read_shard(s):
            recs.append(r)
            size += len(r.content.encode())
        if size >= ref_mb * 1e6:
            break
    return recs, shards, size / 1e6


def references(out: Path, ref_mb: float, skip: set[str]) -> list[tuple]:
    """(task, ours MB/s, reference name, reference MB/s or None, note) on the first ref_mb of ingest's output."""
    from megatron_snow.phase1.filters import FilterThresholds, filter_reason
    from megatron_snow.phase1.minhash import NearDedupConfig
    from megatron_snow.phase1.pii import PIIConfig, redact
    from megatron_snow.phase1.pipeline import exact_keys
    from megatron_snow.records import encode_shard, read_shard_checked

    recs, shards, mb = sample_records(out / STAGE_DIRS["ingest"], ref_mb)
    docs = [r.content for r in recs]
    shard_mb = sum(content_mb_of_shard(s) for s in shards)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_phase1_"))
    try:
        dt_ok = "datatrove" not in skip
        if dt_ok:
            try:
                import orjson  # noqa: F401 - datatrove's JSONL reader and writer need it
                from datatrove.utils.logging import logger
                logger.remove()  # datatrove logs every step at INFO
            except ImportError as e:
                print(f"datatrove references left out: {e} (pip install datatrove orjson)")
                dt_ok = False
        _, ours = cpu(lambda: [r for s in shards for r in read_shard_checked(s)])
        ref = None
        if dt_ok:
            from datatrove.pipeline.readers import JsonlReader
            dt_dir = tmp / "dt_in"
            dt_dir.mkdir()
            for s in shards:
                shutil.copy(s, dt_dir / s.name)
            reader = JsonlReader(str(dt_dir), text_key="content", id_key="id", glob_pattern="*.jsonl.gz")
            _, ref = cpu(lambda: list(reader.run()))
        rows.append(("JSONL read (gzip)", shard_mb / ours, "datatrove JsonlReader", shard_mb / ref if ref else None))
        fresh = [r.to_dict() for r in recs]  # encoded, not written back as read: what a writer of new records pays
        _, ours = cpu(lambda: encode_shard(fresh, 1))
        ref = None
        if dt_ok:
            from datatrove.data import Document
            from datatrove.pipeline.writers import JsonlWriter

            dt_docs = [Document(text=r.content, id=r.id, metadata={"repo": r.repo, "path": r.path,
                                                                   "language": r.language}) for r in recs]

            def dt_write():
                with JsonlWriter(str(tmp / "dt_out"), compression="gzip") as w:
                    for d in dt_docs:
                        w.write(d)
            _, ref = cpu(dt_write)
        rows.append(("JSONL write (gzip; ours: level 1)", mb / ours, "datatrove JsonlWriter",
                     mb / ref if ref else None))
        t = FilterThresholds()
        _, ours = cpu(lambda: [filter_reason(r.content, r.path, t) for r in recs])
        rows.append(("filter (StarCoder rules)", mb / ours, "none for code in datatrove", None))
        _, ours = cpu(lambda: clusters.duplicates(_comm(), [exact_keys(recs)[0]], [clusters.global_keys(0, len(recs))]))
        ref = None
        if dt_ok:
            ref = datatrove_exact_dedup(docs, tmp / "dt_exact")
        rows.append(("exact dedup (hash, clusters)", mb / ours, "datatrove ExactDedup* (3 stages)",
                     mb / ref if ref else None))
        cfg = NearDedupConfig()
        _, ours = cpu(lambda: clusters.near_duplicates(docs, cfg))
        ref = None
        if dt_ok:
            from bench_near_dedup import run_datatrove
            _, ref = cpu(lambda: run_datatrove(docs, cfg, tmp / "dt_minhash"))
        rows.append(("near dedup (MinHash LSH)", mb / ours, "datatrove MinhashDedup* (4 stages)",
                     mb / ref if ref else None))
        if "datasketch" not in skip:
            _, ref = cpu(lambda: ref_near_dedup(docs))
            rows.append(("near dedup (MinHash LSH)", mb / ours, "datasketch MinHashLSH", mb / ref))
        c = PIIConfig()
        _, ours = cpu(lambda: [redact(d, c) for d in docs])
        ref = None
        if dt_ok:
            from datatrove.pipeline.formatters import PIIFormatter
            f = PIIFormatter()
            _, ref = cpu(lambda: [f.format(d) for d in docs])
        rows.append(("PII redaction", mb / ours, "datatrove PIIFormatter", mb / ref if ref else None))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, mb


def _comm():
    from megatron_snow.dist import Comm
    return Comm(None)


def content_mb_of_shard(path: Path) -> float:
    from megatron_snow.records import read_shard
    return sum(len(r.content.encode()) for r in read_shard(path)) / 1e6


def datatrove_exact_dedup(docs: list[str], work: Path) -> float:
    """CPU seconds of datatrove's three exact-dedup stages over docs, one task each."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig, ExactDedupFilter, ExactDedupSignature, ExactFindDedups,
    )

    def content(doc: Document) -> bytes:  # its default hash (xxhash 4) takes bytes only
        return doc.text.encode("utf-8")

    conf = ExactDedupConfig(content_getter=content)
    t0 = time.process_time()
    sig = ExactDedupSignature(output_folder=str(work / "sigs"), config=conf, finder_workers=1)
    list(sig.run((Document(text=d, id=str(i)) for i, d in enumerate(docs)), rank=0, world_size=1) or [])
    ExactFindDedups(data_folder=str(work / "sigs"), output_folder=str(work / "dups"), config=conf).run()
    kept = list(ExactDedupFilter(data_folder=str(work / "dups"), config=conf).run(
        (Document(text=d, id=str(i)) for i, d in enumerate(docs)), rank=0, world_size=1))
    assert kept
    return time.process_time() - t0


def ref_minhashes(docs):
    from datasketch import MinHash

    out = []
    for d in docs:
        toks = [t for t in NON_ALNUM.split(d) if t]
        shingles = {" ".join(toks[i:i + 5]).encode() for i in range(max(1, len(toks) - 4))}
        m = MinHash(num_perm=256, seed=42)
        m.update_batch(list(shingles))
        out.append(m)
    return out


def ref_near_dedup(docs) -> set[int]:
    from datasketch import MinHashLSH

    mhs = ref_minhashes(docs)
    lsh = MinHashLSH(threshold=0.7, num_perm=256)
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    edges = np.array([(min(i, j), max(i, j)) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i],
                     dtype=np.uint64).reshape(-1, 2)
    roots = clusters.union_find_roots(np.unique(edges, axis=0) if len(edges) else edges)
    return {k for k, r in roots.items() if k != r}


# -- comparing two outputs ----------------------------------------------------------------------

def compare(a: Path, b: Path) -> int:
    """Kept and dropped records (every shard, decompressed) and every funnel/stats file, byte for byte."""
    diffs = 0
    for stage in STAGES:
        da, db = a / STAGE_DIRS[stage], b / STAGE_DIRS[stage]
        if not da.is_dir() and not db.is_dir():
            continue
        names = sorted({p.relative_to(da).as_posix() for p in da.rglob("part-*.jsonl.gz")}
                       | {p.relative_to(db).as_posix() for p in db.rglob("part-*.jsonl.gz")}
                       | {"funnel.json", "stats.json"})
        n_rec, before = 0, diffs
        for name in names:
            pa, pb = da / name, db / name
            if not pa.is_file() or not pb.is_file():
                print(f"DIFF {stage}/{name}: only in {'A' if pa.is_file() else 'B'}")
                diffs += 1
                continue
            ra = gzip.decompress(pa.read_bytes()) if name.endswith(".gz") else pa.read_bytes()
            rb = gzip.decompress(pb.read_bytes()) if name.endswith(".gz") else pb.read_bytes()
            if ra != rb:
                print(f"DIFF {stage}/{name}")
                diffs += 1
            elif name.endswith(".gz"):
                n_rec += ra.count(b"\n")
        print(f"{stage:14s} {len(names):4d} files compared, {n_rec} records: "
              + ("identical" if diffs == before else f"{diffs - before} files differ"))
    fa, fb = (a / "funnel.json").read_bytes(), (b / "funnel.json").read_bytes()
    if fa != fb:
        print("DIFF funnel.json")
        diffs += 1
    print("IDENTICAL" if diffs == 0 else f"{diffs} DIFFERENCES")
    return 1 if diffs else 0


def run_whole(corpus: Path, out: Path, ranks: int) -> dict:
    """The whole step as a user runs it: one ``python -m megatron_snow phase1`` process (per rank), measured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cfg = out.parent / f"{out.name}.yaml"
    write_config(cfg, corpus)
    shutil.rmtree(out, ignore_errors=True)
    launch = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    cpu, wall, rss = run_measured(launch + [sys.executable, "-m", "megatron_snow", "phase1", "--config", str(cfg),
                                            f"output_dir={out}"], env)
    return {"cpu_s": cpu, "wall_s": wall, "peak_rss_mib": rss}


def measure(mb_wanted: float, ranks: int, work: Path, out_dir: str | None,
            whole: bool = True) -> tuple[dict, Path]:
    """One corpus size on one rank count: every stage measured and printed, then (``whole``) the step in one
    process, whose output must equal the staged run's; (result, phase-1 output folder)."""
    corpus = work / f"corpus-{mb_wanted:g}mb"
    info = make_corpus(corpus, mb_wanted)
    mb = info["bytes"] / 1e6
    print(f"corpus: {info['files']} files, {mb:.1f} MB of real code in {info['shards']} JSONL shards ({corpus})")
    out = Path(out_dir).resolve() if out_dir else work / f"out-{mb_wanted:g}mb-{ranks}r"
    rows = run_stages(corpus, out, ranks, mb)
    print(f"\nphase 1, {ranks} rank(s), each stage its own process (CPU s of all ranks; RSS: largest rank)")
    print(f"{'stage':18s} {'in MB':>7s} {'CPU s':>7s} {'MB/s/core':>9s} {'peak RSS MiB':>12s}")
    for r in rows:
        rate = f"{r['mb'] / r['cpu_s']:9.2f}" if r["mb"] else f"{'-':>9s}"
        print(f"{r['stage']:18s} {r['mb']:7.1f} {r['cpu_s']:7.2f} {rate} {r['peak_rss_mib']:12d}")
    total = sum(r["cpu_s"] for r in rows if r["stage"] in STAGES)
    dec = next(r["cpu_s"] for r in rows if r["stage"] == "decontaminate")
    print(f"{'whole step':18s} {mb:7.1f} {total:7.2f} {mb / total:9.2f} "
          f"{max(r['peak_rss_mib'] for r in rows):12d}   (decontaminate: {dec / total:.0%} of the CPU;"
          f" without it {mb / (total - dec):.2f} MB/s)")
    print(f"CPU s per MB: {total / mb:.3f}")
    held = held_in_full(out)
    print(f"near dedup, held by every rank: {held['edges']} candidate edges ({held['edge_bytes'] / 2**20:.2f} MiB)"
          f" over {held['nodes']} of {held['documents']} documents; on disk: {held['payload_bytes'] / 1e6:.1f} MB"
          " of shingle sets for the exact check")
    result = {"corpus": info, "ranks": ranks, "stages": rows, "whole_cpu_s": total, "mb": mb, "near_dedup": held}
    if whole:
        one = run_whole(corpus, out.with_name(out.name + "-whole"), ranks)
        print(f"\nwhole step in one process ({ranks} rank(s)): {one['cpu_s']:.2f} CPU s, "
              f"{mb / one['cpu_s']:.2f} MB/s/core, peak RSS {one['peak_rss_mib']} MiB; output vs the staged run:")
        one["same_output"] = compare(out, out.with_name(out.name + "-whole")) == 0
        if not one["same_output"]:
            sys.exit("the one-process run's output differs from the staged run's")
        result["whole_one_process"] = one
    return result, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, nargs="+", default=[40.0],
                    help="MB of real code in the corpus (>= 40 for the claims); several sizes make a series "
                         "(linearity: --mb 20 40 80 160)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1],
                    help="MPI ranks per stage (mpiexec -n); several make a series (memory per rank: --ranks 1 2 4)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_phase1"),
                    help="corpus and outputs go here (the corpus is reused)")
    ap.add_argument("--ref-mb", type=float, default=8.0, help="MB of the corpus the in-process references see")
    ap.add_argument("--no-reference", action="store_true", help="no in-process references")
    ap.add_argument("--no-whole", action="store_true",
                    help="do not also run the whole step in one process (it doubles the bench's time)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["datatrove", "datasketch"])
    ap.add_argument("--out", help="phase-1 output folder of a single run (default: WORK/out-MBmb-Rr; replaced)")
    ap.add_argument("--json", help="also write the numbers here (a series: {'runs': [...]})")
    ap.add_argument("--compare", nargs=2, metavar=("OUT_A", "OUT_B"), help="compare two phase-1 outputs and exit")
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(Path(args.compare[0]), Path(args.compare[1])))
    series = [(mb, ranks) for mb in args.mb for ranks in args.ranks]
    if args.out and len(series) > 1:
        ap.error("--out names the output of a single run; a series writes WORK/out-MBmb-Rr")
    load_start = os.getloadavg()[0]
    work = Path(args.work).resolve()  # the stage processes run in the repository
    work.mkdir(parents=True, exist_ok=True)
    index = build_index(work)
    print(f"decontamination index, built once (cached; every run after loads it): {index['cpu_s']:.2f} CPU s, "
          f"peak RSS {index['peak_rss_mib']} MiB")
    results = []
    for i, (mb, ranks) in enumerate(series):
        if len(series) > 1:
            print(f"\n=== {mb:g} MB, {ranks} rank(s) ({i + 1} of {len(series)}) ===")
        result, out = measure(mb, ranks, work, args.out, whole=not args.no_whole)
        if i == 0 and not args.no_reference:
            refs, ref_mb = references(out, args.ref_mb, set(args.skip))
            print(f"\nbeside the usual alternatives, in this process, on {ref_mb:.1f} MB"
                  " (MB/s per core; ratio = ours/theirs)")
            print(f"{'task':30s} {'ours':>7s}  {'reference':36s} {'theirs':>7s} {'ratio':>7s}")
            for task, o, name, r in refs:
                print(f"{task:30s} {o:7.2f}  {name:36s} "
                      + (f"{r:7.2f} {o / r:6.2f}x" if r else f"{'-':>7s} {'-':>7s}"))
            result["references"] = [dict(zip(("task", "ours", "reference", "theirs"), r)) for r in refs]
        results.append(result)
    if len(series) > 1:
        per_mb = ", ".join(f"{r['mb']:.0f} MB x {r['ranks']}: {r['whole_cpu_s'] / r['mb']:.3f}" for r in results)
        print(f"\nCPU s per MB: {per_mb}")
    if args.json:  # docs/results/phase1_*.json are these files: tests/test_claims.py rebuilds docs/scale.md from them
        result = results[0] if len(results) == 1 else {"runs": results}
        result["decontam_index_build"] = index
        result["run"] = run_info(load_start)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
