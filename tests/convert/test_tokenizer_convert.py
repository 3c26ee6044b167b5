"""Our SentencePiece tokenizer as a Hugging Face fast tokenizer: the same ids and the same decoded
text on code of all 18 recipe languages (tabs, runs of spaces, CRLF, digits, non-ASCII, a literal
U+2581) and real files, special tokens at the same ids, loaded by AutoTokenizer with no custom code."""
from __future__ import annotations

import json

import pytest

from code_samples import SAMPLES
from megatron_snow.phase1.languages import RECIPE_LANGUAGES
from megatron_snow.tokenization import load_tokenizer
from megatron_snow.tokenization.tokenizer import BOS, EOD, FILE_SEP, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX, PAD


@pytest.fixture(scope="module")
def hf_dir(sp_model, tmp_path_factory):
    from megatron_snow.convert.hf_tokenizer import write_hf_tokenizer

    out = tmp_path_factory.mktemp("hf_tok")
    ids = write_hf_tokenizer(sp_model, out, model_max_length=4096)
    assert ids == {"eos_token_id": 2, "pad_token_id": 3, "bos_token_id": 1}
    return out


def test_same_ids_and_text_on_code_of_every_language(sp_model, hf_dir, code_texts):
    from transformers import AutoTokenizer

    ours = load_tokenizer(sp_model)
    hf = AutoTokenizer.from_pretrained(hf_dir)  # a plain PreTrainedTokenizerFast: no custom code
    assert {lang for _, lang, _ in code_texts} >= set(RECIPE_LANGUAGES)
    for name, lang, text in code_texts:
        ids = ours.encode(text)
        assert hf(text)["input_ids"] == ids, f"{name} ({lang}): ids differ"
        assert hf.decode(ids) == ours.decode(ids) == text, f"{name} ({lang}): decoded text differs"
    # the cases that break the usual Llama conversion, one by one
    for text in ["\u2581", "a\u2581b", " \u2581 ", "\u2581\u2581x", "\t\t  \r\n\r\n", "1234567890", "\u00e9\U0001f680"]:
        assert hf(text)["input_ids"] == ours.encode(text), repr(text)
        assert hf.decode(hf(text)["input_ids"]) == text, repr(text)
    meta_bytes = [ours.token_to_id(f"<0x{b:02X}>") for b in "\u2581".encode()]
    assert hf("\u2581")["input_ids"] == meta_bytes  # a literal U+2581 stays itself, not a space
    assert "\u2581" in SAMPLES["python"] and "\r\n" in SAMPLES["java"] and "\t" in SAMPLES["go"]


def test_special_tokens_keep_their_ids(sp_model, hf_dir):
    from transformers import AutoTokenizer

    ours = load_tokenizer(sp_model)
    hf = AutoTokenizer.from_pretrained(hf_dir)
    for token in (BOS, EOD, PAD, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILE_SEP):
        assert hf.convert_tokens_to_ids(token) == ours.token_to_id(token), token
    assert (hf.eos_token_id, hf.pad_token_id, hf.bos_token_id) == (ours.eod_id, ours.pad_id, ours.bos_id) == (2, 3, 1)
    # nothing added around the text, and the file separator is matched in text as in SentencePiece
    text = "<file_sep>a.py\nx = 1\n"
    assert hf(text)["input_ids"] == ours.encode(text) and hf(text)["input_ids"][0] == ours.file_sep_id
    # control tokens written in source code stay text (a file cannot end a document early) ...
    literal = f"s = '{EOD}{PAD}{FIM_PREFIX}'"
    assert hf(literal)["input_ids"] == ours.encode(literal)
    assert not {ours.eod_id, ours.pad_id, ours.fim_prefix_id} & set(hf(literal)["input_ids"])
    # ... and inserted by id they decode to their names, or vanish when skipped
    ids = ours.encode("a = 1\n") + [ours.eod_id, ours.fim_middle_id]
    assert hf.decode(ids) == ours.decode(ids) == "a = 1\n" + EOD + FIM_MIDDLE
    assert hf.decode(ids, skip_special_tokens=True) == "a = 1\n"
    cfg = json.loads((hf_dir / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" not in cfg


def test_non_bpe_or_normalising_models_are_refused(tmp_path, code_texts):
    import io

    import sentencepiece as spm

    from megatron_snow.convert.hf_tokenizer import sentencepiece_to_tokenizers
    from megatron_snow.tokenization.tokenizer import TokenizerError

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([t for _, _, t in code_texts[:30]]), model_writer=model,
                                   model_type="unigram", vocab_size=400, minloglevel=2)
    (tmp_path / "uni.model").write_bytes(model.getvalue())
    with pytest.raises(TokenizerError, match="model_type UNIGRAM .*add_dummy_prefix on"):
        sentencepiece_to_tokenizers(tmp_path / "uni.model")


@pytest.mark.parametrize("step", ["convert-to-hf", "convert-from-hf"])
def test_steps_are_registered_and_explain_themselves(step, capsys):
    from megatron_snow.__main__ import main

    with pytest.raises(SystemExit) as e:
        main([step, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--load" in out and "--save" in out and "Memory" in out
