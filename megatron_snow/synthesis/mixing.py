"""The ``mix`` step: the phase-3 blend from the synthetic files and the phase-2 data.

Recipe (phase 3): about 2B synthetic tokens within a 5B-token phase, Python
raised to about half of the tokens, the other languages kept in their phase-2
proportions. Inputs are two indexed datasets made by ``build-index`` (one from
``synthesize``'s output, one from the phase-2 selection); their sidecars
(``PREFIX.docs.jsonl.gz``) give each document's language.

1. Split (no re-tokenization): each input is copied, document by document, into
   one indexed dataset per language, ``OUT/<source>_<language>.bin/.idx``.
2. Plan: language L gets ``T_L = budget x python_share`` for Python, else
   ``budget x (1 - python_share) x P_L / sum(P of the non-Python languages)``
   with ``P_L`` its phase-2 tokens. Within L the synthetic files are seen
   ``synthetic_repetition`` times at most (fewer when T_L is smaller), and the
   phase-2 documents fill the rest (repeated, or a fraction of an epoch). A
   language without phase-2 tokens takes no part (reported).
3. ``OUT/blend.json`` (``data.blend_file=`` of the trainer: each dataset with its
   unique tokens and repetition), ``OUT/mix_report.json`` and a per-language table.
4. Check: the report gives the planned synthetic total, its share of the budget
   and the Python share of the synthetic tokens; when the synthetic total is
   more than ``synthetic_tolerance`` (20%) away from ``synthetic_share`` of the
   budget (paper: about 2B of 5B), one line warns (``synthesize`` plans its seeds
   from the same target: ``synthetic_tokens``).

When synthesis kept no file (a small model writes little valid code), build-index
has nothing to index: pass ``synthetic_index=none`` and the blend is the phase-2
data alone, the report saying so (``synthetic_documents: 0`` and a note).

Either input may also be a blend file (select's ``blend.json``): its datasets are
that input. Inputs are checked before anything is written, each problem one line
(exit 2): a missing or malformed blend file, one naming a missing dataset or a
weight <= 0, a missing, truncated or inconsistent ``.idx`` (against its ``.bin``),
a damaged sidecar or ``.stats.json``, inputs made with different tokenizers.
Every document of the inputs is in ``funnel.json``: kept (in the blend) or left
out by reason (``below_min_size``, ``language_not_in_phase2``, ``no_share``).

Resumable: a finished split of a source is marked (``split-<source>.json``) and
skipped; the step's settings and its inputs' content are fingerprinted
(``mix_settings.json``): other settings or inputs need ``--force`` or a new out.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_snow import records
from megatron_snow.atomic import atomic_write_json
from megatron_snow.config import Config, setting, to_dict
from megatron_snow.funnel import Funnel
from megatron_snow.indexed import (
    BlendEntry, IndexFormatError, IndexWriter, bin_path, check_idx, idx_path, read_blend_file, read_idx,
    write_blend_file,
)
from megatron_snow.languages import canonical_language
from megatron_snow.stages.runner import StepError, content_hash

BLEND = "blend.json"
REPORT = "mix_report.json"
SETTINGS = "mix_settings.json"
SOURCES = ("synthetic", "phase2")
NO_SYNTHETIC = "none"  # synthetic_index when synthesis kept no file


@dataclass
class MixConfig(Config):
    """Settings of the ``mix`` step."""

    synthetic_index: str = setting(
        "", help="build-index prefix of the synthesize output (or a blend .json); \"none\": synthesis kept no file")
    phase2_index: str = setting(
        "", help="build-index prefix of the phase-2 selection, or select's blend.json naming it")
    out: str = setting("", help="directory: per-language indexed datasets, blend.json, mix_report.json")
    budget_tokens: int = setting(5_000_000_000, help="training tokens of phase 3 (paper: 5B)", range=">= 1")
    python_share: float = setting(
        0.5, help="share of the budget for python_languages (paper: about 50%)", range="[0, 1]")
    python_languages: list[str] = setting(help="counted as \"Python\"", factory=lambda: ["python"])
    synthetic_repetition: float = setting(
        1.0, help="most times a synthetic file is seen (fewer if its language needs less)", range="> 0")
    synthetic_share: float = setting(
        0.4, help="target synthetic share of the budget (paper: about 2B of 5B); 0: no check", range="[0, 1]")
    synthetic_tolerance: float = setting(
        0.2, help="warn when the planned synthetic tokens are further than this from the target", range=">= 0")
    min_documents: int = setting(
        1, help="a per-language dataset with fewer documents than this is left out (reported in mix_report.json "
                "\"left_out\"): the "
                "trainer splits each dataset into train/valid by documents and needs a few samples of each",
                range=">= 1")
    min_tokens: int = setting(1, help="a per-language dataset with fewer tokens is left out, likewise", range=">= 1")
    progress: bool = setting(True, help="progress bars on stderr")


def read_sidecar_languages(prefix: str | Path) -> list[str]:
    """Language of each document of a build-index dataset (its ``.docs.jsonl.gz`` sidecar).
    A damaged sidecar raises IndexFormatError naming the file (and line)."""
    path = Path(f"{prefix}.docs.jsonl.gz")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: mix reads datasets made by build-index (with their sidecar)")
    langs = []
    for item in records.iter_json_lines(path):  # the one robust JSON-lines reader
        if isinstance(item, records.BadRecord):
            raise IndexFormatError(f"{item.file}:{item.line}: damaged sidecar ({item.reason}: {item.error}); "
                                   "build the index again")
        lang = item[1].get("language")
        langs.append((canonical_language(lang) if isinstance(lang, str) else "") or "unknown")
    return langs


def input_prefixes(value: str) -> list[str]:
    """The dataset prefixes of one input: a build-index prefix, or the datasets of a blend file (``.json``)."""
    if not value.endswith(".json"):
        return [value]
    try:
        entries = read_blend_file(value)
    except ValueError as e:
        raise StepError(f"mix: {e}", 2) from None
    for i, e in enumerate(entries):
        if not idx_path(e.prefix).is_file():
            raise StepError(f"mix: {value}: datasets[{i}] names {e.prefix}, which has no .idx (build-index first)", 2)
    return [e.prefix for e in entries]


def check_input(prefix: str) -> dict:
    """One line (StepError, exit 2) for whatever is wrong with a build-index dataset; returns its tokenizer facts."""
    ip, bp = idx_path(prefix), bin_path(prefix)
    for p in (ip, bp):
        if not p.is_file():
            raise StepError(f"mix: {p} not found: build the index with build-index first", 2)
    try:
        idx = read_idx(prefix)
    except IndexFormatError as e:
        raise StepError(f"mix: {e}", 2) from None
    problems = check_idx(idx, bp.stat().st_size)
    if problems:
        raise StepError(f"mix: {ip}: damaged index ({'; '.join(problems)}); build it again", 2)
    stats_path = Path(f"{prefix}.stats.json")
    try:
        stats = json.loads(stats_path.read_text())
        facts = {"tokenizer_sha256": str(stats["tokenizer_sha256"]), "vocab_size": int(stats["vocab_size"]),
                 "eod_id": int(stats["eod_id"]), "dtype": np.dtype(stats["dtype"]).name}
    except FileNotFoundError:
        raise StepError(f"mix: {stats_path} not found: mix reads datasets made by build-index", 2) from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise StepError(f"mix: {stats_path}: damaged ({type(e).__name__}: {e}); build the index again", 2) from None
    if facts["dtype"] != idx.dtype.name:
        raise StepError(f"mix: {ip} holds {idx.dtype.name} tokens but {stats_path} says {facts['dtype']}", 2)
    return facts


def check_same_tokenizer(facts: dict[str, dict]) -> None:
    """Every input must come from one tokenizer: mixing token ids of two vocabularies trains on nonsense."""
    first_prefix, first = next(iter(facts.items()))
    for prefix, f in facts.items():
        diff = [k for k in ("tokenizer_sha256", "vocab_size", "eod_id", "dtype") if f[k] != first[k]]
        if diff:
            k = diff[0]
            raise StepError(f"mix: {first_prefix} and {prefix} were made with different tokenizers ({k} "
                            f"{str(first[k])[:16]} vs {str(f[k])[:16]}); build both indexes with the same one", 2)


def split_by_language(prefix: str | Path | list, out: Path, source: str, progress: bool = False) -> dict[str, dict]:
    """Copy each document of ``prefix`` (or of each of a list of prefixes, in order) into
    ``out/<source>_<language>``; returns {language: {documents, tokens, prefix}}."""
    from tqdm import tqdm

    prefixes = prefix if isinstance(prefix, list) else [prefix]
    writers: dict[str, IndexWriter] = {}
    try:
        for prefix in prefixes:
            try:
                idx = read_idx(prefix)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{idx_path(prefix)} not found: build the index with build-index first") from None
            langs = read_sidecar_languages(prefix)
            n = int(idx.sequence_lengths.size)
            if len(langs) != n:
                raise IndexFormatError(f"{prefix}: the sidecar lists {len(langs)} documents, the index holds {n}")
            data = np.memmap(bin_path(prefix), dtype=idx.dtype, mode="r")
            step = idx.dtype.itemsize
            for i in tqdm(range(n), desc=f"mix: split {source}", unit="doc", disable=not progress, mininterval=1.0):
                lang = langs[i]
                if lang not in writers:
                    writers[lang] = IndexWriter(out / f"{source}_{lang}", idx.dtype)
                start = int(idx.sequence_pointers[i]) // step
                writers[lang].add(data[start:start + int(idx.sequence_lengths[i])])
            del data
        counts = {lang: {"documents": w.documents, "tokens": w.tokens, "prefix": f"{source}_{lang}"}
                  for lang, w in sorted(writers.items())}
        for w in writers.values():
            w.finish()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return counts


def plan_mix(synthetic: dict[str, int], phase2: dict[str, int], budget: int, python_share: float,
             python_languages: list[str], synthetic_repetition: float) -> dict:
    """Per-language target tokens and the repetition of each source (see the module docstring)."""
    py = {canonical_language(x) for x in python_languages}
    langs = sorted(set(synthetic) | set(phase2))
    other_p2 = sum(t for lang, t in phase2.items() if lang not in py)
    py_p2 = sum(t for lang, t in phase2.items() if lang in py)
    py_syn = sum(t for lang, t in synthetic.items() if lang in py)
    if python_share > 0 and py_p2 + py_syn == 0:
        raise StepError(
            f"mix: no tokens of {', '.join(sorted(py))} in either input, but python_share={python_share}", 2)
    if python_share < 1 and other_p2 == 0:
        raise StepError("mix: the phase-2 data has no non-Python tokens to keep in proportion; set python_share=1", 2)
    out = {}
    for lang in langs:
        s, p = synthetic.get(lang, 0), phase2.get(lang, 0)
        if lang in py:  # the Python share is split between the Python labels by their tokens
            target = budget * python_share * ((p + s) / (py_p2 + py_syn))
        else:
            target = budget * (1 - python_share) * (p / other_p2) if other_p2 else 0.0
        syn_rep = min(synthetic_repetition, target / s) if s else 0.0
        rest = target - syn_rep * s
        rest = rest if rest >= 0.5 else 0.0  # a float residue is no share (not a dataset seen 1e-18 times)
        p2_rep = rest / p if p else 0.0
        if not p and rest > 0.5:  # nothing to fill with: the synthetic files are repeated more
            syn_rep = target / s
        note = "not in phase 2: left out" if lang not in py and not p else ""
        out[lang] = {"target_tokens": target, "synthetic_tokens": s, "phase2_tokens": p,
                     "synthetic_repetition": syn_rep, "phase2_repetition": p2_rep,
                     "planned_tokens": syn_rep * s + p2_rep * p,
                     "phase2_share": p / sum(phase2.values()) if phase2 else 0.0,
                     "note": note}
    total = sum(v["planned_tokens"] for v in out.values())
    for v in out.values():
        v["planned_share"] = v["planned_tokens"] / total if total else 0.0
        v["synthetic_planned_tokens"] = v["synthetic_repetition"] * v["synthetic_tokens"]
    return {"budget_tokens": budget, "planned_tokens": total, "python_share": python_share,
            "python_languages": sorted(py), "languages": out,
            "synthetic_planned_tokens": sum(v["synthetic_planned_tokens"] for v in out.values())}


def report_table(plan: dict) -> str:
    cols = ["language", "phase2_tok", "phase2%", "synth_tok", "target_tok", "synth_rep", "phase2_rep", "mix%"]
    rows = []
    for lang, v in plan["languages"].items():
        rows.append([lang, f"{v['phase2_tokens']:,}", f"{100 * v['phase2_share']:.2f}", f"{v['synthetic_tokens']:,}",
                     f"{v['target_tokens']:,.0f}", f"{v['synthetic_repetition']:.3f}", f"{v['phase2_repetition']:.3f}",
                     f"{100 * v['planned_share']:.2f}"])
    rows.append(["TOTAL", "", "", "", f"{plan['planned_tokens']:,.0f}", "", "", "100.00"])
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    fmt = lambda cells: "  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = ["== phase-3 mix ==", fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    syn = plan["synthetic_planned_tokens"]
    lines.append(f"{plan['planned_tokens']:,.0f} training tokens (budget {plan['budget_tokens']:,}), of which "
                 f"{syn:,.0f} synthetic ({100 * syn / max(plan['planned_tokens'], 1):.1f}%), "
                 f"{100 * plan.get('synthetic_python_share', 0.0):.1f}% of them Python")
    return "\n".join(lines)


def synthetic_check(plan: dict, synthetic_share: float, tolerance: float) -> str | None:
    """Adds the synthetic target to ``plan``; returns a one-line warning when the plan misses it by > tolerance."""
    py = set(plan["python_languages"])
    syn = plan["synthetic_planned_tokens"]
    py_syn = sum(v["synthetic_planned_tokens"] for lang, v in plan["languages"].items() if lang in py)
    plan["synthetic_python_share"] = py_syn / syn if syn else 0.0
    plan["synthetic_share"] = syn / plan["planned_tokens"] if plan["planned_tokens"] else 0.0
    target = synthetic_share * plan["budget_tokens"]
    plan["synthetic_target_tokens"] = target
    if not target or abs(syn - target) <= tolerance * target:
        return None
    off = (syn - target) / target
    return (f"mix: warning: {syn:,.0f} synthetic tokens planned, {100 * abs(off):.0f}% "
            f"{'above' if off > 0 else 'below'} the target {target:,.0f} (synthetic_share={synthetic_share} of "
            f"budget_tokens); plan the seeds from the target (synthesize synthetic_tokens={target:.0f})")


def _fingerprint(cfg: MixConfig) -> dict:
    settings = to_dict(cfg)
    for k in ("out", "progress", "synthetic_index", "phase2_index"):
        settings.pop(k)
    inputs = {}
    for src, value in (("synthetic", cfg.synthetic_index), ("phase2", cfg.phase2_index)):
        if value == NO_SYNTHETIC:
            inputs[src] = NO_SYNTHETIC
            continue
        hashes = [{"idx": content_hash(idx_path(p)), "docs": content_hash(f"{p}.docs.jsonl.gz")}
                  for p in input_prefixes(value)]
        inputs[src] = hashes + [{"blend": content_hash(value)}] if value.endswith(".json") else hashes[0]
    return {"settings": settings, "inputs": inputs}


def mix(cfg: MixConfig, force: bool = False, log=print) -> dict:
    """Split, plan, write blend.json and mix_report.json; returns the plan."""
    for key in ("synthetic_index", "phase2_index", "out"):
        if not getattr(cfg, key):
            raise StepError(f"mix needs {key}=...", 2)
    if cfg.phase2_index == NO_SYNTHETIC:
        raise StepError("mix: phase2_index=none: the phase-2 data is required (only synthetic_index may be none)", 2)
    prefixes = {source: [] if value == NO_SYNTHETIC else input_prefixes(value)
                for source, value in (("synthetic", cfg.synthetic_index), ("phase2", cfg.phase2_index))}
    facts = {p: check_input(p) for ps in prefixes.values() for p in ps}
    check_same_tokenizer(facts)
    for p in prefixes["phase2"]:
        if p in prefixes["synthetic"]:
            raise StepError(f"mix: {p} is both the synthetic and the phase-2 input", 2)
    out = Path(cfg.out)
    fp = _fingerprint(cfg)
    stamp = out / SETTINGS
    if stamp.is_file() and json.loads(stamp.read_text()) != fp:
        if not force:
            raise StepError(f"{out} was mixed with other settings or inputs ({stamp}); re-run with --force "
                            "or use a new out=DIR", 2)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, fp)
    counts = {}
    for source in SOURCES:
        marker = out / f"split-{source}.json"
        if not prefixes[source]:
            counts[source] = {}
            continue
        if not marker.is_file():
            try:
                atomic_write_json(marker, split_by_language(prefixes[source], out, source, cfg.progress))
            except (FileNotFoundError, IndexFormatError) as e:
                raise StepError(f"mix: {e}", 2) from None
        counts[source] = json.loads(marker.read_text())
    funnel = Funnel("mix")  # documents (bytes: 0; tokens are in the report)
    for source in SOURCES:
        for lang, c in counts[source].items():
            funnel.seen(lang, 0, c["documents"])
    left_out = []
    for source in SOURCES:
        for lang, c in list(counts[source].items()):
            if c["documents"] < cfg.min_documents or c["tokens"] < cfg.min_tokens:
                left_out.append({"source": source, "language": lang, "documents": c["documents"],
                                 "tokens": c["tokens"], "reason": f"fewer than min_documents={cfg.min_documents} "
                                 f"documents or min_tokens={cfg.min_tokens} tokens"})
                funnel.dropped(lang, 0, "below_min_size", c["documents"])
                del counts[source][lang]
    plan = plan_mix({k: v["tokens"] for k, v in counts["synthetic"].items()},
                    {k: v["tokens"] for k, v in counts["phase2"].items()},
                    cfg.budget_tokens, cfg.python_share, cfg.python_languages, cfg.synthetic_repetition)
    entries = []
    for lang, v in plan["languages"].items():
        for source, rep in (("synthetic", v["synthetic_repetition"]), ("phase2", v["phase2_repetition"])):
            c = counts[source].get(lang)
            if c and rep > 0:
                entries.append(BlendEntry(c["prefix"], c["tokens"], rep))
                v[f"{source}_prefix"] = c["prefix"]
                funnel.kept(lang, 0, c["documents"])
            elif c:
                funnel.dropped(lang, 0, "language_not_in_phase2" if v["note"] else "no_share", c["documents"])
    funnel.check()
    funnel.write(out / "funnel.json")
    write_blend_file(out / BLEND, entries, phase=3, budget_tokens=cfg.budget_tokens,
                     python_share=cfg.python_share, note="phase-3 mix: synthetic + phase-2, Python ~50% of tokens")
    warning = synthetic_check(plan, cfg.synthetic_share, cfg.synthetic_tolerance)
    plan["warning"] = warning
    plan["left_out"] = left_out
    plan["synthetic_documents"] = sum(c["documents"] for c in counts["synthetic"].values())
    py_files = sum(c["documents"] for lang, c in counts["synthetic"].items() if lang in plan["python_languages"])
    plan["synthetic_python_files_share"] = py_files / max(plan["synthetic_documents"], 1)
    plan["phase2_documents"] = sum(c["documents"] for c in counts["phase2"].values())
    if not plan["synthetic_documents"]:
        plan["note"] = "no synthetic files in the blend (synthesis kept none, or too few: see left_out): " \
                       "the phase-3 blend is phase-2 data only"
    atomic_write_json(out / REPORT, plan)
    log(report_table(plan))
    for x in left_out:
        log(f"mix: left out {x['source']} {x['language']} ({x['documents']} documents, {x['tokens']} tokens): "
            f"{x['reason']}")
    if plan.get("note"):
        log(f"mix: {plan['note']}")
    if warning:
        log(warning)
    return plan


def cli_run(cfg, args, comm) -> None:
    """The ``mix`` command: one process copies; the others wait for its outcome (and exit with its code)."""
    error = None
    if comm.is_root:
        try:
            mix(cfg, force=args.force, log=lambda s: print(s, file=sys.stderr))
        except StepError as e:
            error = (str(e), e.exit_code)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            error = (f"mix: {type(e).__name__}: {e}".replace("\n", " "), 1)
    error = comm.bcast(error)
    if error:
        raise StepError(*error)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow mix`` / ``tools/preprocess/mix.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["mix"].main(argv)


USAGE = """Build both indexes first (build-index), then:

  python -m megatron_snow mix synthetic_index=data/idx/synthetic phase2_index=data/idx/phase2 \\
      out=data/phase3_mix budget_tokens=5000000000
  torchrun ... pretrain_gpt.py --config examples/snowcoder_1.3b/phase3.yaml \\
      data.blend_file=data/phase3_mix/blend.json"""
