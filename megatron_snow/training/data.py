"""Training and validation samples from Megatron indexed datasets.

A weighted blend of ``PREFIX.bin/.idx`` datasets goes through megatron-core's
BlendedMegatronDatasetBuilder and GPTDataset (indices cached in
``data.index_cache_dir``). Samples are then read in a fixed order: iteration
``i`` takes global samples ``[i*G, (i+1)*G)``, so the data position of a
resumed run is fully given by its iteration, whatever the DP size.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from megatron_snow.config import ConfigError
from megatron_snow.indexed import IndexFormatError, idx_dtype, read_blend_file, read_idx
from megatron_snow.training.config import TrainConfig


@dataclass
class TokenFacts:
    """What GPTDataset needs from a tokenizer (duck-typed: vocab_size, eod, pad)."""

    vocab_size: int
    eod: int
    pad: int

    @property
    def unique_identifiers(self) -> dict:
        # Part of the dataset description that keys megatron's index cache.
        return {"class": "TokenFacts", "vocab_size": self.vocab_size, "eod": self.eod, "pad": self.pad}


def token_facts(cfg: TrainConfig) -> TokenFacts:
    """vocab size / eod / pad from data.tokenizer_path, else from explicit keys."""
    d = cfg.data
    vocab, eod, pad = cfg.model.vocab_size, d.eod_id, d.pad_id
    if d.tokenizer_path:
        if not Path(d.tokenizer_path).is_file():
            raise ConfigError(f"data.tokenizer_path: file not found: {d.tokenizer_path}")
        from megatron_snow.tokenization.tokenizer import load_tokenizer

        tok = load_tokenizer(d.tokenizer_path)
        if vocab is not None and vocab != tok.vocab_size:
            raise ConfigError(
                f"model.vocab_size ({vocab}) differs from the tokenizer's ({tok.vocab_size}) in {d.tokenizer_path}"
            )
        vocab = tok.vocab_size
        eod = tok.eod_id if eod is None else eod
        pad = tok.pad_id if pad is None else pad
    if vocab is None:
        raise ConfigError("model.vocab_size: not set (give it, or data.tokenizer_path)")
    if eod is None:
        raise ConfigError("data.eod_id: not set (give it, or data.tokenizer_path)")
    # Documents are packed, so the data holds no padding; a pad id shared with EOD would
    # mask EOD out of the loss, so it becomes -1 (never a token), as megatron-core does.
    if pad is None or pad == eod:
        pad = -1
    return TokenFacts(vocab_size=vocab, eod=eod, pad=pad)


def _idx_dtype(prefix: str) -> np.dtype:
    try:
        return idx_dtype(prefix)
    except IndexFormatError as e:
        raise ConfigError(f"data.blend: {e}") from None


def max_token_id(prefix: str, cache_dir: str | None = None, chunk: int = 1 << 26) -> int:
    """The largest id in ``prefix.bin`` (one memmap pass; remembered in cache_dir)."""
    bin_path = Path(prefix + ".bin")
    st = bin_path.stat()
    cache = None
    if cache_dir:
        key = f"{bin_path.resolve()}:{st.st_size}:{int(st.st_mtime)}"
        cache = Path(cache_dir) / f"maxid-{hashlib.md5(key.encode()).hexdigest()}.json"
        if cache.is_file():
            return int(json.loads(cache.read_text())["max_id"])
    dtype = _idx_dtype(prefix)
    if st.st_size == 0:
        return -1
    arr = np.memmap(bin_path, dtype=dtype, mode="r")
    top = -1
    for i in range(0, arr.size, chunk):
        top = max(top, int(arr[i : i + chunk].max()))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"max_id": top}))
        os.replace(tmp, cache)
    return top


def check_data(cfg: TrainConfig, vocab_size: int, scan_tokens: bool = True) -> None:
    """Cheap checks before any model is built: prefixes exist, ids fit the vocabulary.
    A ``data.blend_file`` is resolved first (it sets data.blend and training.train_iters)."""
    apply_blend_file(cfg)
    prefixes, _ = cfg.data.prefixes()
    if not prefixes:
        raise ConfigError("data.blend: empty (give [[weight, prefix], ...])")
    for p in prefixes:
        missing = [s for s in (".bin", ".idx") if not Path(p + s).is_file()]
        if missing:
            raise ConfigError(f"data.blend: dataset prefix {p} not found (missing {p}{missing[0]})")
    for p in prefixes if scan_tokens else []:
        top = max_token_id(p, cfg.data.index_cache_dir)
        if top >= vocab_size:
            raise ConfigError(
                f"data.blend: {p} holds token id {top}, outside the model's vocabulary of {vocab_size} "
                f"(wrong tokenizer or model.vocab_size?)"
            )
    check_split_sizes(cfg.data.split, prefixes)


def check_split_sizes(split: str, prefixes: list[str]) -> None:
    """Every split with a non-zero ratio must get at least one document of every prefix:
    megatron-core's GPTDataset loops forever on a split without tokens."""
    for p in prefixes:
        try:
            n_docs = read_idx(p).sequence_lengths.shape[0]  # GPTDataset splits by sequence
        except IndexFormatError as e:
            raise ConfigError(f"data.blend: {e}") from None
        for name, bounds in zip(("train", "valid", "test"), _split_bounds(split, n_docs)):
            if bounds is not None and bounds[1] <= bounds[0]:
                raise ConfigError(
                    f"data.split {split!r} leaves the {name} split of {p} without documents "
                    f"({n_docs} documents in all): use more data or change data.split"
                )


def _split_bounds(split: str, n_docs: int) -> list[tuple[int, int] | None]:
    """Document ranges of the train/valid/test splits, rounded as BlendedMegatronDatasetBuilder does."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    return [None if b is None else (int(round(b[0] * n_docs)), int(round(b[1] * n_docs))) for b in matrix]


def apply_blend_file(cfg: TrainConfig) -> None:
    """``data.blend_file`` -> ``data.blend``, and ``training.train_iters`` from the requested repetitions.

    GPTDataset would silently cycle through as many epochs as the iteration count
    needs; here the count follows from the file instead: dataset i with ``T_i``
    tokens in its train split, repeated ``r_i`` times, gives
    ``floor((r_i * T_i - 1) / seq_length)`` samples (GPTDataset's arithmetic, one
    extra token per sample), and the run is ``sum_i samples_i // global_batch_size``
    iterations. ``train_iters=0`` takes that number; any other value must equal it.
    The blend weights are the samples' shares. Each prefix's token count must be
    the one the blend file was made for (a stale index is refused).
    """
    d, t = cfg.data, cfg.training
    if not d.blend_file:
        return
    try:
        entries = read_blend_file(d.blend_file)
    except ValueError as e:
        raise ConfigError(f"data.blend_file: {e}") from None
    samples = []
    for e in entries:
        missing = [s for s in (".bin", ".idx") if not Path(e.prefix + s).is_file()]
        if missing:
            raise ConfigError(f"data.blend_file: dataset prefix {e.prefix} not found (no {e.prefix}{missing[0]}: "
                              f"build it with build_index from the selection)")
        try:
            idx = read_idx(e.prefix)
        except IndexFormatError as err:
            raise ConfigError(f"data.blend_file: {err}") from None
        lengths = idx.sequence_lengths
        if int(lengths.sum(dtype=np.int64)) != e.unique_tokens:
            raise ConfigError(
                f"data.blend_file: {e.prefix} holds {int(lengths.sum(dtype=np.int64)):,} tokens, {d.blend_file} was "
                f"made for {e.unique_tokens:,}: rebuild the index from the selection it describes")
        begin, end = _split_bounds(d.split, lengths.size)[0] or (0, 0)
        train_tokens = int(lengths[begin:end].sum(dtype=np.int64))
        samples.append(max(0, int((e.repetition * train_tokens - 1) // d.seq_length)))
    total = sum(samples)
    iters = total // t.global_batch_size
    if iters < 1:
        raise ConfigError(f"data.blend_file: {total} samples of {d.seq_length} tokens make no global batch of "
                          f"{t.global_batch_size}: select more tokens or lower training.global_batch_size")
    reps = ", ".join(f"{e.repetition:g}x {e.prefix}" for e in entries)
    if t.train_iters == 0:
        t.train_iters = iters
    elif t.train_iters != iters:
        raise ConfigError(
            f"training.train_iters={t.train_iters} does not match data.blend_file ({reps}): that is {iters} "
            f"iterations of {t.global_batch_size} x {d.seq_length} tokens; set training.train_iters=0 to derive it")
    d.blend = [[s / total, e.prefix] for s, e in zip(samples, entries)]
    d.blend_file = None  # resolved: data.blend now holds it


def split_ratios(split: str) -> list[float]:
    return [float(x) for x in split.split(",")]


def build_datasets(cfg: TrainConfig, facts: TokenFacts):
    """(train, valid) GPTDatasets (blended when the blend has several prefixes)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    t = cfg.training
    prefixes, weights = cfg.data.prefixes()
    ratios = split_ratios(cfg.data.split)
    n_eval = t.eval_iters * t.global_batch_size
    # megatron-core asserts that a weighted blend has a sample count for every split,
    # even an empty one (ratio 0): those get 0.
    empty = 0 if len(prefixes) > 1 else None
    sizes = [
        t.train_iters * t.global_batch_size,
        n_eval if ratios[1] > 0 else empty,
        n_eval if ratios[2] > 0 else empty,
    ]
    ds_config = GPTDatasetConfig(
        random_seed=t.seed,
        sequence_length=cfg.data.seq_length,
        blend=(prefixes, weights if len(prefixes) > 1 else None),
        split=cfg.data.split,
        path_to_cache=cfg.data.index_cache_dir,
        tokenizer=facts,
        reset_position_ids=cfg.data.reset_position_ids,
        reset_attention_mask=cfg.data.reset_attention_mask,
        eod_mask_loss=cfg.data.eod_mask_loss,
        # On CPU an explicit causal mask avoids megatron-core building one on "cuda".
        create_attention_mask=cfg.data.reset_attention_mask or not torch.cuda.is_available(),
    )
    train, valid, _ = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, ds_config).build()
    return train, valid


def microbatches(dataset, start: int, global_batch: int, micro_batch: int, dp_rank: int,
                 dp_size: int) -> Iterator[dict]:
    """This DP rank's micro-batches of the global batch starting at sample ``start``.

    Micro-batch m of the global batch holds samples
    ``start + m*micro*dp + [rank*micro, (rank+1)*micro)`` (Megatron's order).
    """
    n_micro = global_batch // (micro_batch * dp_size)
    for m in range(n_micro):
        first = start + m * micro_batch * dp_size + dp_rank * micro_batch
        samples = [dataset[i] for i in range(first, first + micro_batch)]
        # A BlendedDataset sample also carries its "dataset_id" (a numpy int): keep tensors only.
        batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if torch.is_tensor(samples[0][k])}
        if "attention_mask" in batch:
            batch["attention_mask"] = batch["attention_mask"].bool()
        yield batch
