"""Our SentencePiece model as a Hugging Face fast tokenizer with the same ids and text.

The converted ``tokenizer.json`` is a byte-fallback BPE over the model's own
pieces and merges, with SentencePiece's whitespace symbol U+2581 written back
as a real space in every piece. Nothing then rewrites the input text: a space
matches the pieces learned for spaces, while a literal U+2581 in source code
matches no piece and falls back to its three UTF-8 bytes, exactly as
``CodeTokenizer`` encodes it (Llama's usual conversion maps both to U+2581 and
loses the difference). No BOS/EOS is added; control pieces (BOS, EOD, padding,
FIM) are special tokens that text never produces (``split_special_tokens``),
and ``<file_sep>`` is an ordinary added token that text does produce, as in
SentencePiece. The directory loads with ``AutoTokenizer.from_pretrained`` as a
plain ``PreTrainedTokenizerFast``: transformers 5's ``LlamaTokenizer`` class
would rebuild the pipeline around U+2581 from vocab and merges alone.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from megatron_snow.tokenization.tokenizer import TokenizerError, load_tokenizer

_META = "\u2581"


def _model_proto(data: bytes):
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(data)
    return m


def _check_convertible(m, path: str) -> None:
    """Exactness holds for the settings our trainer uses; anything else is refused by name."""
    t, n = m.trainer_spec, m.normalizer_spec
    problems = []
    if t.model_type != t.BPE:
        problems.append(f"model_type {t.ModelType.Name(t.model_type)} (BPE needed)")
    if not t.byte_fallback:
        problems.append("byte_fallback off")
    if n.add_dummy_prefix:
        problems.append("add_dummy_prefix on")
    if n.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces on")
    if n.precompiled_charsmap or n.normalization_rule_tsv or n.name not in ("identity", ""):
        problems.append(f"normalization {n.name!r} (identity needed)")
    if t.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix on")
    if problems:
        raise TokenizerError(f"{path}: cannot convert exactly to a Hugging Face tokenizer: {', '.join(problems)}")


def sentencepiece_to_tokenizers(model_path: str | Path):
    """A ``tokenizers.Tokenizer`` equivalent to our SentencePiece BPE model (see module doc)."""
    from tokenizers import AddedToken, Tokenizer, decoders
    from tokenizers.models import BPE

    path = str(model_path)
    m = _model_proto(Path(path).read_bytes())
    _check_convertible(m, path)
    T = type(m.pieces[0]) if m.pieces else None
    vocab: dict[str, int] = {}
    normal: dict[str, tuple[int, float]] = {}  # piece (spaces written back) -> (id, score)
    specials, user_defined = [], []
    for i, p in enumerate(m.pieces):
        if p.type in (T.NORMAL, T.UNUSED):
            text = p.piece.replace(_META, " ")
            if p.type == T.NORMAL:
                normal[text] = (i, p.score)
        else:
            text = p.piece  # <unk>, control, user-defined, <0xNN>
            if p.type in (T.CONTROL, T.UNKNOWN):
                specials.append((i, text))
            elif p.type == T.USER_DEFINED:
                user_defined.append((i, text))
        if text in vocab:
            raise TokenizerError(f"{path}: piece {p.piece!r} collides with another once U+2581 becomes a space")
        vocab[text] = i
    if " " not in normal:
        raise TokenizerError(f"{path}: no piece for a single space (U+2581): cannot convert exactly")
    # SentencePiece BPE merges any two adjacent symbols whose concatenation is a (normal) piece,
    # highest piece score first. As merge rules: every split of every normal piece into two
    # normal pieces, ranked by the merged piece's score (then id, then split point).
    merges = []
    for text, (i, score) in normal.items():
        for k in range(1, len(text)):
            a, b = text[:k], text[k:]
            if a in normal and b in normal:
                merges.append((-score, i, normal[a][0], a, b))
    merges.sort()
    model = BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token=m.pieces[m.trainer_spec.unk_id].piece,
                byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for _, t in sorted(specials)])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for _, t in sorted(user_defined)])
    for i, t in specials + user_defined:
        if tok.token_to_id(t) != i:
            raise TokenizerError(f"{path}: special piece {t!r} would move from id {i} to {tok.token_to_id(t)}")
    return tok


def write_hf_tokenizer(tokenizer_path: str | Path, out_dir: str | Path, model_max_length: int | None = None) -> dict:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` (and a copy of the ``.model``) into ``out_dir``.

    A Hugging Face ``tokenizer.json`` given instead of a ``.model`` is copied as it is.
    Returns the special token ids (what config.json / generation_config.json take).
    """
    from transformers import PreTrainedTokenizerFast

    ours = load_tokenizer(tokenizer_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ours.backend == "sentencepiece":
        backend = sentencepiece_to_tokenizers(ours.path)
        shutil.copyfile(ours.path, out / "tokenizer.model")
    else:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(ours.path)
    names = {"eos_token": ours.id_to_token(ours.eod_id)}
    if ours.pad_id is not None:
        names["pad_token"] = ours.id_to_token(ours.pad_id)
    if ours.bos_id is not None:
        names["bos_token"] = ours.id_to_token(ours.bos_id)
    if ours.backend == "sentencepiece":
        names["unk_token"] = ours.id_to_token(ours._sp.unk_id())
    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
        model_max_length=model_max_length or int(1e30),
        **names,
    )
    hf.save_pretrained(str(out))
    # The generic class name every transformers version (and vLLM) knows; transformers 5 would
    # otherwise write its internal "TokenizersBackend".
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    ids = {"eos_token_id": ours.eod_id, "pad_token_id": ours.pad_id, "bos_token_id": ours.bos_id}
    return ids
