"""The phase-3 mix: real indexes from build-index, per-language split, Python ~50%, blend file the trainer reads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_snow import records
from megatron_snow.config import load_config
from megatron_snow.indexed import read_blend_file, read_idx
from megatron_snow.records import CodeRecord
from megatron_snow.synthesis.mixing import main as mix_main
from megatron_snow.tokenization.build_index import BuildIndexConfig, build_index
from megatron_snow.training.config import TrainConfig
from megatron_snow.training.data import apply_blend_file

BUDGET = 40_000


def _tokenizer(path: Path, texts: list[str]) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.save(str(path))
    return path


def _dataset(path: Path, docs: list[CodeRecord]) -> Path:
    records.write_shard(path / records.shard_name(0), docs)
    records.write_manifest(path, [records.shard_entry(path / records.shard_name(0))])
    return path


def _docs(prefix: str, spec: dict[str, int]) -> list[CodeRecord]:
    out = []
    for lang, n in spec.items():
        for i in range(n):
            body = "\n".join(f"value_{lang}_{i}_{k} = compute({k}, {i})  # line {k}" for k in range(5 + 3 * i))
            out.append(CodeRecord(f"{prefix}-{lang}-{i}", body + "\n", lang))
    return out


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    syn = _docs("syn", {"python": 3, "shell": 2, "kotlin": 1})
    p2 = _docs("p2", {"python": 4, "javascript": 5, "shell": 2})
    tok = _tokenizer(root / "tokenizer.json", [d.content for d in syn + p2])
    prefixes = {}
    for name, docs in (("synthetic", syn), ("phase2", p2)):
        ds = _dataset(root / name, docs)
        prefixes[name] = str(root / "idx" / name)
        build_index(BuildIndexConfig(inputs=[str(ds)], output_prefix=prefixes[name], tokenizer=str(tok),
                                     progress=False),
                    log=lambda *a: None)
    return root, prefixes


def test_mix_shares_blend_and_trainer(indexes, tmp_path):
    root, prefixes = indexes
    out = tmp_path / "mix"
    args = [f"synthetic_index={prefixes['synthetic']}", f"phase2_index={prefixes['phase2']}", f"out={out}",
            f"budget_tokens={BUDGET}", "progress=false"]
    assert mix_main(args) == 0
    plan = json.loads((out / "mix_report.json").read_text())
    langs = plan["languages"]
    # Python is half of the planned tokens; the others keep their phase-2 proportions; the total is the budget.
    assert plan["planned_tokens"] == pytest.approx(BUDGET)
    assert langs["python"]["planned_share"] == pytest.approx(0.5)
    p2 = {k: v["phase2_tokens"] for k, v in langs.items() if k != "python" and v["phase2_tokens"]}
    for lang in p2:
        assert langs[lang]["planned_tokens"] / (BUDGET / 2) == pytest.approx(p2[lang] / sum(p2.values()))
    assert langs["kotlin"]["planned_tokens"] == 0 and "left out" in langs["kotlin"]["note"]
    # The synthetic files are used (once at most, as configured) before phase-2 data fills the rest.
    assert 0 < langs["python"]["synthetic_repetition"] <= 1
    # The split loses nothing: per-language datasets hold every token of the inputs.
    for source in ("synthetic", "phase2"):
        split = json.loads((out / f"split-{source}.json").read_text())
        total = int(read_idx(prefixes[source]).sequence_lengths.sum())
        assert sum(v["tokens"] for v in split.values()) == total
        for v in split.values():
            assert int(read_idx(out / v["prefix"]).sequence_lengths.sum()) == v["tokens"]
    # The blend file: the trainer's reader resolves it to a weighted blend and an iteration count.
    entries = read_blend_file(out / "blend.json")
    assert {Path(e.prefix).name for e in entries} == {"synthetic_python", "phase2_python", "synthetic_shell",
                                                      "phase2_shell", "phase2_javascript"}
    assert sum(e.unique_tokens * e.repetition for e in entries) == pytest.approx(BUDGET)
    cfg = load_config(TrainConfig, None, [f"data.blend_file={out / 'blend.json'}", "data.seq_length=32",
                                          "training.train_iters=0", "training.global_batch_size=4",
                                          "training.micro_batch_size=4", "data.split=100,0,0"])
    apply_blend_file(cfg)
    assert cfg.training.train_iters > 0 and len(cfg.data.blend) == len(entries)
    assert sum(w for w, _ in cfg.data.blend) == pytest.approx(1.0)


def test_mix_resume_and_stale_settings(indexes, tmp_path, capsys):
    root, prefixes = indexes
    out = tmp_path / "mix"
    args = [f"synthetic_index={prefixes['synthetic']}", f"phase2_index={prefixes['phase2']}", f"out={out}",
            "progress=false"]
    assert mix_main(args + [f"budget_tokens={BUDGET}"]) == 0
    first = (out / "blend.json").read_text()
    mtime = (out / "synthetic_python.bin").stat().st_mtime_ns
    assert mix_main(args + [f"budget_tokens={BUDGET}"]) == 0  # the split is not redone
    assert (out / "synthetic_python.bin").stat().st_mtime_ns == mtime and (out / "blend.json").read_text() == first
    capsys.readouterr()
    assert mix_main(args + [f"budget_tokens={2 * BUDGET}"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert mix_main(args + [f"budget_tokens={2 * BUDGET}", "--force"]) == 0
    assert mix_main(args + ["python_share=1.5"]) == 2
    assert mix_main([f"synthetic_index={tmp_path / 'none'}", f"phase2_index={prefixes['phase2']}",
                     f"out={tmp_path / 'o2'}"]) == 2
