"""Download the full benchmark sets into the default benchmark directory (online).

``python -m megatron_snow fetch-benchmarks [--out DIR] [--only a,b] [--mirror DIR]``

The package ships copies of the sets that the tiny example and the tests need
(``megatron_snow/benchmark_data``); this command fetches every set that
decontamination, alignment and evaluation know about, including the ones too
large or not redistributable to ship (APPS, DS-1000, BigCodeBench-Hard). Files
from Git repositories are pinned to a commit and checked against the sha256 of
their decompressed content; sets on the Hugging Face hub are read with
``datasets`` / ``huggingface_hub`` at a named split. Every file lands as
``OUT/<stem>.jsonl.gz`` (the layout ``megatron_snow.benchmarks`` reads), with a
``sources.json`` saying where each came from.

``--mirror DIR`` reads every source from a local directory instead of the
network (the file's base name for URL sources, ``<stem>.jsonl`` for hub
sources): for air-gapped clusters, and how the tests exercise this code.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from megatron_snow.benchmarks import default_download_dir
from megatron_snow.config import Config, setting


@dataclass(frozen=True)
class Source:
    stem: str
    kind: str  # "url": a pinned file; "hub": datasets.load_dataset; "hub_file": one file of a hub dataset repo
    where: str  # URL, or hub dataset id
    sha256: str = ""  # of the decompressed content (url sources)
    config: str | None = None
    splits: tuple[str, ...] = ()  # hub: splits concatenated in this order
    filename: str = ""  # hub_file: path inside the dataset repo
    licence: str = ""


_GH = "https://raw.githubusercontent.com"
_EVO = f"{_GH}/evo-eval/evoeval_release/e676c55b2464e9bd8ea7d5ef703dacd230d95c5f"
# EvoEval v0.1.0 categories (five main ones, then verbose and concise) -> sha256 of the decompressed file
_EVO_SHA256 = {
    "difficult": "e725912ed7b5f1756142ab132365c0220681301ea4254f51f4350c4dd354bd73",
    "creative": "abdda0f006b988d03e724525fec24b52f181ec8a26ff8b4b77ce4c09a6e87f69",
    "subtle": "19e717d104064dd329d9a1e5f5765179c23adc01e181871a8c580dfc01b14ad6",
    "combine": "01d6d7ca20589f35f60f24855944d82ae5edc617f7e5611d91f3b7bc31e55413",
    "tool_use": "e33452b34ada9b7e5e49e5aa2b54ca6130c01d7cfe91a21d10584cb38756dab2",
    "verbose": "c9659fd42950a2d167b1b8a4fde8315512b1283ac0a260e78f0c36902adee295",
    "concise": "0857c2985a63aaf8460fadc4b43536f7d4e00d459053b7a198ca955505428f2e",
}

SOURCES: tuple[Source, ...] = (
    Source("humaneval", "url",
           f"{_GH}/openai/human-eval/6d43fb980f9fee3c892a914eda09951f772ad10d/data/HumanEval.jsonl.gz",
           "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2", licence="MIT"),
    Source("mbpp", "url", f"{_GH}/google-research/google-research/master/mbpp/mbpp.jsonl",
           "0b5e07b5b40fedd01c57b7c9177b79f8b2eebd72c304c928605d91a7237d2f33", licence="CC-BY-4.0"),
    Source("humanevalplus", "url",
           f"{_GH}/evalplus/humanevalplus_release/200defce9e3429d28ca215b6dd061c0f7f31c18b/HumanEvalPlus.jsonl.gz",
           "42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f", licence="Apache-2.0"),
    Source("mbppplus", "url",
           f"{_GH}/evalplus/mbppplus_release/dadf43da556a00f7bacd71cb154f2932757d9144/MbppPlus.jsonl.gz",
           "b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad", licence="Apache-2.0"),
    Source("bigcodebench", "url",
           f"{_GH}/bigcode-project/bigcodebench-annotation/a3b89850db670d7302571142b881e4f85eef18e3/hf_data/BigCodeBench.jsonl.gz",
           "33baf4f414eb34507f1a8fd55ef9bcd79c1f9b4c3e8e2544f023edac1b20afec", licence="Apache-2.0"),
    Source("bigcodebench_hard", "hub", "bigcode/bigcodebench-hard", splits=("v0.1.4",), licence="Apache-2.0"),
    *(Source(f"evoeval_{cat}", "url", f"{_EVO}/EvoEval_{cat}.jsonl.gz", sha, licence="Apache-2.0")
      for cat, sha in _EVO_SHA256.items()),
    Source("gsm8k_test", "url",
           f"{_GH}/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl",
           "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", licence="MIT"),
    # Not shipped: APPS's test split is large (with its test cases); DS-1000's authors ask that
    # the data not be re-uploaded.
    Source("apps_test", "hub_file", "codeparrot/apps", filename="test.jsonl", licence="MIT"),
    Source("ds1000", "hub", "xlangai/DS-1000", splits=("test",), licence="CC-BY-SA-4.0"),
)
BY_STEM = {s.stem: s for s in SOURCES}


class FetchError(RuntimeError):
    """A source that could not be fetched or did not match its pinned hash (one line)."""


def _decompressed(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _write_gz(path: Path, content: bytes) -> None:
    """Atomic, reproducible gzip (no name, no mtime in the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
            gz.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _records_jsonl(records) -> bytes:
    return "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def fetch_one(src: Source, mirror: Path | None = None, timeout: float = 120.0) -> tuple[bytes, str]:
    """The decompressed JSONL content of one source and where it came from."""
    if src.kind == "url":
        origin = str(mirror / Path(src.where).name) if mirror else src.where
        try:
            if mirror:
                raw = Path(origin).read_bytes()
            else:
                with urllib.request.urlopen(src.where, timeout=timeout) as r:
                    raw = r.read()
        except OSError as e:
            raise FetchError(f"{src.stem}: cannot read {origin}: {e}") from None
        content = _decompressed(raw)
        got = hashlib.sha256(content).hexdigest()
        if src.sha256 and got != src.sha256:
            raise FetchError(f"{src.stem}: {origin} has sha256 {got[:12]}..., expected {src.sha256[:12]}... "
                             "(a changed upstream file; not used)")
        return content, origin
    if mirror:
        local = mirror / f"{src.stem}.jsonl"
        if not local.is_file():
            raise FetchError(f"{src.stem}: {local} not found in the mirror")
        return local.read_bytes(), str(local)
    if src.kind == "hub_file":
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(src.where, src.filename, repo_type="dataset")
        return _decompressed(Path(path).read_bytes()), f"hf://datasets/{src.where}/{src.filename}"
    import datasets

    rows = []
    for split in src.splits:
        rows.extend(datasets.load_dataset(src.where, src.config, split=split))
    return _records_jsonl(rows), f"hf://datasets/{src.where}:{','.join(src.splits)}"


def fetch(out: Path, stems: list[str] | None = None, mirror: Path | None = None, force: bool = False,
          log=print) -> dict:
    """Fetch ``stems`` (default: all) into ``out``; already-present files are kept unless ``force``."""
    unknown = [s for s in stems or [] if s not in BY_STEM]
    if unknown:
        raise FetchError(f"unknown benchmark(s) {unknown}; known: {', '.join(BY_STEM)}")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "sources.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    failed = []
    for src in [BY_STEM[s] for s in stems] if stems else SOURCES:
        target = out / f"{src.stem}.jsonl.gz"
        if target.is_file() and not force and src.stem in manifest:
            log(f"  {src.stem:<20} present")
            continue
        try:
            content, origin = fetch_one(src, mirror)
        except FetchError as e:
            failed.append(str(e))
            log(f"  {src.stem:<20} FAILED: {e}")
            continue
        except Exception as e:  # network, hub, datasets: name the source, keep going with the others
            failed.append(f"{src.stem}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            log(f"  {src.stem:<20} FAILED: {failed[-1]}")
            continue
        _write_gz(target, content)
        n = content.count(b"\n") + (0 if content.endswith(b"\n") or not content else 1)
        manifest[src.stem] = {"source": origin, "records": n, "licence": src.licence,
                              "sha256_decompressed": hashlib.sha256(content).hexdigest()}
        log(f"  {src.stem:<20} {n:>6} records  <- {origin}")
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, manifest_path)
    return {"out": str(out), "fetched": sorted(manifest), "failed": failed}


@dataclass
class FetchConfig(Config):
    """Settings of ``fetch-benchmarks``."""

    out: str = setting("", help="target directory (empty: $MEGATRON_SNOW_BENCHMARKS, else the default download "
                                "directory that decontamination, alignment and evaluation read)")
    only: str = setting("", help=f"comma-separated subset of: {','.join(BY_STEM)} (empty: every set)")
    mirror: str = setting("", help="read sources from this local directory instead of the network")
    force: bool = setting(False, help="fetch again files already present")


def cli_run(cfg: FetchConfig, args, comm) -> None:
    """The ``fetch-benchmarks`` command: a set that fails is named, the others are still fetched (exit 1)."""
    from megatron_snow.stages.runner import StepError

    out = Path(cfg.out or os.environ.get("MEGATRON_SNOW_BENCHMARKS") or default_download_dir())
    stems = [s.strip() for s in cfg.only.split(",") if s.strip()] or None
    result = fetch(out, stems, Path(cfg.mirror) if cfg.mirror else None, cfg.force)
    print(f"fetch-benchmarks: {len(result['fetched'])} sets in {out}"
          + (f"; {len(result['failed'])} failed" if result["failed"] else ""))
    if result["failed"]:
        raise StepError(f"{len(result['failed'])} failed: {result['failed'][0]}", 1)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow fetch-benchmarks``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["fetch-benchmarks"].main(argv)


if __name__ == "__main__":
    sys.exit(main())
