"""Write Megatron indexed datasets (``PREFIX.bin`` / ``PREFIX.idx``).

A thin layer over megatron-core's ``IndexedDatasetBuilder``: the token dtype
follows megatron-core's rule (uint16 for vocabularies under 65,500, int32
above), and the files are written under temporary names and renamed, so a
prefix that exists is complete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np


def index_dtype(vocab_size: int) -> type[np.number]:
    from megatron.core.datasets.indexed_dataset import DType

    return DType.optimal_dtype(vocab_size)


def write_indexed_dataset(prefix: str | Path, documents: Iterable[Iterable[int]], vocab_size: int) -> int:
    """Write token-id documents as one indexed dataset; returns the document count.

    Each document is written as given (callers append the end-of-document id).
    Raises ValueError on an id outside ``[0, vocab_size)``.
    """
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = str(prefix)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    dtype = index_dtype(vocab_size)
    tmp_bin, tmp_idx = f"{prefix}.bin.tmp-{os.getpid()}", f"{prefix}.idx.tmp-{os.getpid()}"
    builder = IndexedDatasetBuilder(tmp_bin, dtype=dtype)
    n = 0
    for doc in documents:
        arr = np.asarray(doc, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(f"document {n}: token id {int(arr.max())} outside vocabulary of {vocab_size}")
        builder.add_document(torch.from_numpy(arr), [arr.size])
        n += 1
    builder.finalize(tmp_idx)
    os.replace(tmp_bin, f"{prefix}.bin")
    os.replace(tmp_idx, f"{prefix}.idx")
    return n
