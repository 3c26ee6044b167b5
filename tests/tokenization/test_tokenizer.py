"""The code tokenizer: exact round trips of real code, code-specific settings, both backends, training determinism."""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_snow.stages import RANKS_FILE, StaleOutputError, StepError

from megatron_snow.tokenization import TokenizerError, load_tokenizer
from megatron_snow.tokenization.tokenizer import CONTROL_TOKENS, EOD, FILE_SEP, FIM_MIDDLE, PAD
from megatron_snow.tokenization.train import (
    TrainTokenizerConfig,
    run_dir,
    sample_documents,
    split_for_training,
    train_tokenizer,
)

from tok_corpus import EDGE_CASES


def test_sentencepiece_round_trips_real_code_exactly(sp_model, code_corpus):
    tok = load_tokenizer(sp_model)
    texts = [t for _, _, t in code_corpus] + EDGE_CASES
    failures = [name for (name, _, t) in code_corpus if tok.decode(tok.encode(t)) != t]
    failures += [repr(t[:40]) for t in EDGE_CASES if tok.decode(tok.encode(t)) != t]
    assert not failures, f"not round-tripped: {failures}"
    # batch encoding gives the same ids as one-by-one
    assert tok.encode_batch(texts, num_threads=2) == [tok.encode(t) for t in texts]
    assert all(0 <= i < tok.vocab_size for ids in tok.encode_batch(texts) for i in ids)


def test_sentencepiece_code_settings(sp_model):
    tok = load_tokenizer(sp_model)
    assert tok.backend == "sentencepiece" and tok.vocab_size == 2000
    # reserved ids, distinct
    ids = [tok.eod_id, tok.pad_id, tok.file_sep_id, tok.fim_prefix_id, tok.fim_middle_id, tok.fim_suffix_id,
           tok.fim_pad_id]
    assert None not in ids and len(set(ids)) == len(ids)
    assert tok.token_to_id(EOD) == tok.eod_id and tok.token_to_id(PAD) == tok.pad_id
    # control tokens are never produced from text; the file separator is
    literal = "".join(CONTROL_TOKENS)
    assert not set(tok.encode(literal)) & {tok.eod_id, tok.pad_id, tok.fim_prefix_id, tok.fim_middle_id}
    assert tok.encode(FILE_SEP) == [tok.file_sep_id]
    # special ids stay visible when decoded
    assert tok.decode(tok.encode("a") + [tok.eod_id]) == "a" + EOD
    assert tok.decode([tok.fim_middle_id]) == FIM_MIDDLE
    # digits are split one per token
    pieces = [tok.id_to_token(i) for i in tok.encode("x = 1234567890")]
    assert all(len(p.strip("\u2581")) <= 1 for p in pieces if any(c.isdigit() for c in p)), pieces
    # byte fallback: unseen characters become byte pieces, never <unk>
    unk = tok._sp.unk_id()
    assert unk not in tok.encode("\u16a0\u16a1 \U0001d518 \u0e01")
    # whitespace-only pieces (indentation) and pieces holding a newline were learned
    vocab = [tok.id_to_token(i) for i in range(tok.vocab_size)]
    assert any(p and set(p) == {"\u2581"} and len(p) >= 4 for p in vocab)
    assert any("\n" in p for p in vocab)
    # no whitespace normalisation: indentation costs tokens in proportion, not collapsed
    assert tok.decode(tok.encode("a" + " " * 7 + "b")) == "a" + " " * 7 + "b"


def test_huggingface_tokenizer_json_is_accepted(hf_tokenizer_json, code_corpus):
    tok = load_tokenizer(hf_tokenizer_json)
    assert tok.backend == "huggingface"
    assert tok.eod_id == tok.token_to_id("<|endoftext|>") and tok.pad_id == tok.token_to_id("<|pad|>")
    for name, _, text in code_corpus:
        assert tok.decode(tok.encode(text)) == text, name
    texts = [t for _, _, t in code_corpus[:5]]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts] == tok.encode_batch(texts, num_threads=1)
    # a directory holding tokenizer.json works too
    assert load_tokenizer(hf_tokenizer_json.parent).vocab_size == tok.vocab_size


def test_huggingface_truncation_and_padding_settings_are_ignored(hf_tokenizer_json, tmp_path):
    """A tokenizer.json saved with truncation/padding (as a BERT encoder's is) must still count every token."""
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(hf_tokenizer_json))
    reference = load_tokenizer(hf_tokenizer_json).encode("x = 1\n" * 500)
    hf.enable_truncation(max_length=16)
    hf.enable_padding(length=64, pad_id=hf.token_to_id("<|pad|>"), pad_token="<|pad|>")
    truncated = tmp_path / "tokenizer.json"
    hf.save(str(truncated))
    tok = load_tokenizer(truncated)
    assert len(reference) > 64
    assert tok.encode("x = 1\n" * 500) == reference
    assert tok.encode_batch(["a", "x = 1\n" * 500]) == [tok.encode("a"), reference]


def test_tokenizer_pickles_for_worker_processes(sp_model, hf_tokenizer_json):
    for path in (sp_model, hf_tokenizer_json):
        tok = load_tokenizer(path)
        copy = pickle.loads(pickle.dumps(tok))
        assert copy.encode("def f():\n\treturn 1\n") == tok.encode("def f():\n\treturn 1\n")
        assert (copy.eod_id, copy.vocab_size, copy.sha256) == (tok.eod_id, tok.vocab_size, tok.sha256)


def test_bad_tokenizer_files_give_one_line_errors(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00\x01not a model")
    with pytest.raises(TokenizerError, match="junk.model"):
        load_tokenizer(junk)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(broken)
    # a valid tokenizer.json without any end-of-document token
    from tokenizers import Tokenizer, models

    t = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    t.save(str(tmp_path / "noeod.json"))
    with pytest.raises(TokenizerError, match="end-of-document"):
        load_tokenizer(tmp_path / "noeod.json")


def test_training_is_deterministic_and_sample_is_bounded(corpus_records, tmp_path):
    records, docs = corpus_records
    # default num_threads (8): SentencePiece's result depends on it, the same value gives the same bytes
    cfg = dict(inputs=[str(records)], vocab_size=1000, sample_bytes=400_000, max_sentence_length=2048)
    a = train_tokenizer(TrainTokenizerConfig(output=str(tmp_path / "a.model"), seed=1, **cfg))
    b = train_tokenizer(TrainTokenizerConfig(output=str(tmp_path / "b.model"), seed=1, **cfg))
    c = train_tokenizer(TrainTokenizerConfig(output=str(tmp_path / "c.model"), seed=2, **cfg))
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    assert a["sha256"] == b["sha256"] != c["sha256"]
    assert a["sample_bytes"] <= 400_000 and a["sample_documents"] < a["eligible_documents"]
    assert a["funnel"]["languages"]["text"]["dropped:empty"][0] == 1  # the empty edge case is counted


def test_sample_is_order_independent_and_within_budget():
    rng = random.Random(0)
    docs = [(f"id{i}", "x" * rng.randint(1, 500)) for i in range(400)]
    s1 = sample_documents(docs, 20_000, seed=3)
    shuffled = docs[:]
    rng.shuffle(shuffled)
    assert sample_documents(shuffled, 20_000, seed=3) == s1
    assert sum(len(t) for t in s1) <= 20_000 and len(s1) > 10
    assert sample_documents(docs, 20_000, seed=4) != s1
    assert len(sample_documents(docs, 10**9, seed=3)) == len(docs)


def test_split_for_training_keeps_text_and_bound():
    text = "short line\n" + "é" * 3000 + "\n" + "tail\tline  \n" * 50
    chunks = list(split_for_training(text, 256))
    assert "".join(chunks) == text
    assert all(len(c.encode("utf-8")) <= 256 for c in chunks)
    assert chunks[0].endswith("\n")


def test_training_rejects_empty_input(tmp_path, make_jsonl):
    src = make_jsonl(tmp_path / "empty.jsonl", [{"text": ""}, {"other": "x"}])
    with pytest.raises(StepError, match="nothing to train on") as e:
        train_tokenizer(TrainTokenizerConfig(inputs=[str(src)], output=str(tmp_path / "t.model"), vocab_size=500))
    assert e.value.exit_code == 2 and not (tmp_path / "t.model").exists()


def test_megatron_and_hugging_face_read_the_same_ids_as_ours(sp_model, code_corpus, tmp_path):
    """Issue 17: the model's own unk/bos/eos/pad fields are ours, so Megatron-LM and Hugging Face
    need no custom code. Megatron-LM's GPTSentencePieceTokenizer (megatron/training/tokenizer, not in
    the megatron-core wheel) is reproduced through the same SentencePiece calls it makes
    (encode_as_ids, eos_id() as EOD, bos_id() / pad_id()); megatron-core's own SentencePieceTokenizer
    is used as installed. Each side encodes every document and appends its EOD."""
    import sentencepiece as spm
    from megatron.core.tokenizers import MegatronTokenizer
    from transformers import AutoTokenizer, LlamaTokenizer

    from megatron_snow.convert.hf_tokenizer import write_hf_tokenizer
    from megatron_snow.tokenization.tokenizer import BOS, UNK

    ours = load_tokenizer(sp_model)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    assert ((sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id())
            == (0, ours.bos_id, ours.eod_id, ours.pad_id) == (0, 1, 2, 3))
    assert [sp.id_to_piece(i) for i in range(4)] == [UNK, BOS, EOD, PAD]
    core = MegatronTokenizer.from_pretrained(tokenizer_path=str(sp_model), metadata_path={"library": "sentencepiece"})
    assert (core.eod, core.bos, core.pad) == (ours.eod_id, ours.bos_id, ours.pad_id)
    write_hf_tokenizer(sp_model, tmp_path / "hf")
    hf = AutoTokenizer.from_pretrained(tmp_path / "hf")
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "tokenizer.model").write_bytes(sp_model.read_bytes())
    llama = LlamaTokenizer.from_pretrained(tmp_path / "llama", add_prefix_space=False, add_bos_token=False,
                                           eos_token=EOD, pad_token=PAD, split_special_tokens=True)
    assert (hf.eos_token_id, llama.eos_token_id, llama.bos_token_id) == (ours.eod_id, ours.eod_id, ours.bos_id)

    texts = [t for _, _, t in code_corpus] + [t for t in EDGE_CASES if t]
    literal_meta = 0
    for text in texts:
        want = ours.encode(text) + [ours.eod_id]
        assert hf(text)["input_ids"] + [hf.eos_token_id] == want
        gpt_sp = sp.encode_as_ids(text) + [sp.eos_id()]  # Megatron-LM GPTSentencePieceTokenizer + --append-eod
        llama2 = [sp.bos_id()] + sp.encode(text) + [sp.eos_id()]  # Megatron-LM Llama2Tokenizer(bos=True) + EOD
        if "\u2581" in text:
            # The one known difference: raw SentencePiece reads a literal U+2581 as its space symbol
            # and decodes it to " "; ours keeps the character (as its UTF-8 bytes).
            literal_meta += 1
            assert gpt_sp != want and sp.decode(gpt_sp[:-1]) != text and ours.decode(want[:-1]) == text
            continue
        assert gpt_sp == want
        assert llama2 == [ours.bos_id] + want
        assert core.tokenize(text) + [core.eod] == want
        assert llama(text)["input_ids"] + [llama.eos_token_id] == want
    assert literal_meta == 1 and len(texts) > 80


REPO = Path(__file__).resolve().parents[2]
SMALL = ["vocab_size=600", "sample_bytes=200000", "num_threads=1", "progress=false"]


def _cli(args: list[str], kill_after: int | None = None, ranks: int = 1) -> subprocess.CompletedProcess:
    """train-tokenizer; with ``kill_after``, each process SIGKILLs itself after its Nth unit marker."""
    cmd = [sys.executable, "-m", "megatron_snow", "train-tokenizer", *args]
    env = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1"}
    if kill_after:
        env["MEGATRON_SNOW_KILL"] = f"unit.marker_written:*@{kill_after}"
    if ranks > 1:
        cmd = ["mpiexec", "-n", str(ranks)] + cmd
        env.pop("MEGATRON_SNOW_NO_MPI")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def small_model(corpus_records, tmp_path_factory) -> Path:
    """The reference: a small tokenizer trained by one uninterrupted process."""
    out = tmp_path_factory.mktemp("small") / "ref.model"
    r = _cli(["--input", str(corpus_records[0]), "--output", str(out), *SMALL])
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_training_resumes_after_sigkill_and_refuses_stale_output(corpus_records, small_model, tmp_path):
    """Units are the input's shards: SIGKILL after 4, the same command does only the others, and the
    model bytes equal the uninterrupted run's; other settings or input content are refused in one line."""
    records = corpus_records[0]
    out = tmp_path / "tok.model"
    args = ["--input", str(records), "--output", str(out), *SMALL]
    assert _cli(args, kill_after=4).returncode == -9
    work = run_dir(out) / "_work"
    done = {p.name: p.stat().st_mtime_ns for p in work.glob("*") if p.name.startswith(("unit-", "sample-"))}
    assert len(done) == 8 and not out.exists()
    r = _cli(args)
    assert r.returncode == 0, r.stderr[-2000:]
    n_units = len(list(records.glob("part-*.jsonl.gz")))
    ranks = json.loads((run_dir(out) / RANKS_FILE).read_text())["ranks"]
    assert ranks[0]["units"] == list(range(4, n_units)) and n_units > 5
    assert out.read_bytes() == small_model.read_bytes()
    assert not work.exists()  # the units' samples are removed once the model is written
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["funnel"]["stage"] == "train_tokenizer" and report["sha256"] == load_tokenizer(out).sha256

    r = _cli(["--input", str(records), "--output", str(out), *SMALL, "vocab_size=700"])
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "was made with other settings (vocab_size: 600 -> 700); re-run with --force" in r.stderr
    changed = tmp_path / "changed"
    shutil.copytree(records, changed)
    cfg = TrainTokenizerConfig(inputs=[str(changed)], output=str(out), vocab_size=600, sample_bytes=200_000,
                               num_threads=1, progress=False)
    train_tokenizer(cfg)  # another path, the same content: the model is complete already
    m = json.loads((changed / "manifest.json").read_text())
    m["note"] = "re-made"
    (changed / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StaleOutputError, match=r"other inputs \(input: "):
        train_tokenizer(cfg)
    assert train_tokenizer(cfg, force=True)["sha256"] == report["sha256"]
    # a model of unknown origin (no X.step/step.json) is not overwritten
    other = tmp_path / "other.model"
    other.write_bytes(b"mine")
    with pytest.raises(StaleOutputError, match="unknown origin"):
        train_tokenizer(TrainTokenizerConfig(inputs=[str(records)], output=str(other), vocab_size=600))


@pytest.mark.mpi
def test_two_ranks_train_the_same_model(corpus_records, small_model, tmp_path):
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not on PATH")
    out = tmp_path / "mpi.model"
    r = _cli(["--input", str(corpus_records[0]), "--output", str(out), *SMALL], ranks=2)
    assert r.returncode == 0, r.stderr[-2000:]
    ranks = json.loads((run_dir(out) / RANKS_FILE).read_text())
    assert [(x["rank"], x["world_size"]) for x in ranks["ranks"]] == [(0, 2), (1, 2)]
    assert all(x["units"] for x in ranks["ranks"])  # both ranks read and sampled units
    assert out.read_bytes() == small_model.read_bytes()
