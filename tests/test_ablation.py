"""The ablations' parts: the random arm (the same selection code driven by a seeded random annotator, so only
which documents are chosen differs from the annotator's arm), the grouping arms over the same files, the held-out
sets, and docs/ablation.md's tables rebuilt from the committed result JSON (the whole ablations run in
`python -m megatron_snow ablation`; their results at tiny scale are docs/ablation.md and docs/ablation/*.json)."""
from __future__ import annotations

import gzip
import json

import pytest

from pathlib import Path

from megatron_snow import records
from megatron_snow.ablation import AblationConfig, grouped_dataset, heldout_sets, random_scores, render_tables
from megatron_snow.config import ConfigError


def _scores_dir(d, rows_per_shard):
    d.mkdir(parents=True)
    n, shards = 0, []
    for i, k in enumerate(rows_per_shard):
        shards.append({"name": f"part-{i:05d}.jsonl.gz", "records": k, "content_bytes": 0})
        rows = [{"id": f"doc{n + j}", "language": "python", "bytes": 10, "score": 0.9 - 0.01 * (n + j),
                 "window_scores": [0.5], "dropped": None} for j in range(k)]
        n += k
        with gzip.open(d / f"part-{i:05d}.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    (d / "manifest.json").write_text(json.dumps({"kind": "annotator-scores", "model": "m", "records": n,
                                                    "format": "megatron-snow-records-v1", "shards": shards}))
    return d


def _read(d):
    rows = []
    for p in sorted(d.glob("part-*.jsonl.gz")):
        with gzip.open(p, "rt") as f:
            rows += [json.loads(line) for line in f]
    return rows


def test_random_scores_keep_rows_and_order_and_only_reshuffle_the_ranking(tmp_path):
    src = _scores_dir(tmp_path / "scores", [30, 25])
    a = _read(random_scores(src, tmp_path / "r1", seed=1))
    b = _read(random_scores(src, tmp_path / "r1b", seed=1))
    c = _read(random_scores(src, tmp_path / "r2", seed=2))
    orig = _read(src)
    assert [(r["id"], r["language"], r["bytes"]) for r in a] == [(r["id"], r["language"], r["bytes"]) for r in orig]
    assert a == b and [r["score"] for r in a] != [r["score"] for r in c]  # seeded: same seed, same scores
    ranked = [r["id"] for r in sorted(a, key=lambda r: -r["score"])]
    assert ranked != [r["id"] for r in orig]  # the annotator's order (descending) is not kept
    assert all(0.0 <= r["score"] < 1.0 for r in a)
    assert json.loads((tmp_path / "r1/manifest.json").read_text())["model"] == "random(seed=1)"


def test_heldout_sets_are_benchmark_solutions(tmp_path, benchmarks_dir):
    cfg = AblationConfig(corpus=str(tmp_path / "none"), benchmarks_dir=str(benchmarks_dir), heldout_docs=0,
                         benchmarks=["humanevalplus"])
    (tmp_path / "none").mkdir()
    sets = heldout_sets(cfg, [])
    assert len(sets["humanevalplus"]) == 164 and "def has_close_elements" in sets["humanevalplus"][0]


@pytest.mark.parametrize("bad", [{"budget_tokens": 0}, {"repetition": 0}, {"seeds": [1, 1]}, {"seeds": []},
                                 {"arms": ["random", "nonsense"]}, {"kind": "grouping", "arms": ["annotator"]},
                                 {"heldout_fraction": 0.0}, {"threads": 0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        AblationConfig(**bad)


def test_heldout_loss_in_padded_batches_equals_one_window_at_a_time(tmp_path):
    """Batching is only for speed: padding at the end of a window must not change any real position's loss."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from megatron_snow.ablation import cached_heldout_loss, heldout_loss

    texts = [f"def f{i}(x):\n    return x * {i} + {'y' * i}\n" * (1 + i % 5) for i in range(30)]
    (tmp_path / "corpus.txt").write_text("".join(texts) * 3)
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "sp"),
                                   vocab_size=120, model_type="bpe", minloglevel=2)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, max_position_embeddings=64)).save_pretrained(tmp_path / "hf")
    tok = str(tmp_path / "sp.model")
    one = heldout_loss(tmp_path / "hf", tok, texts, seq_length=16, batch_size=1)
    batched = heldout_loss(tmp_path / "hf", tok, texts, seq_length=16, batch_size=8)
    assert batched == pytest.approx(one, rel=1e-5)
    assert cached_heldout_loss(tmp_path / "hf", tok, "s", texts, 16) == pytest.approx(one, rel=1e-5)
    assert json.loads((tmp_path / "hf" / "heldout_loss.json").read_text())  # remembered for the next seeds


def test_every_kind_runs_every_arm_by_default():
    assert AblationConfig().arms == ["none", "random", "annotator", "annotator_1x"]
    assert AblationConfig(kind="grouping").arms == ["language_repo", "repo"]


def test_grouping_arms_group_the_same_files_and_hold_out_the_same_ones(tmp_path):
    corpus = tmp_path / "files"
    files = [records.CodeRecord(f"f{i}", f"v{i} = {i}\n", "python" if i % 3 else "c", repo=f"r{i % 4}",
                                path=f"p{i}") for i in range(60)]
    records.write_manifest(corpus, [records.write_shard(corpus / records.shard_name(0), files)])
    by_lang, held_a = grouped_dataset(corpus, tmp_path / "a", "language_repo", 0.2)
    by_repo, held_b = grouped_dataset(corpus, tmp_path / "b", "repo", 0.2)
    assert held_a == held_b and 0 < len(held_a) < 60  # the same held-out files for both arms
    docs_a, docs_b = list(records.iter_records(by_lang)), list(records.iter_records(by_repo))
    ids = lambda docs: sorted(i for d in docs for i in d.meta["file_ids"])  # noqa: E731
    assert ids(docs_a) == ids(docs_b) and len(ids(docs_a)) == 60 - len(held_a)  # the same training files
    assert len(docs_a) == 8 and len(docs_b) == 4  # 4 repositories x 2 languages, or 4 repositories
    assert all(set(d.meta["languages"]) == {"c", "python"} for d in docs_b)


DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_doc_tables_are_rebuilt_from_the_committed_results():
    """Every table of docs/ablation.md is render_tables of a committed JSON result: shown = measured."""
    doc = (DOCS / "ablation.md").read_text()
    artefacts = sorted((DOCS / "ablation").glob("*.json"))
    assert {p.stem for p in artefacts} == {"grouping", "selection"}
    for path in artefacts:
        result = json.loads(path.read_text())
        start, end = f"<!-- table from ablation/{path.name} -->\n", f"<!-- end of table from ablation/{path.name} -->"
        assert start in doc and end in doc, path.name
        shown = doc.split(start, 1)[1].split(end, 1)[0]
        assert shown.strip() == render_tables(result).strip(), path.name
        assert len(result["config"]["seeds"]) >= 3
        for by_arm in result["summary"].values():
            for arm, v in by_arm.items():
                assert len(v["values"]) == (1 if arm == "none" else len(result["config"]["seeds"]))
