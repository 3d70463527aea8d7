"""The last encoder layer computed for the [CLS] token only (issue 5: INT8 speed at equal accuracy).

The rewrite must give the same logits (on padded batches), really shrink the last layer's rows to one,
survive dynamic INT8, refuse graphs where other tokens are read, and fall back in the export stage
when its parity check fails.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from compressor.onnx.first_token import trim_file, trim_to_first_token


@pytest.fixture(scope="module")
def graphs(tiny_bert_onnx) -> dict:
    """The tiny BERT classifier exported plain and fused by ORT's optimizer (fused Attention)."""
    fusions, model = tiny_bert_onnx["fusions"], tiny_bert_onnx["model"]
    assert fusions and fusions.get("Attention") == model.config.num_hidden_layers, fusions
    return tiny_bert_onnx


def _feed(batch: int = 3, seq: int = 16) -> dict:
    rng = np.random.default_rng(1)
    mask = np.ones((batch, seq), np.int64)
    mask[1, 9:] = 0  # padded rows: the keys of the last layer must still be masked
    mask[2, 4:] = 0
    return {
        "input_ids": rng.integers(5, 60, (batch, seq)),
        "attention_mask": mask,
        "token_type_ids": np.zeros((batch, seq), np.int64),
    }


def _torch_batch() -> dict:
    return {k: torch.from_numpy(v) for k, v in _feed().items()}


def _run(path: Path, feed: dict, outputs=None) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return s.run(outputs, {i.name: feed[i.name] for i in s.get_inputs()})


def _trimmed(graphs, tmp_path: Path) -> tuple[Path, dict]:
    dst = tmp_path / "trimmed.onnx"
    shutil.copy(graphs["fused"], dst)
    return dst, trim_file(dst)


def test_trim_keeps_logits_on_padded_batches(graphs, tmp_path):
    dst, record = _trimmed(graphs, tmp_path)
    assert record["applied"], record
    ops = Counter(n.op_type for n in onnx.load(str(dst)).graph.node)
    before = Counter(n.op_type for n in onnx.load(str(graphs["fused"])).graph.node)
    assert ops["Attention"] == before["Attention"] - 1 and ops["MultiHeadAttention"] == 1
    feed = _feed()
    (full,), (cls,) = _run(graphs["fused"], feed), _run(dst, feed)
    np.testing.assert_allclose(cls, full, atol=1e-5)
    torch_logits = graphs["model"](**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.detach().numpy()
    np.testing.assert_allclose(cls, torch_logits, atol=1e-4)


def test_last_layer_runs_on_one_token(graphs, tmp_path):
    """The tensor the head picks [CLS] from has one row per sentence after the rewrite (16 before)."""
    dst, record = _trimmed(graphs, tmp_path)
    model = onnx.load(str(dst))
    pick = next(n for n in model.graph.node if n.op_type == "Gather" and any(a.name == "axis" and a.i == 1 for a in n.attribute))
    model.graph.output.append(onnx.helper.make_tensor_value_info(pick.input[0], onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(tmp_path / "probe.onnx"))
    hidden = _run(tmp_path / "probe.onnx", _feed(), [pick.input[0]])[0]
    assert hidden.shape == (3, 1, graphs["model"].config.hidden_size)


def test_trimmed_graph_quantizes_and_agrees_with_full_int8(graphs, tmp_path):
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.recipe.schema import DynamicQuant

    dst, _ = _trimmed(graphs, tmp_path)
    quantize_dynamic_file(dst, tmp_path / "cls.int8.onnx", DynamicQuant())
    quantize_dynamic_file(graphs["fused"], tmp_path / "full.int8.onnx", DynamicQuant())
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "cls.int8.onnx")).graph.node)
    assert ops["QAttention"] == graphs["model"].config.num_hidden_layers - 1 and ops["MultiHeadAttention"] == 1
    assert not ops["MatMul"], ops  # the split Q / K / V projections are INT8 too (MatMulInteger)
    feed = _feed()
    (a,), (b,) = _run(tmp_path / "cls.int8.onnx", feed), _run(tmp_path / "full.int8.onnx", feed)
    # dynamic scales of the last layer now see one row: close, not bit-equal
    np.testing.assert_allclose(a, b, atol=0.05)


def test_graphs_without_a_fused_attention_are_left_alone(graphs, tmp_path):
    model = onnx.load(str(graphs["plain"]))
    before = model.SerializeToString()
    record = trim_to_first_token(model)
    assert not record["applied"] and "Attention" in record["reason"]
    assert model.SerializeToString() == before


def test_refuses_when_other_tokens_are_read(graphs):
    """A graph that also outputs the last hidden state needs every row: no rewrite."""
    model = onnx.load(str(graphs["fused"]))
    pick = next(n for n in model.graph.node if n.op_type == "Gather" and any(a.name == "axis" and a.i == 1 for a in n.attribute))
    model.graph.output.append(onnx.helper.make_tensor_value_info(pick.input[0], onnx.TensorProto.FLOAT, None))
    before = model.SerializeToString()
    record = trim_to_first_token(model)
    assert not record["applied"] and "read by more than the first-token head" in record["reason"], record
    assert model.SerializeToString() == before


def test_refuses_a_head_that_reads_every_token(graphs):
    """No Gather of token 0 (e.g. a head that pools every token): nothing to trim."""
    model = onnx.load(str(graphs["fused"]))
    for n in model.graph.node:
        if n.op_type == "Gather":
            for a in n.attribute:
                if a.name == "axis" and a.i == 1:
                    a.i = 0
    record = trim_to_first_token(model)
    assert not record["applied"] and "first-token" in record["reason"]


def _export_cfg(**kw):
    from compressor.recipe.schema import ExportStage

    return ExportStage(**kw)


def test_export_stage_records_the_trim_and_can_turn_it_off(graphs, tmp_path):
    from compressor.onnx.onnx import read_provenance
    from compressor.onnx.stage import export_fp32

    batches = [_torch_batch()]
    _, opt = export_fp32(graphs["model"], batches, tmp_path / "on" / "model.onnx", _export_cfg(), "onnx", {})
    assert opt["cls_only_last_layer"]["applied"]
    assert read_provenance(opt["path"])["cls_only_last_layer"]["applied"]
    _, off = export_fp32(
        graphs["model"], batches, tmp_path / "off" / "model.onnx", _export_cfg(cls_only_last_layer=False), "onnx", {}
    )
    assert not off["cls_only_last_layer"]["applied"] and "off" in off["cls_only_last_layer"]["reason"]
    assert not any(n.op_type == "MultiHeadAttention" for n in onnx.load(str(off["path"])).graph.node)


def test_export_stage_drops_a_trim_that_fails_parity(graphs, tmp_path, monkeypatch, caplog):
    """A rewrite that changed the logits (here: row 1 instead of row 0) is undone, the fused graph kept."""
    from compressor.onnx import stage

    def wrong_row(path: Path) -> dict:
        record = trim_file(path)
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            if init.name.endswith("_first_token_starts") or init.name.endswith("_first_token_ends"):
                init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + 1, init.name))
        onnx.save(model, str(path))
        return record

    monkeypatch.setattr(stage, "trim_file", wrong_row)
    batches = [_torch_batch()]
    with caplog.at_level("WARNING", logger="compressor"):
        _, opt = stage.export_fp32(graphs["model"], batches, tmp_path / "model.onnx", _export_cfg(), "onnx", {})
    assert opt is not None and not opt["cls_only_last_layer"]["applied"]
    assert "parity check failed" in opt["cls_only_last_layer"]["reason"]
    assert "first-token trim" in caplog.text
    assert not any(n.op_type == "MultiHeadAttention" for n in onnx.load(str(opt["path"])).graph.node)


def test_refuses_attention_attributes_it_cannot_carry(graphs):
    """E.g. rotary embeddings inside the fused Attention: MultiHeadAttention would silently drop them."""
    model = onnx.load(str(graphs["fused"]))
    last = [n for n in model.graph.node if n.op_type == "Attention"][-1]
    last.attribute.append(onnx.helper.make_attribute("do_rotary", 1))
    record = trim_to_first_token(model)
    assert not record["applied"] and "do_rotary" in record["reason"]
