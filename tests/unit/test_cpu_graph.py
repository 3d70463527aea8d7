"""Residual Add + LayerNorm in INT8 graphs: SkipLayerNormalization rewritten as Sum + LayerNormalization (issue 5).

The rewrite must keep outputs equal, survive ONNX Runtime's own fusions when a session loads the file
(else it buys nothing), and follow its mode: split / fused / auto (auto decides on kernel timings).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from compressor.quantize import cpu_graph
from compressor.quantize.cpu_graph import split_skip_layernorm, tune_layernorm


@pytest.fixture(scope="module")
def int8_graphs(tiny_bert_onnx, tmp_path_factory) -> dict[str, Path]:
    """The tiny BERT exported plain and fused (ORT optimizer: SkipLayerNormalization), each dynamic INT8."""
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.recipe.schema import DynamicQuant

    fusions = tiny_bert_onnx["fusions"]
    assert fusions and fusions.get("SkipLayerNormalization"), fusions
    d = tmp_path_factory.mktemp("cpu_graph")
    out = {}
    for name in ("plain", "fused"):
        quantize_dynamic_file(tiny_bert_onnx[name], d / f"{name}.int8.onnx", DynamicQuant())
        out[name] = d / f"{name}.int8.onnx"
    return out


def _session(path: Path, optimized_to: Path | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    if optimized_to is not None:  # what ORT actually runs after its own load-time fusions
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(optimized_to)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feed(session) -> dict:
    rng = np.random.default_rng(0)
    feed = {}
    for i in session.get_inputs():
        feed[i.name] = rng.integers(5, 60, (3, 16)) if i.name == "input_ids" else np.ones((3, 16), np.int64)
        if i.name == "token_type_ids":
            feed[i.name][:] = 0
    feed["attention_mask"][2, 10:] = 0  # one padded row
    return feed


def _ops_at_runtime(path: Path, tmp: Path) -> Counter:
    target = tmp / f"{path.stem}.ort-optimized.onnx"
    _session(path, target)
    return Counter(n.op_type for n in onnx.load(str(target)).graph.node)


@pytest.mark.parametrize("graph", ["fused", "plain"])
def test_split_keeps_outputs_and_survives_ort_fusion(int8_graphs, graph, tmp_path):
    src = int8_graphs[graph]
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    (tmp_path / "before").mkdir()
    before = _ops_at_runtime(src, tmp_path / "before")
    assert before["SkipLayerNormalization"] > 0  # ORT fuses the residual Add + LayerNorm when it loads the file

    record = tune_layernorm(dst, "split")
    assert record["decision"] == "split (as asked)"
    rewritten = record["skip_layernorm"] + record["add_layernorm"]
    assert rewritten == 2 * 2 + (1 if graph == "plain" else 0)  # 2 layers x 2 residuals (+ the embeddings' Add → LN)
    ops = Counter(n.op_type for n in onnx.load(str(dst)).graph.node)
    assert ops["SkipLayerNormalization"] == 0 and ops["Sum"] == rewritten
    after = _ops_at_runtime(dst, tmp_path)
    assert after["SkipLayerNormalization"] == 0 and after["Sum"] == rewritten  # ORT's load-time fusion leaves Sum alone

    a, b = _session(src), _session(dst)
    feed = _feed(a)
    np.testing.assert_allclose(b.run(None, feed)[0], a.run(None, feed)[0], atol=1e-4)


def test_fused_mode_leaves_the_file_alone(int8_graphs, tmp_path):
    dst = tmp_path / "m.onnx"
    shutil.copy(int8_graphs["fused"], dst)
    before = dst.read_bytes()
    assert tune_layernorm(dst, "fused")["decision"] == "fused (as asked)"
    assert dst.read_bytes() == before


def test_auto_decides_on_measured_kernel_times(int8_graphs, tmp_path, monkeypatch):
    dst = tmp_path / "m.onnx"
    shutil.copy(int8_graphs["fused"], dst)
    before = dst.read_bytes()
    monkeypatch.setattr(cpu_graph, "time_layernorm_kernels", lambda width, threads=None: {"fused_us": 50.0, "split_us": 48.0})
    record = tune_layernorm(dst, "auto")
    assert record["decision"].startswith("fused:") and record["timing"]["width"] == 32
    assert dst.read_bytes() == before  # the fused kernel is not slower here: nothing rewritten

    monkeypatch.setattr(cpu_graph, "time_layernorm_kernels", lambda width, threads=None: {"fused_us": 250.0, "split_us": 45.0})
    record = tune_layernorm(dst, "auto")
    assert record["decision"].startswith("split:") and record["skip_layernorm"] == 4
    assert not any(n.op_type == "SkipLayerNormalization" for n in onnx.load(str(dst)).graph.node)


def test_kernel_timer_measures_both_forms():
    timing = cpu_graph.time_layernorm_kernels(32, budget_s=0.05)
    assert timing["fused_us"] > 0 and timing["split_us"] > 0


def test_skip_layernorm_with_statistics_outputs_is_kept():
    """Mean / inverse-std outputs exist only on the fused op: such a node stays as it is."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones(4, np.float32), "g")
    node = helper.make_node("SkipLayerNormalization", ["x", "y", "g"], ["o", "mean", ""], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4]) for n in "xy"],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("o", "mean")],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    assert split_skip_layernorm(model) == {"skip_layernorm": 0, "add_layernorm": 0, "kept": 1}
    assert [n.op_type for n in model.graph.node] == ["SkipLayerNormalization"]


def test_pre_layernorm_decoder_residuals_with_several_readers(tiny_dir, tmp_path):
    """GPT-2's residual sum feeds the LayerNorm and the next residual: the Sum keeps its name for both readers."""
    from compressor.models import load_model, load_tokenizer
    from compressor.onnx.onnx import export_model
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.recipe.schema import DynamicQuant

    model = load_model(tiny_dir / "gpt2", "causal-lm")
    tok = load_tokenizer(tiny_dir / "gpt2")
    export_model(model, dict(tok(["a good film", "a bad film"], padding=True, return_tensors="np")), tmp_path / "lm.onnx")
    quantize_dynamic_file(tmp_path / "lm.onnx", tmp_path / "lm.int8.onnx", DynamicQuant())
    shutil.copy(tmp_path / "lm.int8.onnx", tmp_path / "split.onnx")
    record = tune_layernorm(tmp_path / "split.onnx", "split")
    assert record["add_layernorm"] == 2 * 2 + 1  # 2 blocks x (ln_1, ln_2) + ln_f
    graph = onnx.load(str(tmp_path / "split.onnx")).graph
    readers = Counter(i for n in graph.node for i in n.input)
    assert any(readers[n.output[0]] > 1 for n in graph.node if n.op_type == "Sum")  # a shared residual, still one tensor
    a, b = _session(tmp_path / "lm.int8.onnx"), _session(tmp_path / "split.onnx")
    feed = {
        i.name: np.random.default_rng(1).integers(5, 60, (2, 12)) if i.name == "input_ids" else np.ones((2, 12), np.int64)
        for i in a.get_inputs()
    }
    np.testing.assert_allclose(b.run(None, feed)[0], a.run(None, feed)[0], atol=1e-5)
