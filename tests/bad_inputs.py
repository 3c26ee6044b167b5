"""A corpus of bad records and files, beside good ones, for every data step's "no input stops a job" tests.

``build_bad_corpus(root)`` writes three sources (a directory of repositories, JSONL files, Stack-style
parquet/arrow files) holding 30+ kinds of damage, and returns what a step must report: the good
records (all to be kept) and, per funnel reason, how many records ingest sets aside.
``write_bad_records_dataset(dir)`` writes a records dataset (our own shard format, with a manifest)
whose shards hold damaged lines, for steps that read records (tokenizer, build_index, annotate ...).

Every case is real bytes on disk; nothing is mocked.
"""
from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basalt cobalt dune ember "
         "fjord granite harbor iris jasper kestrel lagoon meadow nectar orchid pebble quartz raven saffron "
         "tundra umber velvet willow yarrow zephyr").split()


def good_python(seed: int) -> str:
    """A distinct, ordinary Python file (passes the filters; never a near duplicate of another seed)."""
    rng = random.Random(seed)
    lines = [f'"""Module {seed}: {" ".join(rng.sample(WORDS, 6))}."""', "", "import math", ""]
    for f in range(4):
        name = "_".join(rng.sample(WORDS, 2)) + f"_{seed}_{f}"
        args = rng.sample(WORDS, 3)
        lines += [f"def {name}({', '.join(args)}):",
                  f'    """Combine {args[0]} with {args[1]} ({" ".join(rng.sample(WORDS, 4))})."""',
                  f"    total = {args[0]} * {rng.randint(2, 99)} + {args[1]}",
                  f"    if total > {rng.randint(100, 999)}:",
                  f"        return math.sqrt(abs(total)) - {args[2]}",
                  f"    return total + {rng.randint(1, 50)}", ""]
    return "\n".join(lines)


def _deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


@dataclass
class BadCorpus:
    root: Path
    sources: list[dict]  # ingest.sources for the config
    good_ids: set[str] = field(default_factory=set)  # ids of the good records (all must be kept)
    expected: dict[str, int] = field(default_factory=dict)  # ingest reason -> records set aside
    kinds: list[str] = field(default_factory=list)  # one line per kind of damage written
    notes: dict[str, str] = field(default_factory=dict)

    def expect(self, reason: str, kind: str, n: int = 1) -> None:
        self.expected[reason] = self.expected.get(reason, 0) + n
        self.kinds.append(f"{reason}: {kind}")


def _long_path_dir(base: Path) -> Path | None:
    """A directory whose path is longer than PATH_MAX, made through directory file descriptors:
    ``os.walk`` cannot list it, even as root (a permission-denied directory can be read by root)."""
    fd = os.open(base, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250 chars > 4096
            name = "d" * 250
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        wfd = os.open("deep.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"x = 1\n")
        os.close(wfd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return base


def build_bad_corpus(root: str | Path, n_good_files: int = 12, n_good_lines: int = 12) -> BadCorpus:
    root = Path(root)
    repos, jsonl, stack = root / "repos", root / "jsonl", root / "stack"
    for d in (repos, jsonl, stack):
        d.mkdir(parents=True, exist_ok=True)
    c = BadCorpus(root, [
        {"kind": "directory", "path": str(repos), "name": "dir", "files_per_shard": 7},
        {"kind": "jsonl", "path": str(jsonl), "name": "jl"},
        {"kind": "stack", "path": str(stack), "name": "st"},
    ])
    seed = iter(range(1000, 100000))

    # -- a directory of repositories ----------------------------------------------------------
    good_repo = repos / "good_repo"
    good_repo.mkdir()
    for i in range(n_good_files):
        (good_repo / f"mod_{i}.py").write_text(good_python(next(seed)))
        c.good_ids.add(f"dir/good_repo/mod_{i}.py")
    (good_repo / "bom.py").write_bytes(b"\xef\xbb\xbf" + good_python(next(seed)).encode())  # a BOM: kept
    c.good_ids.add("dir/good_repo/bom.py")
    # a file name that is not UTF-8: kept, its name written with the byte escaped
    os.makedirs(os.path.join(os.fsencode(repos), b"odd_names"), exist_ok=True)
    with open(os.path.join(os.fsencode(repos), b"odd_names", b"caf\xe9.py"), "wb") as f:
        f.write(good_python(next(seed)).encode())
    c.good_ids.add("dir/odd_names/caf\\xe9.py")
    bad = repos / "bad_repo"
    bad.mkdir()
    (bad / "nul.py").write_bytes(b"x = 1\x00\x00\x01 binary\n")
    c.expect("binary", "a .py file with NUL bytes")
    (bad / "latin1.py").write_bytes("s = 'caf\xe9 cr\xe8me'\n".encode("latin-1"))
    c.expect("invalid_utf8", "a .py file in Latin-1")
    (bad / "broken.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ["x = 1"')
    c.expect("invalid_notebook", "a notebook cut off mid-JSON")
    (bad / "deep.ipynb").write_text(_deep_json(40_000))  # under max_read_bytes
    c.expect("invalid_notebook", "a notebook nested 40k deep")
    (bad / "nocells.ipynb").write_text('{"metadata": {}}')
    c.expect("invalid_notebook", "a notebook without cells")
    (bad / "big.py").write_text("# big\n" + "x = 1\n" * 40_000)  # 240 kB > ingest.max_read_bytes below
    c.expect("too_large_to_read", "a file over ingest.max_read_bytes")
    (bad / "notes.txt").write_text("plain text\n")
    c.expect("unsupported_language", "a .txt file")
    (bad / "dangling.py").symlink_to(bad / "does_not_exist.py")
    c.expect("unreadable", "a symlink to nothing")
    os.mkfifo(bad / "pipe.py")
    c.expect("unreadable", "a named pipe (reading it would block for ever)")
    (bad / "a_dir.py").mkdir()  # a directory named like a file is listed as a directory: never a record
    (bad / "a_dir.py" / "inner.py").write_text(good_python(next(seed)))
    c.good_ids.add("dir/bad_repo/a_dir.py/inner.py")
    (repos / "deep_repo").mkdir()
    if _long_path_dir(repos / "deep_repo") is not None:
        c.expect("unreadable_directory", "a directory whose path exceeds PATH_MAX")
    if os.geteuid() != 0:  # root reads every directory; others cannot read a mode-000 one
        locked = repos / "locked_repo"
        locked.mkdir()
        (locked / "a.py").write_text("x = 1\n")
        locked.chmod(0)
        c.expect("unreadable_directory", "a directory without read permission")
        c.notes["locked"] = str(locked)
    (repos / "empty_repo").mkdir()  # nothing to read: normal

    # -- JSONL files -----------------------------------------------------------------------------
    lines: list[bytes] = []
    for i in range(n_good_lines):
        lines.append(json.dumps({"id": f"jl-good-{i}", "content": good_python(next(seed)), "path": f"g{i}.py",
                                 "repo": "org/jsonl_repo", "language": "Python"}).encode())
        c.good_ids.add(f"jl-good-{i}")
    lines.append(json.dumps({"id": "jl-cpp", "content": "int twice(int x) { return 2 * x; }\n" * 3, "path": "t.h",
                             "repo": "org/cpp", "language": "C++"}).encode())
    c.good_ids.add("jl-cpp")  # a .h file labelled C++ by the dataset: kept as cpp
    lines.append(json.dumps({"id": 7, "content": good_python(next(seed)), "path": "num_id.py"}).encode())
    c.good_ids.add("7")  # a numeric id: kept, as text
    bad_lines = [
        (b'{"content": "x = 1", "path": "a.py"', "invalid_json", "a line cut off mid-object"),
        (b"[1, 2, 3]", "not_an_object", "a JSON array line"),
        (b'"just a string"', "not_an_object", "a JSON string line"),
        (json.dumps({"content": 12345, "path": "n.py"}).encode(), "wrong_field_type", "content an integer"),
        (json.dumps({"path": "nothing.py"}).encode(), "missing_content", "no content field"),
        (json.dumps({"content": "x = 1\n", "path": "l.py", "language": 42}).encode(), "wrong_field_type",
         "language an integer"),
        (json.dumps({"content": "x = 1\n", "path": ["a", "b.py"]}).encode(), "wrong_field_type", "path a list"),
        (json.dumps({"content": "x = 1\n", "path": "r.py", "repo": {"name": "x"}}).encode(), "wrong_field_type",
         "repo an object"),
        (json.dumps({"content": "x = 1\n", "path": "i.py", "id": [1, 2]}).encode(), "wrong_field_type",
         "id a list"),
        (b'{"content": "x = \xff\xfe", "path": "b.py"}', "invalid_utf8", "a line with bytes that are not UTF-8"),
        (b'{"content": "x = \\ud800", "path": "s.py"}', "invalid_utf8", "content with a lone surrogate"),
        (b'{"content": "x = 1", "path": "p\\udfff.py"}', "invalid_utf8", "path with a lone surrogate"),
        (json.dumps({"content": "x = 1\x00\n", "path": "z.py"}).encode(), "binary", "content with a NUL"),
        (_deep_json().encode(), "json_too_deep", "a line nested 100k deep"),
        (('{"content": ' + _deep_json(100_000) + "}").encode(), "json_too_deep", "content nested 100k deep"),
        (json.dumps({"content": "IDENTIFICATION DIVISION.\n", "path": "x.cob", "language": "COBOL"}).encode(),
         "unsupported_language", "a language outside the recipe"),
        (json.dumps({"content": "not json", "path": "n.ipynb", "language": "jupyter"}).encode(), "invalid_notebook",
         "a notebook record that is not JSON"),
        (json.dumps({"content": _deep_json(50_000), "path": "d.ipynb"}).encode(), "invalid_notebook",
         "a notebook record nested 50k deep"),
        (b"NaN", "not_an_object", "a bare NaN"),
    ]
    mixed = lines[: n_good_lines // 2] + [b for b, _, _ in bad_lines] + [b"", b"   "] + lines[n_good_lines // 2:]
    (jsonl / "mixed.jsonl").write_bytes(b"\n".join(mixed) + b"\n")
    for _, reason, kind in bad_lines:
        c.expect(reason, kind)
    (jsonl / "empty.jsonl").write_bytes(b"")  # a unit that keeps zero records
    (jsonl / "all_bad.jsonl").write_bytes(b"{oops\n[]\n")  # another one
    c.expect("invalid_json", "a file of bad lines only")
    c.expect("not_an_object", "a file of bad lines only")
    # a truncated .jsonl.gz: the lines before the cut are kept, the rest counted once
    trunc_lines = [json.dumps({"id": f"tr-{i}", "content": good_python(next(seed)), "path": f"t{i}.py"})
                   for i in range(60)]
    whole = gzip.compress(("\n".join(trunc_lines) + "\n").encode(), mtime=0)
    cut = whole[: len(whole) * 2 // 3]
    (jsonl / "truncated.jsonl.gz").write_bytes(cut)
    survivors = _readable_prefix_lines(cut)
    for i in range(survivors):
        c.good_ids.add(f"tr-{i}")
    c.expect("corrupt_gzip", "a .jsonl.gz cut at two thirds")
    c.notes["truncated_kept"] = str(survivors)
    (jsonl / "not_gzip.jsonl.gz").write_bytes(b"this is not gzip at all\n" * 3)
    c.expect("corrupt_gzip", "a .jsonl.gz that is not gzip")
    (jsonl / "garbage.jsonl").write_bytes(bytes(range(128, 256)) * 4)
    c.expect("invalid_utf8", "a .jsonl file of binary garbage (one line of bytes)")

    # -- Stack-style parquet / arrow ----------------------------------------------------------
    import pyarrow as pa
    import pyarrow.parquet as pq

    good_rows = [good_python(next(seed)) for _ in range(4)]
    pq.write_table(pa.table({"content": good_rows + [None],
                             "max_stars_repo_name": ["o/stack"] * 5,
                             "max_stars_repo_path": [f"s{i}.py" for i in range(5)],
                             "lang": ["Python"] * 5}), stack / "good.parquet")
    for i in range(4):
        c.good_ids.add(f"st/good.parquet#0:{i}")
    c.expect("missing_content", "a parquet row with content null")
    pq.write_table(pa.table({"content": [1, 2, 3], "max_stars_repo_path": ["a.py", "b.py", "c.py"]}),
                   stack / "int_content.parquet")
    c.expect("wrong_field_type", "a parquet content column of integers", 3)
    pq.write_table(pa.table({"text": ["x = 1\n"], "path": ["a.py"]}), stack / "no_content.parquet")
    c.expect("missing_content_column", "a parquet file without a content column")
    pq.write_table(pa.table({"content": ["x = 1\n"], "max_stars_repo_path": [7]}), stack / "int_path.parquet")
    c.expect("wrong_field_type", "a parquet path column of integers")
    (stack / "fake.parquet").write_bytes(b"PAR1 not really a parquet file")
    c.expect("unreadable_file", "a .parquet file that is not parquet")
    whole = (stack / "good.parquet").read_bytes()
    (stack / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    c.expect("unreadable_file", "a truncated .parquet file")
    (stack / "fake.arrow").write_bytes(b"not an arrow stream")
    c.expect("unreadable_file", "an .arrow file that is not arrow")
    return c


def _readable_prefix_lines(gz_bytes: bytes) -> int:
    """How many whole lines a reader gets out of a truncated gzip before the error."""
    import zlib

    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = b""
    try:
        for i in range(0, len(gz_bytes), 65536):
            data += d.decompress(gz_bytes[i:i + 65536])
    except zlib.error:
        pass
    return data.count(b"\n")


def config_for(corpus: BadCorpus, out: Path, benchmarks_dir: Path, num_shards: int = 3) -> dict:
    """A phase-1 config over the bad corpus (small max_read_bytes so the big file is set aside unread)."""
    return {"output_dir": str(out), "progress": False, "ingest": {"sources": corpus.sources,
                                                                    "max_read_bytes": 100_000},
            # one benchmark keeps it quick: this corpus tests bad input, not decontamination
            "decontaminate": {"benchmarks_dir": str(benchmarks_dir), "benchmarks": ["humaneval"]},
            "grouping": {"num_shards": num_shards}}


def write_bad_records_dataset(directory: str | Path, n_good: int = 20) -> dict:
    """A records dataset (``part-*.jsonl.gz`` + manifest) with damaged lines in its shards.

    Returns {"good_ids": set, "expected": {reason: records}, "records": manifest total}. The manifest
    counts every line a reader meets (so funnels balance); shard 2 is cut short, and its lost tail is
    counted from the manifest entry.
    """
    from megatron_snow.records import write_manifest

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    good = [{"id": f"rec-{i}", "content": good_python(5000 + i), "language": "python", "repo": "o/r",
             "path": f"r{i}.py", "source": "test", "license": None, "meta": {}} for i in range(n_good)]
    damaged = [
        (b'{"id": "x", "content": "y"', "invalid_json"),
        (json.dumps({"id": "n", "content": 5}).encode(), "wrong_field_type"),
        (json.dumps({"id": "m", "content": "x", "meta": [1]}).encode(), "wrong_field_type"),
        (json.dumps({"content": "no id"}).encode(), "wrong_field_type"),
        (b"[]", "not_an_object"),
        (b'{"id": "u", "content": "\xff"}', "invalid_utf8"),
        (_deep_json().encode(), "json_too_deep"),
    ]
    entries, expected = [], {}
    half = n_good // 2
    shard0 = [json.dumps(r).encode() for r in good[:half]] + [b for b, _ in damaged]
    for _, reason in damaged:
        expected[reason] = expected.get(reason, 0) + 1
    shard1 = [json.dumps(r).encode() for r in good[half:]]
    tail = [json.dumps({**good[0], "id": f"tail-{i}", "content": good_python(9000 + i)}).encode() for i in range(40)]
    for i, lines in enumerate((shard0, shard1)):
        raw = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
        (d / f"part-{i:05d}.jsonl.gz").write_bytes(raw)
        entries.append({"name": f"part-{i:05d}.jsonl.gz", "records": len(lines), "content_bytes": 0})
    raw = gzip.compress(b"\n".join(tail) + b"\n", mtime=0)
    cut = raw[: len(raw) // 2]
    (d / "part-00002.jsonl.gz").write_bytes(cut)
    survivors = _readable_prefix_lines(cut)
    entries.append({"name": "part-00002.jsonl.gz", "records": len(tail), "content_bytes": 0})
    expected["corrupt_gzip"] = len(tail) - survivors
    manifest = write_manifest(d, entries, stage="bad_inputs")
    good_ids = {r["id"] for r in good} | {f"tail-{i}" for i in range(survivors)}
    return {"good_ids": good_ids, "expected": expected, "records": manifest["records"]}


# -- phase 3 (synthesize): seeds that cannot be used, and answers a server can give ----------------------
# The scripted server (tests/synthesis/script_server.py) answers a seed by the CASE word of its snippet.
SERVER_CASES = {  # case -> the synthesize funnel reason of its seed (None: kept)
    "500": "request_failed", "400": "request_failed", "hang": "request_failed", "garbage": "request_failed",
    "badbytes": "request_failed", "cut": "request_failed", "nochoices": "request_failed", "empty": "no_code",
    "null": "no_code", "length": "truncated", "nul": "binary", "surrogate": "invalid_utf8",
    "wronglang": "wrong_language", "numbercontent": "request_failed", "badusage": None, "flaky": None, "huge": None,
}


def append_seed_cases(directory: str | Path) -> dict:
    """Append a shard of phase-3 seed cases to a dataset of ``write_bad_records_dataset`` and write the
    scores of every document (``directory/seed_scores``, the ``scores=`` of synthesize).

    Returns {"scores": dir, "expected": {reason: records} for this shard, "kept_seeds": seed ids whose
    synthetic file must be kept (with the good records of the dataset), "per_language": the
    "eligible": documents of this shard that pass every seed check (with the dataset's good records,
    seeds_per_language of their number makes exactly one document ``not_a_seed``), "kinds": [...]}.
    """
    from megatron_snow.records import read_manifest, write_manifest

    d = Path(directory)
    rows: list[bytes] = []
    scores: dict[str, object] = {}
    expected: dict[str, int] = {}
    kinds: list[str] = []
    kept: set[str] = set()
    eligible = [0]  # documents that pass every seed check (the top seeds_per_language of them are seeds)

    def add(rec: dict, score, reason: str | None, kind: str, raw: bytes | None = None, seed: bool = False) -> None:
        rows.append(raw if raw is not None else json.dumps(rec).encode())
        eligible[0] += seed
        if score is not None:
            scores[rec["id"]] = score
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
        else:
            kept.add(rec["id"])
        kinds.append(f"{reason or 'kept'}: {kind}")

    base = {"language": "python", "repo": "o/seeds", "path": "s.py", "source": "test", "license": None, "meta": {}}
    for case, reason in SERVER_CASES.items():
        add({**base, "id": f"case-{case}", "content": f"# CASE:{case} seed snippet\n"}, 0.8, reason,
            f"the server answers {case}", seed=True)
    add({**base, "id": "seed-blank", "content": "  \n\n\t\n"}, 0.8, "empty", "a seed of blank lines only")
    add({**base, "id": "seed-minified", "content": "var a=1;" * 10_000}, 0.8, "snippet_too_long",
        "a seed that is one 80 kB line (no snippet fits snippet_max_chars)")
    add({**base, "id": "seed-huge", "content": "".join(f"value_{i} = {i} * 2\n" for i in range(100_000))}, 0.8,
        None, "a 2 MB seed (its snippet is 1-15 of its lines)", seed=True)
    add({**base, "id": "seed-unscored", "content": "x = 1\n"}, None, "unscored", "a seed without a score")
    add({**base, "id": "seed-nan", "content": "x = 2\n"}, float("nan"), "unscored", "a NaN score")
    add({**base, "id": "seed-strscore", "content": "x = 3\n"}, "high", "unscored", "a score that is a string")
    add({**base, "id": "seed-cobol", "language": "cobol", "content": "DISPLAY 'HI'.\n"}, 0.8,
        "unsupported_language", "a language without a prompt")
    add({**base, "id": "seed-dup", "content": good_python(7001)}, 0.8, None, "an id used twice (first kept)",
        seed=True)
    add({**base, "id": "seed-dup", "content": good_python(7002)}, None, "duplicate_id",
        "an id used twice (the second)", seed=True)
    add({**base, "id": "seed-nul", "content": "x = 1\x00\n"}, 0.8, "binary", "a seed with a NUL",
        raw=json.dumps({**base, "id": "seed-nul", "content": "x = 1\x00\n"}).encode())
    add({**base, "id": "seed-surrogate", "content": "x"}, 0.8, "invalid_utf8", "a seed with a lone surrogate",
        raw=b'{"id": "seed-surrogate", "content": "s = \'\\ud800\'\\n", "language": "python", "meta": {}}')
    add({**base, "id": "seed-low", "content": good_python(7003)}, -1.0, "not_a_seed",
        "the lowest score, one more than seeds_per_language")
    manifest = read_manifest(d)
    name = f"part-{len(manifest['shards']):05d}.jsonl.gz"
    (d / name).write_bytes(gzip.compress(b"\n".join(rows) + b"\n", mtime=0))
    entries = manifest["shards"] + [{"name": name, "records": len(rows), "content_bytes": 0}]
    write_manifest(d, entries, stage="bad_inputs")
    # scores of every readable record of the dataset: the good ones high, the cases as above
    score_rows = [json.dumps({"id": i, "score": s}).encode() for i, s in scores.items()]
    for p in sorted(d.glob("part-0000[0-2].jsonl.gz")):
        for line in _readable_lines(p):
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str) and isinstance(rec.get("content"), str):
                score_rows.append(json.dumps({"id": rec["id"], "score": 0.9}).encode())
    sd = d / "seed_scores"
    sd.mkdir(exist_ok=True)
    (sd / "part-00000.jsonl.gz").write_bytes(gzip.compress(b"\n".join(score_rows) + b"\n", mtime=0))
    return {"scores": sd, "expected": expected, "kept_seeds": kept, "kinds": kinds, "eligible": eligible[0]}


def _readable_lines(path: Path) -> list[bytes]:
    """The whole lines a reader gets out of a (possibly truncated) .jsonl.gz."""
    import zlib

    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = d.decompress(path.read_bytes())
    except zlib.error:
        data = b""
    return [ln for ln in data.split(b"\n")[:data.count(b"\n")] if ln.strip()]
