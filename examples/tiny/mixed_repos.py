"""Multi-language repositories for the tiny grouping ablation (Table 3 of the paper).

The tiny example's stand-in repositories hold one language each (Python packages, and
one folder of C headers), so grouping by repository alone and grouping by language then
repository would give the same documents. Real repositories mix languages (a Python
package with its C extension headers, say): this script spreads the C files over the
Python repositories (by a hash of each file's id, so always the same way), leaving
every file's content unchanged, and writes a new files dataset for
``python -m megatron_snow ablation kind=grouping corpus=OUT``.

    python examples/tiny/mixed_repos.py --input examples/tiny/work/phase1/06_pii \
        --output examples/tiny/work/ablation_mixed_repos
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import xxhash

from megatron_snow import records


def mix_repos(inp: Path, out: Path) -> dict[str, int]:
    files = list(records.iter_records(inp))
    hosts = sorted({r.repo for r in files if r.language == "python" and r.repo})
    if not hosts:
        raise SystemExit(f"{inp}: no Python repository to host the other languages' files")
    moved, mixed = 0, []
    for r in files:
        if r.language != "python":
            repo = hosts[xxhash.xxh64_intdigest(r.id.encode()) % len(hosts)]
            r = dataclasses.replace(r, repo=repo)
            moved += 1
        mixed.append(r)
    out.mkdir(parents=True, exist_ok=True)
    entry = records.write_shard(out / records.shard_name(0), mixed)
    records.write_manifest(out, [entry], kind="mixed-language-repos", source=str(inp), moved_files=moved)
    return {"files": len(mixed), "moved": moved, "repositories": len(hosts)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, type=Path, help="a phase-1 files dataset (e.g. 06_pii)")
    ap.add_argument("--output", required=True, type=Path)
    a = ap.parse_args()
    print(mix_repos(a.input, a.output))
