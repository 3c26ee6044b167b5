"""Phase-3 volume (issue 27): seeds per language from the phase-3 target, and ``mix`` checking the result.

The paper's phase 3 is 5B tokens of which about 2B are synthetic, Python about half. ``synthesize``
plans its seeds from ``synthetic_tokens`` (Python ``python_share`` of them, the other languages in
their phase-2 proportions); ``mix`` reports the synthetic total, its Python share, and warns in one
line when the total is more than 20% from ``synthetic_share`` of the budget. The tiny case runs
``synthesize`` against a real HTTP server process (script_server.py) and ``mix`` on the indexes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs import good_python
from llm_server import ScriptProcess
from megatron_snow import records
from megatron_snow.config import load_config
from megatron_snow.indexed import read_idx
from megatron_snow.records import CodeRecord
from megatron_snow.synthesis.generate import SynthesizeConfig
from megatron_snow.synthesis.mixing import MixConfig, mix
from megatron_snow.synthesis.prompts import LANGUAGE_NAMES
from megatron_snow.synthesis.seeds import plan_seeds, select_seeds
from megatron_snow.tokenization.build_index import BuildIndexConfig, build_index
from test_mix import _tokenizer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_paper_scale_config_plans_2b_synthetic_tokens_half_python():
    cfg = load_config(SynthesizeConfig, REPO / "examples/snowcoder_1.3b/synthesize.yaml")
    # phase-2 sizes: any proportions; Python's own size must not decide its share of the seeds
    sizes = {lang: 1_000_000 * (i + 1) for i, lang in enumerate(sorted(LANGUAGE_NAMES))}
    plan = plan_seeds(sizes, cfg.synthetic_tokens, cfg.tokens_per_seed, cfg.python_share, cfg.python_languages)
    seeds = sum(plan.values())
    assert seeds * cfg.tokens_per_seed == pytest.approx(2_000_000_000, rel=0.001)
    assert plan["python"] / seeds == pytest.approx(0.5, rel=0.001)
    others = {k: v for k, v in plan.items() if k != "python"}
    total_other = sum(sizes[k] for k in others)
    for lang, n in others.items():  # the other languages keep their phase-2 proportions
        assert n == pytest.approx(seeds * 0.5 * sizes[lang] / total_other, abs=1)
    mix_cfg = MixConfig()
    assert mix_cfg.budget_tokens == 5_000_000_000 and mix_cfg.synthetic_share * mix_cfg.budget_tokens == 2e9


def test_plan_seeds_configured_share_and_no_python():
    assert plan_seeds({"python": 10, "go": 30, "rust": 10}, 1000, 10, python_share=0.2) == \
        {"go": 60, "python": 20, "rust": 20}
    assert plan_seeds({"go": 1, "rust": 3}, 1000, 10) == {"go": 25, "rust": 75}  # no Python: all to the others
    assert plan_seeds({"python": 5, "klingon": 5}, 1000, 10) == {"python": 100}  # no prompt: no seeds


def test_select_seeds_takes_a_count_per_language():
    docs = [CodeRecord(f"{lang}{i}", f"x = {i}\n", lang, meta={"annotator": {"score": i / 10}})
            for lang in ("python", "go") for i in range(6)]
    seeds, counts = select_seeds(lambda: iter(docs), {"python": 4, "go": 1})
    assert [s.id for s in seeds] == ["go5", "python5", "python4", "python3", "python2"]
    assert counts["go"]["not_a_seed"] == 5 and counts["python"]["not_a_seed"] == 2


def _phase2(path: Path) -> Path:
    """Python documents 3x the bytes of the shell ones: the seeds are still half Python."""
    docs = []
    for i in range(14):
        meta = {"annotator": {"score": 0.5 + i / 100}}
        docs.append(CodeRecord(f"py{i}", good_python(i) * 3 + "\n", "python", meta=meta))
        body = "".join(f"echo CASE:shell step {i} {k}\n" for k in range(12))
        docs.append(CodeRecord(f"sh{i}", "#!/bin/bash\n" + body, "shell", meta=meta))
    records.write_shard(path / records.shard_name(0), docs)
    records.write_manifest(path, [records.shard_entry(path / records.shard_name(0))])
    return path


def test_tiny_synthesis_follows_the_target_and_mix_checks_it(tmp_path):
    phase2 = _phase2(tmp_path / "phase2")
    out = tmp_path / "synthetic"
    env = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1", "OMP_NUM_THREADS": "1"}
    with ScriptProcess(HERE / "script_server.py") as server:
        p = subprocess.run([sys.executable, "-m", "megatron_snow", "synthesize", f"phase2={phase2}", f"out={out}",
                            "synthetic_tokens=6000", "tokens_per_seed=300", f"server.base_url={server.base_url}",
                            "server.concurrency=4", "progress=false", "decontaminate.enabled=false"],
                           cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    plan = json.loads((out / "_work" / "seed_plan.json").read_text())
    assert plan["seeds_per_language"] == {"python": 10, "shell": 10}  # 6000 / 300, half Python
    kept = [r.language for r in records.iter_records(out)]
    assert sorted(kept) == ["python"] * 10 + ["shell"] * 10  # every seed answered with a good file

    tok = _tokenizer(tmp_path / "tok.json", [r.content for r in records.iter_records(phase2)])
    prefixes = {}
    for name, data in (("synthetic", out), ("phase2", phase2)):
        prefixes[name] = str(tmp_path / "idx" / name)
        build_index(BuildIndexConfig(inputs=[str(data)], output_prefix=prefixes[name], tokenizer=str(tok),
                                     progress=False), log=lambda *a: None)
    syn_tokens = int(read_idx(prefixes["synthetic"]).sequence_lengths.sum())
    budget = round(syn_tokens / 0.4)  # the recipe's ratio: 2B synthetic of 5B
    lines: list[str] = []
    report = mix(MixConfig(synthetic_index=prefixes["synthetic"], phase2_index=prefixes["phase2"],
                           out=str(tmp_path / "mix"), budget_tokens=budget, progress=False), log=lines.append)
    assert report["synthetic_planned_tokens"] == pytest.approx(syn_tokens)
    assert report["synthetic_share"] == pytest.approx(0.4, abs=0.01) and report["warning"] is None
    assert report["synthetic_python_files_share"] == 0.5
    assert 0 < report["synthetic_python_share"] < 1  # by tokens: Python files are the longer ones here
    assert "synthetic" in lines[0] or any("of them Python" in x for x in lines)
    assert not any("warning" in x for x in lines)

    lines.clear()  # a target the synthetic files cannot meet: one line says so
    report = mix(MixConfig(synthetic_index=prefixes["synthetic"], phase2_index=prefixes["phase2"],
                           out=str(tmp_path / "mix2"), budget_tokens=budget, synthetic_share=0.8, progress=False),
                 log=lines.append)
    warnings = [x for x in lines if "warning" in x]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "50% below the target" in warnings[0], lines
    assert report["warning"] == warnings[0]
