"""The ``synthesize`` step: phase-3 synthetic code files from seed snippets through an OpenAI-compatible server.

Plan (rank 0, shared): the seeds (``seeds.py``: the top-scored phase-2
documents of each language, one snippet each) in a fixed order, cut into
units of ``seeds_per_unit``; unit i becomes output shard i.

Generation (every rank, before the units): each rank sends the requests of
its units (round robin) through the async client (``client.py``) and appends
each answer, as it arrives, to ``_work/generated/gen-NNNNN.jsonl`` of its unit.
A killed run re-run with the same command reads those logs and asks only for
seeds that have no answer yet: a finished generation is never requested
again (a request in flight at the kill is, since its answer was never kept).
A seed whose every attempt failed is logged with its error and counted, not
retried on resume (``retry_failed=true`` asks again). When the server itself is
gone (requests cannot connect and ``GET /models`` fails, see ``client.py``), the
step stops with one line (exit 1) without counting those seeds: the same
command, once a server answers again, resumes.

Accounting: the funnel's input is every record of the phase-2 dataset (checked
against its manifest). A record that is not a seed is counted in unit 0 by why
(``seeds.NOT_SEED_REASONS``: not a requested or supported language, unscored,
empty, no line fits ``snippet_max_chars``, an id already used, below the top
``seeds_per_language``); a damaged line (bad JSON, wrong field types, a cut
gzip, NUL or lone surrogates: ``binary`` / ``invalid_utf8``) is set aside as a
stand-in naming its shard and line. Each seed then ends in one of the reasons
below or kept.

Filtering (rank 0, in seed order, so the result does not depend on the
number of ranks, the completion order or a resume): extraction of the code
file from the answer, then each rejection counted in the funnel by reason:
``prompt_too_long`` (the server answered that the prompt does not fit its
model's context: shorten ``snippet_max_chars`` / ``snippet_max_lines`` or serve a
longer context), ``request_failed``, ``truncated`` (finish reason not ``stop``), ``binary`` / ``invalid_utf8`` (a NUL or
a lone surrogate in the answer), ``no_code``,
``wrong_language``, ``syntax_error``, ``contaminated`` (the phase-1
decontaminator), ``duplicate_of_seed`` / ``near_duplicate_of_seed`` (against
every seed document, exact and MinHash-LSH), ``duplicate`` /
``near_duplicate`` (among the outputs: the first in seed order is kept).
Rank 0 holds, for the near-dedup check, the seeds' MinHash signatures
(memory-mapped, num_perm x 4 bytes each) and the shingle set (or signature)
of each kept output.

Records carry the seed's id, score and language, the snippet's position,
the model, the API, the prompt template's name and hash, and token counts
in ``meta["synthesis"]``.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xxhash

from megatron_snow import faults
from megatron_snow.atomic import atomic_write_bytes, atomic_write_json
from megatron_snow.config import Config, ConfigError, setting, to_dict
from megatron_snow.funnel import Funnel
from megatron_snow.languages import EXTENSIONS, canonical_language
from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator
from megatron_snow.phase1.minhash import (
    NearDedupConfig, ShingleHasher, band_hashes, exact_jaccard, lsh_params, signature,
)
from megatron_snow.phase2.score_store import read_scores
from megatron_snow.records import BadRecord, encode_shard
from megatron_snow.stages import CodeRecord, Dropped, Step, StepContext, StepError, UnitResult, run_step, set_aside
from megatron_snow.synthesis.client import (
    Result, SamplingConfig, ServerConfig, ServerGone, resolve_model, run_requests,
)
from megatron_snow.synthesis.filters import extract_code, parser_name, parses, text_problem
from megatron_snow.synthesis.prompts import PROMPTS_DIR, load_template
from megatron_snow.synthesis.seeds import NOT_SEED_REASONS, Seed, plan_seeds, select_seeds

SEEDS_FILE = "seeds.jsonl.gz"
MODEL_FILE = "model.json"
GEN_DIR = "generated"
SEED_REJECTS = "seed_rejects.jsonl.gz"  # damaged phase-2 lines (stand-ins naming file and line), for unit 0
REASONS = ("prompt_too_long", "request_failed", "truncated", "binary", "invalid_utf8", "no_code", "wrong_language",
           "syntax_error", "contaminated", "duplicate_of_seed", "near_duplicate_of_seed", "duplicate", "near_duplicate")


@dataclass
class SynthesizeConfig(Config):
    """Settings of the ``synthesize`` step."""

    phase2: str = setting("", help="the phase-2 records dataset (select's output: records carry meta.annotator.score)")
    scores: str = setting("", help="optional: an annotate scores directory to rank by instead of meta.annotator")
    out: str = setting("", help="output dataset of synthetic code files")
    languages: list[str] = setting(help="languages to seed from (empty: all in phase2)", factory=list)
    seeds_per_language: int = setting(
        1000, help="top-scored documents per language used as seeds (when synthetic_tokens is 0)", range=">= 1")
    synthetic_tokens: int = setting(
        0, help="seeds from the phase-3 target instead (seeds.plan_seeds): synthetic_tokens / tokens_per_seed seeds, "
                "python_share of them Python, the other languages in their phase-2 proportions (by bytes); paper: "
                "about 2B synthetic tokens in the 5B-token phase 3; 0: seeds_per_language", range=">= 0")
    tokens_per_seed: float = setting(
        500.0, help="synthetic tokens one seed yields after the filters (measure: a pilot run)", range="> 0")
    python_share: float = setting(
        0.5, help="share of the seeds (so of the synthetic files) that are Python (paper: ~50%)", range="[0, 1]")
    python_languages: list[str] = setting(help="languages counted as Python", factory=lambda: ["python"])
    snippet_min_lines: int = setting(1, help="OSS-Instruct: 1-15 consecutive lines", range=">= 1")
    snippet_max_lines: int = setting(15, help="most lines of a snippet", range=">= 1")
    snippet_max_chars: int = setting(
        4000, help="a snippet is shortened to fit; a document without such a line is no seed", range=">= 1")
    random_seed: int = setting(0, help="snippet positions and per-request sampling seeds derive from it")
    prompt: str = setting("code_file", help="template name in megatron_snow/synthesis/prompts/, or a path to one")
    seeds_per_unit: int = setting(1000, help="seeds per output shard (and per resume marker)", range=">= 1")
    retry_failed: bool = setting(False, help="on resume, ask again for seeds whose every attempt failed")
    progress: bool = setting(True, help="progress bar with requests/s and tokens/s")
    server: ServerConfig = setting(help="the OpenAI-compatible server", factory=ServerConfig)
    sampling: SamplingConfig = setting(help="decoding settings", factory=SamplingConfig)
    near_dedup: NearDedupConfig = setting(
        help="near-duplicates among the answers and of their seeds", factory=NearDedupConfig)
    decontaminate: DecontamConfig = setting(help="benchmark decontamination of the answers", factory=DecontamConfig)

    def validate(self) -> None:
        if self.snippet_min_lines > self.snippet_max_lines:
            raise ConfigError(f"{self.key('snippet_min_lines')} must be <= {self.key('snippet_max_lines')}")


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def _exact_key(text: str) -> int:
    """Exact-duplicate key: the text with trailing spaces and blank edges removed."""
    return xxhash.xxh64_intdigest("\n".join(ln.rstrip() for ln in text.strip().splitlines()).encode())


def _read_log(path: Path) -> dict[int, dict]:
    """Seed index -> its last logged answer; a torn last line (killed mid-write) is cut off, and a
    damaged line is ignored (its seed is asked again)."""
    out: dict[int, dict] = {}
    if not path.is_file():
        return out
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
            out[int(row["index"])] = row
        except (ValueError, TypeError, KeyError):
            continue
    return out


class Synthesize(Step):
    name = "synthesize"
    transforms = True  # outputs are new documents, one per seed at most

    def __init__(self, cfg: SynthesizeConfig):
        for key in ("phase2", "out"):
            if not getattr(cfg, key):
                raise StepError(f"synthesize needs {key}=...", 2)
        self.cfg = cfg
        self.settings = cfg
        self.input_dir = Path(cfg.phase2)  # every phase-2 record is counted: a seed, or why not
        try:
            self.template = load_template(cfg.prompt)
        except ValueError as e:
            raise StepError(str(e), 2) from None
        self.template_path = Path(cfg.prompt) if Path(cfg.prompt).is_file() else PROMPTS_DIR / f"{cfg.prompt}.txt"

    # -- fingerprint: what decides the output (not where the server is or how hard it is driven) --
    def fingerprint_settings(self):
        d = to_dict(self.cfg)
        d.pop("out")
        d.pop("progress")
        d.pop("retry_failed")  # asking again for failed seeds is how to finish, not another output
        d.pop("phase2")  # by content (the runner fingerprints input_dir)
        d["server"] = {"model": self.cfg.server.model, "api": self.cfg.server.api}
        return d

    def depends_on(self):
        deps = {"prompt_template": self.template_path}
        if self.cfg.scores:
            deps["scores"] = Path(self.cfg.scores)
        return deps

    # -- plan -------------------------------------------------------------------------------
    def units(self, ctx: StepContext) -> list[dict]:
        path = ctx.work / SEEDS_FILE
        if not path.is_file():
            bad: list[BadRecord] = []
            seeds, counts = self._select(ctx, bad)
            if not seeds:
                why = {}
                for c in counts.values():
                    for k in NOT_SEED_REASONS:
                        why[k] = why.get(k, 0) + c.get(k, 0)
                for b in bad:
                    why[b.reason] = why.get(b.reason, 0) + b.count
                why = ", ".join(f"{k} {v}" for k, v in sorted(why.items()) if v)
                raise StepError(f"synthesize: no document of {self.cfg.phase2} can be a seed "
                                f"({why or 'no records'})", 2)
            self._write_seed_plan(ctx, seeds, counts, bad)
        seeds = self.read_seeds(ctx)
        k = self.cfg.seeds_per_unit
        return [{"first": a, "count": min(k, len(seeds) - a)} for a in range(0, len(seeds), k)]

    def _phase2(self, ctx, bad: list[BadRecord] | None = None):
        """The phase-2 records in dataset order; damaged lines are collected in ``bad`` (never raised)."""
        for i, entry in enumerate(ctx.input_shards_cached()):
            for item in ctx.read_input(i):
                if isinstance(item, BadRecord):
                    if bad is not None:
                        bad.append(item)
                    continue
                problem = text_problem(item.content)  # NUL or lone surrogates: not text to show a model
                if problem:
                    if bad is not None:
                        stand_in = CodeRecord(id=item.id, content="", language=item.language, path=item.path,
                                              source=item.source)
                        bad.append(BadRecord(problem, str(self.input_dir / entry["name"]), None,
                                             f"record {item.id!r}", stand_in))
                    continue
                yield item

    def _select(self, ctx, bad: list[BadRecord]):
        scores = None
        if self.cfg.scores:
            scores = {row["id"]: row["score"] for row in read_scores(self.cfg.scores) if row.get("score") is not None}
        first = [True]

        def read():  # damaged lines are collected on the first pass only
            b = bad if first[0] else None
            first[0] = False
            return self._phase2(ctx, b)

        per_language: int | dict[str, int] = self.cfg.seeds_per_language
        if self.cfg.synthetic_tokens:
            sizes: dict[str, int] = {}
            for r in self._phase2(ctx):
                lang = canonical_language(r.language) or "unknown"
                sizes[lang] = sizes.get(lang, 0) + len(r.content.encode("utf-8"))
            if self.cfg.languages:
                sizes = {k: v for k, v in sizes.items() if k in {canonical_language(x) for x in self.cfg.languages}}
            try:
                per_language = plan_seeds(sizes, self.cfg.synthetic_tokens, self.cfg.tokens_per_seed,
                                          self.cfg.python_share, self.cfg.python_languages)
            except ValueError as e:
                raise StepError(f"synthesize: {e}", 2) from None
            atomic_write_json(ctx.work / "seed_plan.json", {
                "synthetic_tokens": self.cfg.synthetic_tokens, "tokens_per_seed": self.cfg.tokens_per_seed,
                "python_share": self.cfg.python_share, "phase2_bytes": sizes, "seeds_per_language": per_language})
        try:
            return select_seeds(read, per_language, self.cfg.languages or None, scores,
                                self.cfg.random_seed, self.cfg.snippet_min_lines, self.cfg.snippet_max_lines,
                                self.cfg.snippet_max_chars)
        except ValueError as e:
            raise StepError(f"synthesize: {e}", 2) from None

    def _write_seed_plan(self, ctx, seeds: list[Seed], counts: dict, bad: list[BadRecord]) -> None:
        """Seeds (with snippets), and the MinHash signatures and exact keys of the seed documents (dedup
        against seeds: a seed can be a whole repository, so it is compared by signature, 4 x num_perm bytes)."""
        nd = self.cfg.near_dedup
        wanted = {s.position for s in seeds}
        hasher = ShingleHasher()
        sigs, exact = {}, {}
        for pos, r in enumerate(self._phase2(ctx)):
            if pos in wanted:
                sh = hasher.shingles(r.content, nd.ngram)
                sigs[pos] = signature(sh, nd.num_perm, nd.seed, nd.block).astype(np.uint32)
                exact[pos] = _exact_key(r.content)
        np.save(ctx.work / "seed_signatures.npy", np.stack([sigs[s.position] for s in seeds]))
        np.save(ctx.work / "seed_exact.npy", np.array([exact[s.position] for s in seeds], dtype=np.uint64))
        atomic_write_json(ctx.work / "seed_counts.json", counts)
        rejects = [{"reason": b.reason, "count": b.count, "details": b.details(), "record": b.record.to_dict()}
                   for b in bad]
        atomic_write_bytes(ctx.work / SEED_REJECTS, encode_shard(rejects)[0])
        data, _, _ = encode_shard([s.to_dict() for s in seeds])
        atomic_write_bytes(ctx.work / SEEDS_FILE, data)  # last: its presence means the plan is whole

    def read_seeds(self, ctx) -> list[Seed]:
        if not hasattr(self, "_seeds"):
            with gzip.open(ctx.work / SEEDS_FILE, "rt", encoding="utf-8") as f:
                self._seeds = [Seed(**json.loads(line)) for line in f if line.strip()]
        return self._seeds

    def prompt_of(self, seed: Seed):
        if self.cfg.server.api == "chat":
            return self.template.chat(seed.language, seed.snippet)
        return self.template.completion(seed.language, seed.snippet)

    # -- generation (every rank) and filtering (rank 0) ---------------------------------------
    def prepare(self, ctx: StepContext, units: list[dict]) -> None:
        self.model = ctx.root_then_share(lambda: self._model(ctx), "synthesize: ")
        ctx.agree(lambda: self._generate(ctx, units), "synthesize: ")
        ctx.root_then_share(lambda: self._decide(ctx, units), "synthesize: ")

    def _model(self, ctx) -> str:
        """The model name, checked against the one a previous (killed) run used."""
        try:
            model = asyncio.run(resolve_model(self.cfg.server))
        except Exception as e:  # noqa: BLE001
            raise StepError(f"cannot reach the server at {self.cfg.server.base_url}: {type(e).__name__}: {e}", 1) from e
        path = ctx.work / MODEL_FILE
        if path.is_file():
            old = json.loads(path.read_text())["model"]
            if old != model:
                raise StepError(f"{ctx.out} was generated with model {old!r} but the server serves {model!r}; "
                                "use a new out=DIR or --force", 2)
        else:
            atomic_write_json(path, {"model": model})
        return model

    def _generate(self, ctx: StepContext, units: list[dict]) -> None:
        seeds = self.read_seeds(ctx)
        gen_dir = ctx.work / GEN_DIR
        gen_dir.mkdir(parents=True, exist_ok=True)
        mine = [i for i in ctx.my_items(len(units)) if not ctx.unit_finished(i, units[i])]
        todo: list[tuple[int, int]] = []  # (unit, seed index)
        for i in mine:
            done = _read_log(gen_dir / f"gen-{i:05d}.jsonl")
            u = units[i]
            for j in range(u["first"], u["first"] + u["count"]):
                row = done.get(j)
                if row is None or (self.cfg.retry_failed and row.get("error")):
                    todo.append((i, j))
        unit_of = dict((j, i) for i, j in todo)
        files = {i: open(gen_dir / f"gen-{i:05d}.jsonl", "a", encoding="utf-8") for i in {i for i, _ in todo}}
        host = socket.gethostname()

        def on_result(res: Result) -> None:
            s = seeds[res.index]
            row = {**asdict(res), "seed_id": s.id, "language": s.language, "model": self.model, "rank": ctx.comm.rank,
                   "host": host, "pid": os.getpid()}
            f = files[unit_of[res.index]]
            # ASCII: an answer with lone surrogates (a server can send any \\uXXXX) stays writable
            line = json.dumps(row, ensure_ascii=True, sort_keys=True) + "\n"
            faults.write_in_halves(f, line, f"synthesize.answer:{res.index}")  # kill tests: a torn last line
            f.flush()

        items = ((j, self.prompt_of(seeds[j]), (self.cfg.sampling.seed * 1_000_003 + _stable_int(seeds[j].id)) % 2**31)
                 for _, j in todo)
        try:
            if todo:
                stats = asyncio.run(run_requests(self.cfg.server, self.model, items, len(todo), self.cfg.sampling,
                                                 on_result, progress=self.progress(ctx),
                                                 desc=f"synthesize r{ctx.comm.rank}"))
                atomic_write_json(gen_dir / f"throughput-rank{ctx.comm.rank:05d}.json", stats)
        except ServerGone as e:
            raise StepError(f"synthesize: {e}; the answers received are kept: start the server again and re-run "
                            "the same command to resume", 1) from None
        finally:
            for f in files.values():
                f.close()

    def progress(self, ctx) -> bool:
        return bool(self.cfg.progress and ctx.progress)

    def _decide(self, ctx: StepContext, units: list[dict]) -> None:
        """Rank 0: the verdict on every answer, in seed order (``decisions-NNNNN.json`` per unit)."""
        seeds = self.read_seeds(ctx)
        nd, dc = self.cfg.near_dedup, self.cfg.decontaminate
        decontam = Decontaminator(dc) if dc.enabled else None
        bands, rows = lsh_params(nd)
        hasher = ShingleHasher()
        seed_sigs = np.load(ctx.work / "seed_signatures.npy", mmap_mode="r")  # (seeds, num_perm) uint32
        seed_exact = {}
        for i, k in enumerate(np.load(ctx.work / "seed_exact.npy").tolist()):
            seed_exact.setdefault(int(k), i)
        # LSH tables: band hash -> owners (("seed", i) or ("out", seed index)). Verification: a seed by
        # signature estimate; a kept output by exact shingle Jaccard (verify_exact) or signature estimate.
        tables: list[dict[int, list[tuple[str, int]]]] = [{} for _ in range(bands)]
        out_payload: dict[int, np.ndarray] = {}
        out_exact: dict[int, int] = {}
        empty = np.full(nd.num_perm, np.uint32(0xFFFFFFFF))  # the signature of a text without tokens

        def add(owner: tuple[str, int], sig: np.ndarray) -> None:
            for b, h in enumerate(band_hashes(np.asarray(sig, dtype=np.uint64), bands, rows).tolist()):
                tables[b].setdefault(h, []).append(owner)

        def same(owner: tuple[str, int], sh: np.ndarray, sig: np.ndarray) -> bool:
            if not nd.verify:
                return True
            kind, i = owner
            if kind == "seed":
                return float(np.mean(seed_sigs[i] == sig)) >= nd.threshold
            if nd.verify_exact:
                return exact_jaccard(out_payload[i], sh) >= nd.threshold
            return float(np.mean(out_payload[i] == sig)) >= nd.threshold

        def near(sh: np.ndarray, sig: np.ndarray) -> tuple[str, int] | None:
            seen = set()
            for b, h in enumerate(band_hashes(np.asarray(sig, dtype=np.uint64), bands, rows).tolist()):
                for owner in tables[b].get(h, ()):
                    if owner not in seen:
                        seen.add(owner)
                        if same(owner, sh, sig):
                            return owner
            return None

        if nd.enabled:
            for i in range(len(seeds)):
                if not np.array_equal(seed_sigs[i], empty):
                    add(("seed", i), seed_sigs[i])
        gen_dir = ctx.work / GEN_DIR
        fence_opened = self.cfg.server.api == "completions"
        for u_index, u in enumerate(ctx.bar(units, "filter")):
            log = _read_log(gen_dir / f"gen-{u_index:05d}.jsonl")
            verdicts = []
            for j in range(u["first"], u["first"] + u["count"]):
                if j not in log:
                    raise StepError(f"synthesize: seed {j} ({seeds[j].id}) has no answer after generation")
                row = log[j]
                reason, details = None, {}
                code = None
                if row.get("error") == "prompt_too_long":
                    reason, details = "prompt_too_long", {"server": row.get("detail", "")}
                elif row.get("error"):
                    reason, details = "request_failed", {"error": row["error"], "attempts": row["attempts"]}
                elif row.get("finish_reason") != "stop":
                    reason, details = "truncated", {"finish_reason": row.get("finish_reason")}
                elif text_problem(row["text"]):
                    reason = text_problem(row["text"])
                else:
                    code, reason = extract_code(row["text"], seeds[j].language, fence_opened)
                if reason is None and parses(code, seeds[j].language) is False:
                    reason = "syntax_error"
                if reason is None and decontam is not None:
                    hit = decontam.check(code)
                    if hit:  # the decontaminator's own "reason" is its rule (substring or n-gram)
                        reason, details = "contaminated", {"rule": hit.reason, **hit.details()}
                if reason is None:
                    key = _exact_key(code)
                    sh = hasher.shingles(code, nd.ngram) if nd.enabled else np.empty(0, np.uint64)
                    sig = signature(sh, nd.num_perm, nd.seed, nd.block).astype(np.uint32) if len(sh) else None
                    owner = near(sh.astype(np.uint32), sig) if sig is not None else None
                    if key in seed_exact:
                        reason, details = "duplicate_of_seed", {"of": seeds[seed_exact[key]].id}
                    elif key in out_exact:
                        reason, details = "duplicate", {"of_seed": seeds[out_exact[key]].id}
                    elif owner is not None and owner[0] == "seed":
                        reason, details = "near_duplicate_of_seed", {"of": seeds[owner[1]].id}
                    elif owner is not None:
                        reason, details = "near_duplicate", {"of_seed": seeds[owner[1]].id}
                    else:
                        out_exact[key] = j
                        if sig is not None:
                            out_payload[j] = sh.astype(np.uint32) if nd.verify_exact else sig
                            add(("out", j), sig)
                verdicts.append({"index": j, "reason": reason, "details": details})
            atomic_write_json(ctx.work / f"decisions-{u_index:05d}.json", verdicts, indent=None)

    # -- one unit: the records of its seeds ------------------------------------------------------
    def process(self, ctx: StepContext, index: int, unit: dict) -> UnitResult:
        seeds = self.read_seeds(ctx)
        log = _read_log(ctx.work / GEN_DIR / f"gen-{index:05d}.jsonl")
        verdicts = json.loads((ctx.work / f"decisions-{index:05d}.json").read_text())
        funnel = Funnel(self.name)
        kept: list[CodeRecord] = []
        dropped: list[Dropped] = []
        stats = {"requests": 0, "attempts": 0, "prompt_tokens": 0, "completion_tokens": 0, "kept_tokens": 0,
                 "errors": {}, "parse_checked": {}, "parse_unchecked": {}}
        fence_opened = self.cfg.server.api == "completions"
        for v in verdicts:
            j = v["index"]
            s, row = seeds[j], log[j]
            stats["requests"] += 1
            stats["attempts"] += row["attempts"]
            stats["prompt_tokens"] += row["prompt_tokens"]
            stats["completion_tokens"] += row["completion_tokens"]
            for kind in row["errors"]:
                stats["errors"][kind] = stats["errors"].get(kind, 0) + 1
            answer = row["text"]
            funnel.seen(s.language, len(answer.encode("utf-8", "surrogatepass")))
            meta = {"synthesis": {
                "seed_id": s.id, "seed_score": s.score, "seed_language": s.language, "seed_index": j,
                "snippet_start_line": s.start_line, "snippet_lines": s.num_lines, "model": row["model"],
                "api": self.cfg.server.api, "prompt_template": self.template.name,
                "prompt_template_hash": self.template.hash, "finish_reason": row["finish_reason"],
                "prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
                "attempts": row["attempts"]}}
            rid = "syn-" + hashlib.blake2b(f"{s.id}\0{row['model']}\0{self.template.hash}".encode(),
                                           digest_size=10).hexdigest()
            ext = EXTENSIONS.get(s.language, ("",))[0] if s.language != "jupyter" else ".py"
            if v["reason"] is None:
                code, _ = extract_code(answer, s.language, fence_opened)
                checker = parser_name(s.language)
                meta["synthesis"]["parser"] = checker
                bucket = "parse_checked" if checker else "parse_unchecked"
                stats[bucket][s.language] = stats[bucket].get(s.language, 0) + 1
                stats["kept_tokens"] += row["completion_tokens"]
                funnel.kept(s.language, len(code.encode("utf-8")))
                kept.append(CodeRecord(id=rid, content=code, language=s.language, path=f"synthetic/{rid}{ext}",
                                       source="synthetic", meta=meta))
            else:
                safe = answer.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates, escaped
                set_aside(funnel, dropped, CodeRecord(id=rid, content=safe, language=s.language, source="synthetic",
                                                      meta=meta), v["reason"], v["details"],
                          nbytes=len(answer.encode("utf-8", "surrogatepass")))
        if index == 0:
            self._count_non_seeds(ctx, funnel, dropped)
        return UnitResult(kept, dropped, funnel, stats, represents=len(kept))

    def _count_non_seeds(self, ctx: StepContext, funnel: Funnel, dropped: list[Dropped]) -> None:
        """Unit 0 also accounts for every phase-2 record that is not a seed: counted by reason (the
        damaged ones set aside as stand-ins naming their file and line)."""
        counts = json.loads((ctx.work / "seed_counts.json").read_text())
        for lang, c in sorted(counts.items()):
            for reason in NOT_SEED_REASONS:
                if c.get(reason):
                    funnel.seen(lang, 0, c[reason])
                    funnel.dropped(lang, 0, reason, c[reason])
        with gzip.open(ctx.work / SEED_REJECTS, "rt", encoding="utf-8") as f:
            for line in f:
                x = json.loads(line)
                rec = CodeRecord.from_dict(x["record"])
                funnel.seen(rec.language, 0, x["count"])
                set_aside(funnel, dropped, rec, x["reason"], x["details"], nbytes=0, count=x["count"])


def synthesize(cfg: SynthesizeConfig, comm=None, force: bool = False, progress: bool = True) -> Funnel:
    """Run the step into ``cfg.out`` (every rank calls it); returns the funnel."""
    return run_step(Synthesize(cfg), cfg.out, comm, force=force, progress=progress and cfg.progress)


def cli_run(cfg, args, comm) -> None:
    """The ``synthesize`` command."""
    from megatron_snow.stages.runner import print_funnel

    print_funnel(synthesize(cfg, comm, force=args.force), comm)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow synthesize`` / ``tools/preprocess/synthesize.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["synthesize"].main(argv)


USAGE = """Start an OpenAI-compatible server (vLLM, SGLang, `transformers serve`), then:

  python -m megatron_snow synthesize phase2=data/phase2 out=data/phase3_synthetic \\
      server.base_url=http://127.0.0.1:8000/v1 seeds_per_language=20000 server.concurrency=256

A killed run re-run with the same command resumes (no seed is generated twice).
Under MPI (mpiexec -n N / srun) each rank sends its share of the requests."""
