"""Fixtures for the conversion tests: a SentencePiece tokenizer trained by our trainer on code of
all 18 recipe languages (plus real files from this machine), an indexed dataset of that code, and
one torchrun launch (2 gloo processes) that trains and saves several real checkpoints."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from code_samples import HARD_CASES, SAMPLES  # noqa: E402
from convert_helpers import NEW_TOKENS, REPO, VARIANTS, VOCAB, env, prompt_ids, real_files, tiny_overrides  # noqa: E402


@pytest.fixture(scope="session")
def code_texts() -> list[tuple[str, str, str]]:
    """(name, language, text): the 18 written samples, the hard cases and real files."""
    texts = [(f"sample.{lang}", lang, t) for lang, t in SAMPLES.items()]
    texts += [(f"hard-{i}", "text", t) for i, t in enumerate(HARD_CASES)]
    return texts + real_files()


@pytest.fixture(scope="session")
def sp_model(code_texts, tmp_path_factory) -> Path:
    """Our trainer's SentencePiece model (vocabulary 1000) on that code."""
    from megatron_snow.records import CodeRecord, ShardedWriter
    from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    w = ShardedWriter(d / "records", records_per_shard=50)
    for i, (name, lang, text) in enumerate(code_texts):
        # the written samples three times, so their characters and words get pieces
        for k in range(3 if name.startswith(("sample", "hard")) else 1):
            w.add(CodeRecord(id=f"d{i}-{k}", content=text, language=lang, path=name))
    w.close()
    out = d / "code.model"
    train_tokenizer(TrainTokenizerConfig(inputs=[str(d / "records")], output=str(out), vocab_size=VOCAB,
                                         num_threads=2, sample_bytes=3_000_000, max_sentence_length=4096))
    return out


@pytest.fixture(scope="session")
def token_data(sp_model, code_texts, tmp_path_factory) -> Path:
    """The code as a Megatron indexed dataset (each document + EOD)."""
    from megatron_snow.indexed import write_indexed_dataset
    from megatron_snow.tokenization import load_tokenizer

    tok = load_tokenizer(sp_model)
    prefix = tmp_path_factory.mktemp("data") / "code"
    write_indexed_dataset(prefix, [tok.encode(t) + [tok.eod_id] for _, _, t in code_texts], tok.vocab_size)
    return prefix


@pytest.fixture(scope="session")
def variants(sp_model, token_data, tmp_path_factory) -> dict[str, Path]:
    """One torchrun launch (2 processes) training and saving every variant; name -> its work dir."""
    import socket

    work = tmp_path_factory.mktemp("variants")
    tokens, prompt = prompt_ids(sp_model)
    spec = {"work": str(work), "tokens": tokens, "prompt": prompt, "vocab_size": VOCAB, "new_tokens": NEW_TOKENS,
            "variants": {}}
    for name, extra in VARIANTS.items():
        (work / name).mkdir()
        mb = {"training.micro_batch_size": 1} if extra.get("parallel.pipeline_model_parallel_size", 1) > 1 else {}
        spec["variants"][name] = tiny_overrides(work / name, token_data, sp_model, **extra, **mb)
    (work / "spec.json").write_text(json.dumps(spec))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           str(Path(__file__).resolve().parent / "save_variants.py"), str(work / "spec.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(
            f"save_variants failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return {name: work / name for name in VARIANTS}
