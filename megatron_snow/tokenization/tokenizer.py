"""One tokenizer interface over SentencePiece ``.model`` and Hugging Face ``tokenizer.json`` files.

Everything downstream (index building, training, annotation, evaluation) goes
through ``CodeTokenizer``, so the choice of backend is a file path and nothing
else. Encoding never adds BOS/EOS: the index builder appends ``eod_id`` itself.

Special tokens. Tokenizers trained by ``megatron_snow.tokenization.train`` reserve
the names below, at fixed ids: ``<unk>`` 0, ``<s>`` 1, ``<|endoftext|>`` 2,
``<|pad|>`` 3, then the FIM tokens and ``<file_sep>``. The model's own
``unk`` / ``bos`` / ``eos`` / ``pad`` fields name the first four, so tools that
ask SentencePiece for ``eos_id()`` (Megatron-LM's ``GPTSentencePieceTokenizer``
and ``Llama2Tokenizer``, megatron-core's ``SentencePieceTokenizer``) and the
converted Hugging Face tokenizer (``megatron_snow.convert``) find the same
end-of-document id as ours. BOS is never put into our data; it exists because
those tools prepend one (Llama2Tokenizer by default). Begin/end of document,
padding and the fill-in-the-middle tokens are SentencePiece *control* symbols:
text never encodes to them (a source file that contains the literal string
``<|endoftext|>`` cannot end a document), they are only inserted by id. The
file separator is a *user-defined* symbol: the string ``<file_sep>`` that
repository grouping (``phase1/grouping.py``) puts before each file encodes to
that single id. For a Hugging Face tokenizer.json the same rule holds: its
*special* added tokens are never matched in text.
``decode`` writes every special id back as its string, so
``decode(encode(text)) == text`` holds exactly and special ids stay visible.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

UNK = "<unk>"
BOS = "<s>"
EOD = "<|endoftext|>"
PAD = "<|pad|>"
FILE_SEP = "<file_sep>"  # what phase-1 grouping puts before every file of a repository document
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_PAD = "<|fim_pad|>"

# Inserted by id only (never produced from text).
CONTROL_TOKENS = (BOS, EOD, PAD, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD)
# Matched in text.
USER_DEFINED_TOKENS = (FILE_SEP,)
SPECIAL_TOKENS = CONTROL_TOKENS + USER_DEFINED_TOKENS

_META = "\u2581"  # SentencePiece's whitespace symbol


def sentencepiece_special_args(extra_user_defined: Sequence[str] = ()) -> dict:
    """SentencePieceTrainer arguments that place the special pieces (ids in the module docstring).

    unk/bos/eos/pad are the model's own fields (what ``sp.eos_id()`` etc. return);
    SentencePiece refuses one piece in two roles, so BOS is a piece of its own.
    """
    return dict(
        unk_id=0, unk_piece=UNK,
        bos_id=1, bos_piece=BOS,
        eos_id=2, eos_piece=EOD,
        pad_id=3, pad_piece=PAD,
        control_symbols=[t for t in CONTROL_TOKENS if t not in (BOS, EOD, PAD)],
        user_defined_symbols=list(USER_DEFINED_TOKENS) + list(extra_user_defined),
    )

# Names tried, in order, to find end-of-document / padding in a foreign tokenizer.json.
_EOD_CANDIDATES = (EOD, "</s>", "<eos>", "<|end_of_text|>", "<|eos|>", "[SEP]")
_PAD_CANDIDATES = (PAD, "<pad>", "<|padding|>", "[PAD]")


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used; the message says which file and why."""


class CodeTokenizer:
    """A SentencePiece or Hugging Face tokenizer behind one small interface.

    Attributes: ``vocab_size`` (all ids lie in ``[0, vocab_size)``), ``eod_id``,
    ``pad_id``, ``bos_id``, ``file_sep_id`` / ``fim_*_id`` (``None`` when the tokenizer lacks
    them), ``path`` and ``backend`` ("sentencepiece" or "huggingface").
    """

    def __init__(self, path: str | Path, model_bytes: bytes | None = None):
        self.path = str(path)
        data = model_bytes if model_bytes is not None else Path(path).read_bytes()
        self._bytes = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        if _looks_like_json(data):
            self.backend = "huggingface"
            self._init_hf(data)
        else:
            self.backend = "sentencepiece"
            self._init_sp(data)
        # A SentencePiece model that names its eos/pad/bos (ours do) is read as Megatron-LM reads it;
        # older models and tokenizer.json files are searched by name.
        own = self._sp_own_ids() if self.backend == "sentencepiece" else {}
        self.eod_id = own.get("eos", None)
        if self.eod_id is None:
            self.eod_id = self._find(_EOD_CANDIDATES, required=True, what="end-of-document")
        pad = own.get("pad", None)
        if pad is None:
            pad = self._find(_PAD_CANDIDATES, required=False, what="padding")
        self.pad_id = self.eod_id if pad is None else pad
        self.bos_id = own.get("bos", None)
        if self.bos_id is None:
            self.bos_id = self.token_to_id(BOS)
        self.file_sep_id = self.token_to_id(FILE_SEP)
        self.fim_prefix_id = self.token_to_id(FIM_PREFIX)
        self.fim_middle_id = self.token_to_id(FIM_MIDDLE)
        self.fim_suffix_id = self.token_to_id(FIM_SUFFIX)
        self.fim_pad_id = self.token_to_id(FIM_PAD)

    # -- backends ----------------------------------------------------------
    def _init_sp(self, data: bytes) -> None:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(data)
        except Exception as e:  # the C++ error text is not helpful on its own
            raise TokenizerError(f"{self.path}: not a SentencePiece model or tokenizer.json ({e})") from None
        self._sp = sp
        self.vocab_size = sp.get_piece_size()
        # Control ids decode to "" in SentencePiece; keep them visible instead.
        self._special = {i: sp.id_to_piece(i) for i in range(self.vocab_size) if sp.is_control(i)}
        # SentencePiece writes spaces as U+2581 and decodes every U+2581 back to a space, so a literal
        # U+2581 in source text (sparkline characters) would not round-trip. It is encoded as its
        # three UTF-8 byte pieces instead, which decode to the character itself.
        meta = [sp.piece_to_id(f"<0x{b:02X}>") for b in _META.encode("utf-8")]
        self._meta_ids = meta if all(sp.is_byte(i) for i in meta) else None

    def _init_hf(self, data: bytes) -> None:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:
            raise TokenizerError(f"{self.path}: not a valid Hugging Face tokenizer.json ({e})") from None
        # Same rule as SentencePiece control symbols: a special token's string inside source text is
        # encoded as ordinary text, so a file quoting "<|endoftext|>" cannot end a document early.
        # Added tokens marked non-special (a file separator, say) are still matched in text.
        if hasattr(tok, "encode_special_tokens"):
            tok.encode_special_tokens = True
        # A tokenizer.json may carry truncation or padding settings (a BERT encoder's does):
        # counting and indexing need every token of a document, unpadded.
        tok.no_truncation()
        tok.no_padding()
        self._hf = tok
        vocab = tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        self._special = {}  # the HF decoder already renders special tokens when asked to

    def _sp_own_ids(self) -> dict:
        """The model's own eos/pad/bos ids (SentencePiece says -1 for "none")."""
        sp = self._sp
        ids = {"eos": sp.eos_id(), "pad": sp.pad_id(), "bos": sp.bos_id()}
        return {k: v for k, v in ids.items() if 0 <= v < self.vocab_size}

    def _find(self, names: Sequence[str], required: bool, what: str) -> int | None:
        for name in names:
            i = self.token_to_id(name)
            if i is not None:
                return i
        if required:
            raise TokenizerError(f"{self.path}: no {what} token (looked for {', '.join(names)})")
        return None

    # -- the interface -----------------------------------------------------
    def token_to_id(self, token: str) -> int | None:
        """Id of a whole token string, or None when the vocabulary lacks it."""
        if self.backend == "sentencepiece":
            i = self._sp.piece_to_id(token)
            return None if i == self._sp.unk_id() and token != self._sp.id_to_piece(i) else i
        return self._hf.token_to_id(token)

    def id_to_token(self, i: int) -> str:
        return self._sp.id_to_piece(int(i)) if self.backend == "sentencepiece" else self._hf.id_to_token(int(i))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; no BOS/EOD added."""
        if self.backend == "sentencepiece":
            if _META in text and self._meta_ids:
                return self._encode_with_meta(text)
            return self._sp.encode(text)
        return self._hf.encode(text, add_special_tokens=False).ids

    def _encode_with_meta(self, text: str) -> list[int]:
        out: list[int] = []
        for k, part in enumerate(text.split(_META)):
            if k:
                out.extend(self._meta_ids)
            if part:
                out.extend(self._sp.encode(part))
        return out

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        """Ids of many texts; ``num_threads`` caps the backend's threads (None: backend default)."""
        if not texts:
            return []
        if self.backend == "sentencepiece":
            out = self._sp.encode(list(texts), num_threads=-1 if num_threads is None else num_threads)
            if self._meta_ids:
                for k, t in enumerate(texts):
                    if _META in t:
                        out[k] = self._encode_with_meta(t)
            return out
        if num_threads == 1:
            return [e.ids for e in (self._hf.encode(t, add_special_tokens=False) for t in texts)]
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special ids are written as their token strings."""
        ids = [int(i) for i in ids]
        if self.backend == "huggingface":
            return self._hf.decode(ids, skip_special_tokens=False)
        if not any(i in self._special for i in ids):
            return self._sp.decode(ids)
        out, run = [], []
        for i in ids:
            if i in self._special:
                out.append(self._sp.decode(run))
                out.append(self._special[i])
                run = []
            else:
                run.append(i)
        out.append(self._sp.decode(run))
        return "".join(out)

    # megatron-core's dataset classes read these names (GPTDatasetConfig.tokenizer).
    @property
    def eod(self) -> int:
        return self.eod_id

    @property
    def pad(self) -> int:
        return self.pad_id

    @property
    def unique_identifiers(self) -> dict:
        """What megatron-core hashes into its dataset cache names: the model's bytes, not its path."""
        return {"class": "CodeTokenizer", "backend": self.backend, "sha256": self.sha256}

    def tokenize(self, text: str) -> list[int]:
        return self.encode(text)

    def detokenize(self, ids: Iterable[int]) -> str:
        return self.decode(ids)

    # Workers receive the model bytes, not a live C++ object.
    def __getstate__(self) -> dict:
        return {"path": self.path, "model_bytes": self._bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["model_bytes"])

    def __repr__(self) -> str:
        return (f"CodeTokenizer({self.path!r}, backend={self.backend}, vocab_size={self.vocab_size}, "
                f"eod_id={self.eod_id})")


def _looks_like_json(data: bytes) -> bool:
    return data[:64].lstrip()[:1] == b"{"


def load_tokenizer(path: str | Path) -> CodeTokenizer:
    """Load a SentencePiece ``.model`` or a Hugging Face ``tokenizer.json`` (or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        for name in ("tokenizer.model", "tokenizer.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise TokenizerError(f"{path}: directory holds no tokenizer.model or tokenizer.json")
    if not p.is_file():
        raise TokenizerError(f"{path}: tokenizer file not found")
    return CodeTokenizer(os.fspath(p))
