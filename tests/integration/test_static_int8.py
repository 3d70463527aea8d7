"""Static INT8 (QDQ) as a recipe stage on tiny models: graph structure, parity, fallback, budget, errors (issue 5)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from compressor.core.errors import RecipeError
from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe

EXCLUDED = "/model/bert/encoder/layer.0/output/dense/MatMul"
# INT8 vs fp32 ONNX on real dev batches: logits within this, predictions (nearly) all the same
LOGIT_TOL, AGREEMENT = 0.05, 0.97


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory) -> Path:
    """A tiny BERT fine-tuned once on the cue-word sentiment data (learnable: dev accuracy ~1)."""
    d = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(
        d,
        f"""
name: base
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2, test: 0.1}}, max_length: 32}}
stages: [{{finetune: {{epochs: 8, lr: 1.0e-3, batch_size: 16}}}}]
evaluate: {{splits: [dev], artifacts: [torch]}}
bench: {{enabled: false}}
output: {{dir: {d / "runs"}}}
""",
    )
    return run(recipe, quiet=True) / "model"


def _recipe(folder: Path, model: Path, data: Path, quantize: str, export: str = "{}", extra_data: str = "") -> Path:
    return write_recipe(
        folder,
        f"""
name: static
model: {{path: {model}}}
data: {{train: {data}, split: {{dev: 0.2, test: 0.1}}, max_length: 32{extra_data}}}
stages:
  - export: {export}
  - quantize: {quantize}
evaluate: {{splits: [dev], artifacts: [onnx, int8]}}
bench: {{enabled: false}}
output: {{dir: {folder / "runs"}}}
""",
    )


@pytest.fixture(scope="module")
def static_run(trained, tiny_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("static")
    q = f"{{type: static, optimized: false, method: minmax, calibration_samples: 128, exclude_nodes: ['{EXCLUDED}'], max_drop: 1.0}}"
    return run(_recipe(d, trained, tiny_dir / "sent.csv", q), quiet=True)


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def test_static_graph_has_qdq_feeding_matmuls(static_run):
    g = onnx.load(str(static_run / "onnx/model.int8.onnx")).graph
    prod = _producers(g)
    inits = {i.name: i for i in g.initializer}
    quantized = 0
    for n in g.node:
        if n.op_type != "MatMul" or n.name == EXCLUDED:
            continue
        a, b = (prod.get(x) for x in n.input[:2])
        if b is None or b.op_type != "DequantizeLinear":
            continue  # an activation x activation MatMul (attention scores): left fp32 by default
        # weight: int8 initializer -> DequantizeLinear; activation: QuantizeLinear -> DequantizeLinear
        assert inits[b.input[0]].data_type == onnx.TensorProto.INT8, n.name
        assert a is not None and a.op_type == "DequantizeLinear" and prod[a.input[0]].op_type == "QuantizeLinear", n.name
        quantized += 1
    assert quantized == 2 * 6 - 1  # 2 layers x (Q, K, V, attention output, FFN in, FFN out) - the excluded one
    ops = Counter(n.op_type for n in g.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    # embeddings: the tables are stored as 8-bit integers, not fp32
    for name in ("word_embeddings", "position_embeddings"):
        gather = next(n for n in g.node if n.op_type == "Gather" and name in n.name)
        table = prod[gather.input[0]]
        assert table.op_type == "DequantizeLinear" and inits[table.input[0]].data_type in (
            onnx.TensorProto.UINT8,
            onnx.TensorProto.INT8,
        )


def test_excluded_node_stays_fp32(static_run):
    g = onnx.load(str(static_run / "onnx/model.int8.onnx")).graph
    prod = _producers(g)
    node = next(n for n in g.node if n.name == EXCLUDED)
    weight = next(i for i in g.initializer if i.name == node.input[1])
    assert weight.data_type == onnx.TensorProto.FLOAT and node.input[1] not in prod
    assert prod[node.input[0]].op_type != "DequantizeLinear"


def test_ort_runs_static_model_and_agrees_with_fp32(static_run):
    """Real dev batches through fp32 ONNX and the static INT8 graph, in ONNX Runtime with all its fusions."""
    import onnxruntime as ort

    from compressor.measure.evaluate import onnx_logits
    from compressor.onnx.session import make_session

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(static_run / "ort-view.onnx")
    ort.InferenceSession(str(static_run / "onnx/model.int8.onnx"), opts, providers=["CPUExecutionProvider"])
    fused = Counter(n.op_type for n in onnx.load(str(static_run / "ort-view.onnx")).graph.node)
    assert fused["MatMulIntegerToFloat"] + fused["QLinearMatMul"] >= 7, fused  # INT8 kernels, not dequantize + fp32

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(static_run / "model")
    texts = [
        "the movie was very good",
        "a dull and boring plot w3",
        "this film is great but the ending was sad",
        "awful acting",
        "we saw it and it was lovely and charming w7 w8 w9",
    ] * 4
    fp32, int8 = make_session(static_run / "onnx/model.onnx"), make_session(static_run / "onnx/model.int8.onnx")
    diffs, agree = [], []
    for i in range(0, len(texts), 5):
        batch = dict(tok(texts[i : i + 5], padding=True, return_tensors="np"))
        ref, got = onnx_logits(fp32, batch), onnx_logits(int8, batch)
        diffs.append(float(np.abs(ref - got).max()))
        agree.extend(ref.argmax(-1) == got.argmax(-1))
    assert max(diffs) < LOGIT_TOL and np.mean(agree) >= AGREEMENT, (diffs, np.mean(agree))
    prov = json.loads((static_run / "onnx/model.int8.onnx.json").read_text())
    assert prov["parity"]["max_abs_diff"] < LOGIT_TOL and prov["parity"]["argmax_agreement"] >= AGREEMENT


def test_provenance_and_metrics(static_run):
    prov = json.loads((static_run / "onnx/model.int8.onnx.json").read_text())
    assert prov["scheme"] == "static" and prov["format"] == "QDQ" and prov["graph"] == "plain"
    cal = prov["calibration"]
    assert cal["method"] == "minmax" and cal["samples"] == 128 and cal["data"] == "data.train" and cal["tensors"] > 0
    assert prov["excluded_nodes"] == [EXCLUDED] and prov["versions"]["onnxruntime"]
    assert prov["budget"]["passed"] and prov["budget"]["fp32"] >= 0.9 and prov["kept_fp32"] == []
    m = json.loads((static_run / "metrics.json").read_text())
    acc = {k: v["metrics"]["dev"]["accuracy"] for k, v in m["artifacts"].items() if v["metrics"]}
    assert acc["int8"] >= acc["onnx"] - 0.01
    stage = m["stages"][-1]
    assert stage["scheme"] == "static" and stage["kept_fp32"] == [] and stage["budget"]["trials"][0]["passed"]


def test_fused_graph_gets_qattention_and_qdq(trained, tiny_dir, tmp_path):
    run_dir = run(
        _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: static, optimized: true, method: percentile}"), quiet=True
    )
    prov = json.loads((run_dir / "onnx/model.int8.onnx.json").read_text())
    assert prov["graph"] == "fused" and prov["source"] == "model.opt.onnx" and prov["fused_fallback"] is None
    ops = Counter(n.op_type for n in onnx.load(str(run_dir / "onnx/model.int8.onnx")).graph.node)
    # fused Attention has no static kernel: dynamic QAttention; embeddings: QEmbedLayerNormalization; FFN: QDQ;
    # the last layer runs for [CLS] only (the export's cls_only_last_layer): MultiHeadAttention after QDQ projections
    assert ops["QAttention"] == 1 and ops["MultiHeadAttention"] == 1, ops
    assert ops["QEmbedLayerNormalization"] == 1 and ops["QuantizeLinear"] >= 6, ops
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["artifacts"]["int8"]["metrics"]["dev"]["accuracy"] >= m["artifacts"]["onnx"]["metrics"]["dev"]["accuracy"] - 0.02


def test_no_fused_graph_falls_back_to_plain_and_says_why(trained, tiny_dir, tmp_path):
    run_dir = run(
        _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: static, optimized: true}", export="{optimize: false}"),
        quiet=True,
    )
    prov = json.loads((run_dir / "onnx/model.int8.onnx.json").read_text())
    assert prov["graph"] == "plain" and "no fused graph" in prov["fused_fallback"]


def test_budget_loop_keeps_sensitive_nodes_in_fp32(tiny_dir, tmp_path):
    """Heavy clipping (percentile 90.01) makes INT8 miss a zero budget: the loop keeps the most sensitive nodes fp32."""
    recipe = write_recipe(
        tmp_path,
        f"""
name: budget
model: {{path: {tiny_dir / "gpt2"}, task: causal-lm}}
data: {{train: {tiny_dir / "lm.txt"}, split: {{dev: 0.2, select_on: dev}}, max_length: 16}}
stages:
  - export: {{}}
  - quantize: {{type: static, method: percentile, percentile: 90.01, calibration_samples: 64, max_drop: 0.0,
                fallback_trials: 3}}
evaluate: {{splits: [dev], artifacts: [onnx, int8]}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    run_dir = run(recipe, quiet=True)
    prov = json.loads((run_dir / "onnx/model.int8.onnx.json").read_text())
    budget = prov["budget"]
    assert budget["metric"] == "perplexity" and not budget["trials"][0]["passed"] and budget["trials"][0]["drop"] > 0
    assert [len(t["kept_fp32"]) for t in budget["trials"]][:3] == [0, 1, 2]
    ranked = [s["node"] for s in budget["sensitivity"]]
    kept = prov["kept_fp32"]
    assert kept and kept == ranked[: len(kept)]  # the most sensitive first
    best = min(budget["trials"], key=lambda t: t["value"])
    assert kept == best["kept_fp32"] or budget["passed"]
    g = onnx.load(str(run_dir / "onnx/model.int8.onnx")).graph
    prod = _producers(g)
    for name in kept:  # really fp32 in the shipped graph: no DequantizeLinear feeds it
        node = next(n for n in g.node if n.name == name)
        assert all(prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in node.input), name
    stage = json.loads((run_dir / "metrics.json").read_text())["stages"][-1]
    assert stage["kept_fp32"] == kept


# ------------------------------------------------------------------ bad input
def test_exclude_names_matching_nothing_are_recipe_errors(trained, tiny_dir, tmp_path):
    bad = EXCLUDED.replace("dense", "dens")
    recipe = _recipe(tmp_path, trained, tiny_dir / "sent.csv", f"{{type: static, exclude_nodes: ['{bad}']}}")
    with pytest.raises(RecipeError) as info:
        run(recipe, quiet=True)
    e = info.value
    assert e.field == "stages.1.quantize.exclude_nodes.0" and e.line == 7 and f"did you mean '{EXCLUDED}'" in str(e)
    recipe = _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: static, exclude_op_types: [Conv]}")
    with pytest.raises(RecipeError, match=r"recipe.yaml:7: stages.1.quantize.exclude_op_types.0: no 'Conv' operator"):
        run(recipe, quiet=True, force=True)


def test_include_nodes_quantizes_only_those(trained, tiny_dir, tmp_path):
    recipe = _recipe(tmp_path, trained, tiny_dir / "sent.csv", f"{{type: static, include_nodes: ['{EXCLUDED}']}}")
    run_dir = run(recipe, quiet=True)
    g = onnx.load(str(run_dir / "onnx/model.int8.onnx")).graph
    prod = _producers(g)
    fed = [
        n.name
        for n in g.node
        if n.op_type in ("MatMul", "Gemm")
        and any(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear" for i in n.input)
    ]
    assert fed == [EXCLUDED]
    assert json.loads((run_dir / "onnx/model.int8.onnx.json").read_text())["included_nodes"] == [EXCLUDED]
    bad = _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: dynamic, include_nodes: [nope]}")
    with pytest.raises(RecipeError, match=r"recipe.yaml:7: stages.1.quantize.include_nodes.0: no node named 'nope'"):
        run(bad, quiet=True, force=True)


def test_calibration_split_is_used_and_checked(trained, tiny_dir, tmp_path):
    import csv

    cal = tmp_path / "cal.csv"
    rows = list(csv.DictReader(open(tiny_dir / "sent.csv", newline="")))[:40]
    cal.write_text("text\n" + "\n".join(r["text"] for r in rows) + "\n")  # no label column needed
    extra = f", calibration: {cal}"
    run_dir = run(
        _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: static, calibration_samples: 40}", extra_data=extra), quiet=True
    )
    prov = json.loads((run_dir / "onnx/model.int8.onnx.json").read_text())
    assert prov["calibration"]["data"] == "data.calibration" and prov["calibration"]["samples"] == 40

    too_small = _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: static, calibration_samples: 41}", extra_data=extra)
    with pytest.raises(RecipeError, match=r"recipe.yaml:7: stages.1.quantize.calibration_samples: data.calibration holds 40"):
        run(too_small, quiet=True, force=True)
    cal.write_text("text\n")
    empty = _recipe(tmp_path, trained, tiny_dir / "sent.csv", "{type: static}", extra_data=extra)
    with pytest.raises(RecipeError, match=r"recipe.yaml:4: data.calibration: .*cal.csv: no data rows"):
        run(empty, quiet=True, force=True)
