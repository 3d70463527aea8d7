"""Parity batches are representative (issue 14): the longest rows, a padded long + short batch and a seeded random
sample — not the first batches of the length-sorted evaluation loader (its shortest rows)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from compressor.onnx.batches import PARITY_BATCH, parity_batches, parity_rows


def test_rows_hold_the_longest_a_mix_and_a_sample():
    lengths = [5 + (i * 37) % 90 for i in range(200)]
    longest, mixed, sample = parity_rows(lengths, 8, seed=1)
    by_length = sorted(range(200), key=lambda i: -lengths[i])
    assert sorted(longest) == sorted(by_length[:8])
    assert max(lengths[i] for i in mixed) == max(lengths) and min(lengths[i] for i in mixed) == min(lengths)
    assert len(set(sample)) == 8 and sample != sorted(range(200), key=lambda i: lengths[i])[:8]
    assert parity_rows(lengths, 8, seed=1) == [longest, mixed, sample]  # the same rows for the same seed
    assert parity_rows(lengths, 8, seed=2)[2] != sample


def test_small_split_is_one_batch_and_empty_is_none():
    assert parity_rows([3, 9, 4], 8) == [[0, 1, 2]]
    assert parity_rows([], 8) == []


def test_batches_from_a_run_context_are_padded_real_rows(tmp_path):
    from compressor import data as D
    from compressor.models import load_tokenizer
    from compressor.testing import write_tokenizer

    tok = load_tokenizer(write_tokenizer(tmp_path / "tok"))
    texts = [" ".join(["good"] * (1 + i % 23)) for i in range(60)]
    enc = D.encode_split(D.Split(texts, np.array([i % 2 for i in range(60)])), tok, 64)
    ctx = SimpleNamespace(encoded={"dev": enc}, eval_split=lambda: "dev", tokenizer=tok, seed=0, task="sequence-classification")
    batches = parity_batches(ctx)
    assert len(batches) == 3 and all(len(b["input_ids"]) == PARITY_BATCH for b in batches)
    longest, mixed, _ = batches
    lengths = sorted(len(f["input_ids"]) for f in enc.features)
    assert sorted(longest["attention_mask"].sum(1).tolist()) == lengths[-PARITY_BATCH:]  # the 8 longest rows
    real = mixed["attention_mask"].sum(1)
    assert real.max() == longest["input_ids"].shape[1] and real.min() == 3  # [CLS] good [SEP] beside the longest rows
    assert "labels" in longest
