"""ONNX feeds, calibration feeds and benchmark inputs come from compressor/arch/signature.py (issue 14): nothing else
spells out a graph's input names."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def _inputs(*names, shape=("batch", "sequence")):
    return [SimpleNamespace(name=n, shape=list(shape)) for n in names]


def test_session_feed_by_name_with_defaults_and_a_clear_refusal():
    from compressor.arch.signature import MissingInput, session_feed, session_signature

    batch = {"input_ids": [[5, 6, 7]], "attention_mask": [[1, 1, 0]]}
    feed = session_feed(_inputs("attention_mask", "input_ids", "token_type_ids"), batch)
    assert list(feed) == ["attention_mask", "input_ids", "token_type_ids"]  # the graph's own order, by name
    assert feed["input_ids"].tolist() == [[5, 6, 7]] and feed["attention_mask"].tolist() == [[1, 1, 0]]
    assert feed["token_type_ids"].tolist() == [[0, 0, 0]] and feed["token_type_ids"].dtype == np.int64
    extra = session_feed(_inputs("input_ids", "pixel_mask"), {**batch, "pixel_mask": [[1, 0, 1]]})
    assert extra["pixel_mask"].tolist() == [[1, 0, 1]]  # an input of the graph's own that the batch carries
    with pytest.raises(MissingInput, match="expects an input 'pixel_mask' that the tokenizer does not produce"):
        session_feed(_inputs("input_ids", "pixel_mask"), batch)
    assert session_signature(_inputs("input_ids")).with_past is False


def test_session_signature_recognises_a_cached_decoder():
    from compressor.arch.signature import session_signature

    past = [SimpleNamespace(name=f"past_key_values.0.{p}", shape=["batch", 2, "past_sequence", 4]) for p in ("key", "value")]
    sig = session_signature(_inputs("input_ids", "attention_mask", "position_ids") + past)
    assert sig.with_past and sig.kv.kv_heads == 2 and sig.kv.head_dim == 4
    feed = sig.feed({"input_ids": [[1, 2]], "attention_mask": [[0, 1]]})
    assert feed["position_ids"].tolist() == [[0, 0]] and feed["past_key_values.0.key"].shape == (1, 2, 0, 4)


def test_calibration_feeds_read_the_signature():
    from compressor.quantize.calibration import feeds

    got = list(
        feeds([{"input_ids": [[3, 4]], "attention_mask": [[1, 1]]}], _inputs("input_ids", "attention_mask", "token_type_ids"))
    )
    assert len(got) == 1 and got[0]["token_type_ids"].tolist() == [[0, 0]]


def test_benchmark_inputs_are_the_signature_s_synthetic_inputs():
    """The same ids as before the signature owned them (ordinary vocabulary, seeded), and its input names."""
    from compressor.arch.signature import ENCODER_INPUTS
    from compressor.measure.bench.runner import synthetic_batch

    got = synthetic_batch(2, 5, 30522, seed=1)
    ids = np.random.default_rng(1).integers(low=1000, high=30522, size=(2, 5), dtype=np.int64)
    assert tuple(got) == ENCODER_INPUTS and (got["input_ids"] == ids).all()
    assert got["attention_mask"].sum() == 10 and not got["token_type_ids"].any()
