"""MinHash signatures and LSH parameters against datasketch; bucket edges and union-find."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from megatron_snow.dist import Comm
from megatron_snow.phase1 import clusters, minhash
from megatron_snow.phase1.minhash import (
    ShingleHasher, band_hashes, jaccard, optimal_lsh_params, signature, signatures, token_bytes, tokens,
)
from tests.shipped_files import stdlib_modules


@pytest.mark.parametrize("threshold,num_perm", [(0.7, 256), (0.85, 256), (0.5, 128), (0.7, 64)])
def test_lsh_params_minimise_fp_fn_like_datasketch(threshold, num_perm):
    assert optimal_lsh_params(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)
    assert optimal_lsh_params(0.7, 256) == (25, 10)


def _files(n=12):
    stdlib = {Path(name).name: text for name, _, text in stdlib_modules()}  # shipped CPython 3.11.7 modules
    return [stdlib[f] for f in ("heapq.py", "bisect.py", "textwrap.py", "contextlib.py",
                                                "shlex.py", "queue.py", "sched.py", "fnmatch.py")][:n]


def test_signature_estimates_jaccard_as_well_as_datasketch():
    h = ShingleHasher()
    rng = random.Random(0)
    errs_ours, errs_ref = [], []
    for text in _files():
        lines = text.split("\n")
        for frac in (0.05, 0.2, 0.5):
            edited = "\n".join(line if rng.random() > frac else line[::-1] for line in lines)
            a, b = h.shingles(text, 5), h.shingles(edited, 5)
            true = jaccard(set(a.tolist()), set(b.tolist()))
            est = float(np.mean(signature(a) == signature(b)))
            ref_a, ref_b = MinHash(num_perm=256, seed=1), MinHash(num_perm=256, seed=1)
            ref_a.update_batch([str(x).encode() for x in a.tolist()])
            ref_b.update_batch([str(x).encode() for x in b.tolist()])
            errs_ours.append(abs(est - true))
            errs_ref.append(abs(ref_a.jaccard(ref_b) - true))
    # 256 permutations: standard error ~ sqrt(J(1-J)/256) <= 0.031
    assert max(errs_ours) < 0.12 and np.mean(errs_ours) < 0.04
    assert np.mean(errs_ours) < 2 * np.mean(errs_ref) + 0.01


def test_signature_is_deterministic_and_blocking_invariant():
    text = _files(1)[0]
    sh = ShingleHasher().shingles(text, 5)
    assert len(sh) > 100 and sh.dtype == np.uint64 and sh.max() < 2 ** 32
    s1 = signature(sh, 256, 42, block=4096)
    assert np.array_equal(s1, signature(sh, 256, 42, block=7))
    assert np.array_equal(s1, signature(ShingleHasher().shingles(text, 5), 256, 42))
    assert not np.array_equal(s1, signature(sh, 256, 43))
    assert (signature(np.empty(0, np.uint64)) == 2 ** 32 - 1).all()
    assert len(ShingleHasher().shingles("a b", 5)) == 1  # fewer tokens than the n-gram: one shingle
    assert tokens("foo_bar(x1, y) + 2") == ["foo_bar", "x1", "y", "2"]
    odd = "h\u00e9llo w\u00f6rld_1 \ud800x_y \u00e9\u00e9 ab\x00cd\u3000z9\u0661"  # non-ASCII, a lone surrogate
    for t in ("foo_bar(x1, y) + 2", odd, "", " \n", *_files(3)):
        assert token_bytes(t) == [x.encode() for x in tokens(t)]  # the stage's tokenizer is the regex's
    bh = band_hashes(s1, 25, 10)
    assert bh.shape == (25,) and len(set(bh.tolist())) == 25


def test_batched_signatures_equal_one_at_a_time():
    """The stage's batched signer gives every file the signature ``signature`` gives it, whatever the
    chunking (files cut across chunks, empty sets between them, one-shingle chunks)."""
    h = ShingleHasher()
    sets = [h.shingles(t, 5) for t in _files(4)]
    sets = [np.empty(0, np.uint64), sets[0], np.empty(0, np.uint64), h.shingles("a b", 5), *sets[1:],
            np.empty(0, np.uint64)]
    want = np.stack([signature(s, 256, 42) for s in sets])
    for block in (1, 2, 9, 512):  # chunks of block * 64 shingles
        assert np.array_equal(signatures(sets, 256, 42, block), want)
    assert np.array_equal(signatures(sets[1:2], 64, 7, 1), signature(sets[1], 64, 7)[None])
    assert signatures([], 256, 42).shape == (0, 256)
    assert np.array_equal(band_hashes(want, 42, 6), np.stack([band_hashes(s, 42, 6) for s in want]))


@pytest.mark.parametrize("batch", [1, 2, 4096])
def test_sketch_keys_and_payload_are_the_per_file_ones(monkeypatch, batch):
    """``sketch`` (batched signatures, SIGNATURE_BATCH files at a time) gives each file the band keys of its
    own ``signature`` (0 for a file without tokens) and, without the exact check, that signature."""
    monkeypatch.setattr(minhash, "SIGNATURE_BATCH", batch)
    texts = ["", *_files(3), "+ - *", "a b"]
    for exact in (True, False):
        cfg = minhash.NearDedupConfig(verify_exact=exact)
        b, r = minhash.lsh_params(cfg)
        keys, payload = minhash.sketch(texts, cfg)
        for j, t in enumerate(texts):
            sh = ShingleHasher().shingles(t, 5)
            sig = signature(sh) if len(sh) else np.zeros(256, np.uint64)
            want = band_hashes(sig, b, r) if len(sh) else np.zeros(b, np.uint64)
            assert np.array_equal(keys[j], np.where(want == 0, 1, want) if len(sh) else want)
            if exact:
                assert np.array_equal(minhash.packed_row(payload, j), sh)
            else:
                assert payload.dtype == np.uint32 and np.array_equal(payload[j], sig)


def test_bucket_edges_and_union_find_keep_smallest_key():
    entries = np.array([[7, 5], [7, 3], [9, 3], [9, 8], [11, 1], [7, 4]], dtype=np.uint64)
    edges = clusters.bucket_edges(entries)
    assert edges.tolist() == [[3, 4], [3, 5], [3, 8], [4, 5]]  # star to the smallest key, and a chain
    roots = clusters.union_find_roots(np.array([[10, 11], [11, 12], [2, 12], [20, 21]], dtype=np.uint64))
    assert roots == {2: 2, 10: 2, 11: 2, 12: 2, 20: 20, 21: 20}
    # documents in two shards; shard 1 row 0 duplicates shard 0 row 1 (shared band), shard 1 row 1 is alone
    hashes = [np.array([[1, 2], [3, 4]], np.uint64), np.array([[5, 4], [6, 7]], np.uint64)]
    keys = [clusters.global_keys(0, 2), clusters.global_keys(1, 2)]
    drop = clusters.duplicates(Comm(None), hashes, keys)
    assert drop == {(1 << 32) | 0: 1}
    # a verifier can reject a candidate pair (an LSH false positive): nothing is dropped then
    assert clusters.duplicates(Comm(None), hashes, keys, lambda e: np.zeros(len(e), bool)) == {}
    assert clusters.split_key((1 << 32) | 5) == (1, 5)
