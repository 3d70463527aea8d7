"""Architectures ONNX Runtime cannot fuse (MPNet, DeBERTa-v2, ModernBERT): the export says so, in its output and in
the provenance of the plain graph AND of the INT8 graph made from it; a fusable one (BERT) records its fusions in
the INT8 provenance too (issue 18)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from compressor.cli.commands import app

WHY = {"mpnet": "no MPNet fusion", "deberta-v2": "disentangled attention", "modernbert": "no ModernBERT fusion"}


def _export(model_type, tmp_path):
    from compressor import testing as T

    src = T.tiny_model(model_type, tmp_path / model_type)
    out = tmp_path / "onnx"
    r = CliRunner().invoke(app, ["export", str(src), "-o", str(out), "--int8"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    read = lambda name: json.loads((out / f"{name}.json").read_text())  # noqa: E731
    return r.output, out, read


@pytest.mark.parametrize("model_type", list(WHY))
def test_no_fusion_is_said_in_every_provenance(model_type, tmp_path):
    output, out, read = _export(model_type, tmp_path)
    assert not (out / "model.opt.onnx").exists()
    assert f"no ONNX Runtime fusions for model type '{model_type}'" in output and WHY[model_type] in output
    plain = read("model.onnx")
    assert plain["fusion"]["applied"] is False and WHY[model_type] in plain["fusion"]["reason"]
    int8 = read("model.int8.onnx")
    assert int8["source_graph"] == "model.onnx"
    assert int8["fusion"] == {**plain["fusion"], "source_graph": "model.onnx"}


def test_a_fused_source_is_named_in_the_int8_provenance(tmp_path):
    _, out, read = _export("bert", tmp_path)
    int8 = read("model.int8.onnx")
    assert int8["fusion"]["applied"] is True and int8["fusion"]["source_graph"] == "model.opt.onnx"
    assert int8["fusion"]["fusions"] == read("model.opt.onnx")["fusions"] and int8["fusion"]["fusions"].get("Attention")
