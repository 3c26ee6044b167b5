"""The evaluate command end to end: given samples, a tiny trained model through transformers, and a local server."""
from __future__ import annotations

import json

import pytest

from megatron_snow.evaluate.cli import main
from megatron_snow.evaluate.tasks import ALL_UNITS, canonical_solution, load_problems, prompt_for

TRAINED = ("HumanEval/0", "HumanEval/2")  # the tiny model learns these; HumanEval/1 it does not


def _common(out, eval_cache):
    return ["--benchmarks", "humaneval+", "--limit", "3", "--out", str(out), f"cache_dir={eval_cache}",
            "sandbox.workers=2"]


def test_samples_scored_without_a_model(tmp_path, eval_cache, benchmarks_dir):
    unit = ALL_UNITS["humaneval+"]
    problems = load_problems(unit, benchmarks_dir, limit=3)
    rows = [{"task_id": "HumanEval/0", "solution": canonical_solution(unit, problems["HumanEval/0"])},
            {"task_id": "HumanEval/1", "completion": "    return []\n"},  # wrong
            {"task_id": "HumanEval/1", "completion": "    return None\n"},  # repeated: set aside
            {"task_id": "HumanEval/999", "completion": "pass"}]  # unknown: set aside; HumanEval/2 missing
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["--samples", str(samples), "--name", "given", *_common(out, eval_cache)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["table"]["ours"]["humaneval+"] == pytest.approx(100 / 3)
    assert report["units"]["humaneval+"]["set_aside"] == {"repeated_task": 1, "missing_task": 1}
    assert report["settings"]["samples_set_aside"] == {"unknown_task": 1}
    tasks = json.loads((out / "results" / "humanevalplus.json").read_text())["tasks"]
    assert [tasks[t]["base"] for t in ("HumanEval/0", "HumanEval/1", "HumanEval/2")] == ["pass", "fail", "missing"]
    md = (out / "results.md").read_text()
    assert "| model | tokens | HumanEval+ | MBPP+ | EvoEval | BigCodeBench |" in md
    assert ("| **Arctic-SnowCoder-1.3B (phase 3)** (paper, Table 2) | 555B | **28.0** | **42.9** | **18.0** | "
            "**19.4** |") in md
    # where the paper disagrees with itself, both numbers and their tables
    assert "| Arctic-SnowCoder-alpha (phase 1) (paper, Table 2) | 500B | 14.0 (15.9 in Tables 3-6) | 27.8 |" in md
    assert "| 21.3 | 34.7 (32.5 in Table 6, 4 x 12.5B) | 12.8 | 12.3 |" in md
    assert "| **given (ours)** | - | 33.3 | - | - | - |" in md
    assert report["data"]["humaneval+"]["records"] == 164 and len(report["data"]["humaneval+"]["sha256"]) == 64


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/0", "completion": "x"}\nnot json\n')
    assert main(["--samples", str(bad), "--benchmarks", "humaneval+", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"evaluate: {bad}:2: not JSON (Expecting value)"
    evo = tmp_path / "evo.jsonl"
    evo.write_text('{"task_id": "EvoEval/0", "completion": "x"}\n')
    assert main(["--samples", str(evo), "--benchmarks", "evoeval", "--out", str(tmp_path / "o")]) == 2
    assert "give each sample a \"unit\" field" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, benchmarks_dir):
    """A tiny Llama trained here to complete HumanEval/0 and /2 with their canonical solutions."""
    from tests.evaluate.tiny_model import train_tiny_llama

    unit = ALL_UNITS["humaneval+"]
    problems = load_problems(unit, benchmarks_dir, limit=3)
    pairs = [(prompt_for(unit, problems[t]), "\n" + problems[t]["canonical_solution"]) for t in TRAINED]
    return train_tiny_llama(tmp_path_factory.mktemp("tiny_eval") / "model", pairs), problems


def _check_generated_run(out, problems, backend):
    report = json.loads((out / "results.json").read_text())
    assert report["table"]["ours"]["humaneval+"] == pytest.approx(200 / 3)  # 2 of 3, base and plus
    assert report["units"]["humaneval+"]["scores"]["base_pass@1"] == pytest.approx(200 / 3)
    assert report["settings"]["generation"]["backend"] == backend
    samples = [json.loads(line) for line in (out / "samples" / "humanevalplus.jsonl").read_text().splitlines()]
    by_id = {s["task_id"]: s for s in samples}
    assert list(by_id) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for t in TRAINED:  # greedy decoding reproduces what was learnt, cut at the end of the function
        assert by_id[t]["completion"] == "\n" + problems[t]["canonical_solution"]
        assert by_id[t]["solution"] == problems[t]["prompt"].rstrip("\n") + by_id[t]["completion"]
    tasks = json.loads((out / "results" / "humanevalplus.json").read_text())["tasks"]
    assert {t: tasks[t]["plus"] for t in tasks} == {"HumanEval/0": "pass", "HumanEval/1": "fail", "HumanEval/2": "pass"}
    assert "Subset only (first 3 tasks per unit)" in (out / "results.md").read_text()


@pytest.mark.slow
def test_tiny_model_through_transformers(tiny_model, tmp_path, eval_cache):
    model_dir, problems = tiny_model
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), *_common(out, eval_cache), "generation.backend=transformers",
                 "generation.batch_size=2", "generation.max_new_tokens=200"]) == 0
    _check_generated_run(out, problems, "transformers")
    used = json.loads((out / "results.json").read_text())["settings"]["generation"]
    assert used["device"] == "cpu" and used["torch_threads"] == 1 and used["deterministic_algorithms"] is True


@pytest.mark.slow
def test_tiny_model_through_a_local_server(tiny_model, tmp_path, eval_cache):
    from tests.llm_server import serve

    model_dir, problems = tiny_model
    out = tmp_path / "out"
    with serve(model_dir, log_path=tmp_path / "server.log") as server:
        assert main(["--server", server.base_url, *_common(out, eval_cache), "generation.concurrency=3",
                     "generation.max_new_tokens=200"]) == 0
    _check_generated_run(out, problems, "server")
