"""Static INT8 building blocks: calibration ranges, the accuracy-budget loop, recipe validation (issue 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compressor.core.errors import RecipeError
from compressor.recipe import load_recipe
from compressor.recipe.schema import StaticQuant


# ------------------------------------------------------------------ calibration on a real (tiny) graph
@pytest.fixture(scope="module")
def tiny_onnx(tiny_dir, tmp_path_factory):
    """The tiny BERT exported by our exporter, and real tokenized batches of differing lengths."""
    import csv

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compressor.onnx.onnx import export_model

    out = tmp_path_factory.mktemp("calib")
    tok = AutoTokenizer.from_pretrained(tiny_dir / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir / "bert")
    with open(tiny_dir / "sent.csv", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:96]
    batches = [dict(tok(texts[i : i + 16], padding=True, return_tensors="np")) for i in range(0, len(texts), 16)]
    assert len({b["input_ids"].shape[1] for b in batches}) > 1  # ragged across batches, as the loader makes them
    export_model(model, batches[0], out / "model.onnx")
    return out / "model.onnx", batches


def _matmul_inputs(path: Path) -> set[str]:
    from compressor.quantize.static_graph import _load, plan_nodes

    return plan_nodes(_load(path), StaticQuant())[3]


def test_methods_give_different_ranges_on_the_same_data(tiny_onnx, tmp_path):
    from compressor.quantize.calibration import calibrate, range_table

    path, batches = tiny_onnx
    tensors = _matmul_inputs(path)
    tables = {
        m: range_table(calibrate(path, tensors, iter(batches), m, percentile=99.0, work_dir=tmp_path))
        for m in ("minmax", "percentile", "entropy")
    }
    for m, t in tables.items():
        assert set(t) == tensors, m  # exactly the inputs of the weight MatMuls / Gemms, nothing else
    mm, pc, en = tables["minmax"], tables["percentile"], tables["entropy"]
    assert mm != pc and mm != en and pc != en
    for name in tensors:  # histogram methods clip: their ranges lie inside the observed min..max
        for t in (pc, en):
            assert mm[name][0] - 1e-5 <= t[name][0] <= t[name][1] <= mm[name][1] + 1e-5, name
    assert any(pc[n][1] - pc[n][0] < 0.99 * (mm[n][1] - mm[n][0]) for n in tensors)
    assert any(en[n][1] - en[n][0] < 0.99 * (mm[n][1] - mm[n][0]) for n in tensors)


def test_calibration_streams_one_batch_at_a_time(tiny_onnx, tmp_path):
    """Batches are pulled lazily, one per collect step: ragged shapes work for histograms, and a
    batch is requested only after the previous one has been folded in."""
    from compressor.quantize.calibration import calibrate

    path, batches = tiny_onnx
    pulled = []

    def gen():
        for b in batches:
            pulled.append(b["input_ids"].shape)
            yield b

    ranges = calibrate(path, _matmul_inputs(path), gen(), "entropy", work_dir=tmp_path)
    assert len(pulled) == len(batches) and len(ranges.data) > 0
    assert not list(tmp_path.glob("augmented*"))  # the augmented copy of the model is cleaned up


def test_minmax_matches_a_direct_measurement(tiny_onnx, tmp_path):
    """minmax over the batches equals the min / max of the tensor computed by ORT directly."""
    import onnx
    import onnxruntime as ort

    from compressor.quantize.calibration import calibrate, range_table

    path, batches = tiny_onnx
    name = sorted(_matmul_inputs(path))[0]
    table = range_table(calibrate(path, {name}, iter(batches), "minmax", work_dir=tmp_path))
    m = onnx.load(str(path))
    m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    vals = [
        sess.run([name], {k: v.astype(np.int64) for k, v in b.items() if k in {i.name for i in sess.get_inputs()}})[0]
        for b in batches
    ]
    lo, hi = min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)
    assert table[name][0] == pytest.approx(min(lo, 0.0), abs=1e-5) and table[name][1] == pytest.approx(max(hi, 0.0), abs=1e-5)


# ------------------------------------------------------------------ the budget loop
def _fit(cfg, values: dict, ranking: list):
    """Run fit_budget with a fake quantizer: the score depends on which nodes are kept in fp32."""
    from compressor.quantize.budget import fit_budget

    calls = {"ranking": 0, "quantize": []}

    def quantize(keep):
        calls["quantize"].append(list(keep))
        return tuple(keep)

    def rank():
        calls["ranking"] += 1
        return ranking

    return fit_budget(cfg, 0.90, True, True, quantize, lambda key: values[key], rank), calls


def test_budget_met_at_once_measures_no_sensitivity():
    fit, calls = _fit(StaticQuant(max_drop=0.5), {(): 0.897}, [])
    assert fit["passed"] and fit["kept_fp32"] == [] and calls["ranking"] == 0 and len(fit["trials"]) == 1
    assert fit["trials"][0]["drop"] == pytest.approx(0.3)


def test_budget_keeps_most_sensitive_nodes_until_it_passes():
    rank = [("a", 3.0), ("b", 2.0), ("c", 1.0), ("d", 0.5), ("e", 0.1)]
    values = {(): 0.88, ("a",): 0.889, ("a", "b"): 0.8955, ("a", "b", "c", "d"): 0.899}
    fit, calls = _fit(StaticQuant(max_drop=0.5, fallback_trials=4), values, rank)
    assert calls["quantize"] == [[], ["a"], ["a", "b"]]  # 1, then 2 nodes: stops at the first pass
    assert fit["passed"] and fit["kept_fp32"] == ["a", "b"] and fit["sensitivity"][0] == {"node": "a", "error": 3.0}


def test_budget_missed_keeps_the_best_trial_and_says_so():
    rank = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    values = {(): 0.80, ("a",): 0.85, ("a", "b"): 0.84}
    fit, calls = _fit(StaticQuant(max_drop_relative=0.001, fallback_trials=5), values, rank)
    assert calls["quantize"] == [[], ["a"], ["a", "b"]]  # never all candidates: that would be the fp32 model
    assert not fit["passed"] and fit["kept_fp32"] == ["a"] and len(fit["trials"]) == 3


def test_drop_units():
    from compressor.quantize.budget import drop_of

    assert drop_of(0.9, 0.89, True, True) == pytest.approx((1.0, 0.0111111), rel=1e-4)  # accuracy: points
    assert drop_of(10.0, 10.5, False, False) == pytest.approx((0.5, 0.05))  # perplexity: higher is worse


# ------------------------------------------------------------------ recipe errors
BASE = """\
name: t
model: {path: m}
data: {train: t.csv}
stages:
  - export: {}
  - quantize:
      type: static
"""


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ("      method: kmeans\n", "stages.1.quantize.method", "minmax"),
        ("      method: percentile\n      percentile: 80\n", "stages.1.quantize.percentile", "greater than 90"),
        ("      percentile: 99.9\n", "stages.1.quantize.percentile", "method: percentile only"),
        ("      calibration_samples: 0\n", "stages.1.quantize.calibration_samples", "greater than or equal to 1"),
        ("      activation_type: int8\n      weight_type: uint8\n", "stages.1.quantize.weight_type", "int8 weights"),
        ("      op_types: [Conv]\n", "stages.1.quantize.op_types.0", "MatMul"),
        ("      op_types: []\n", "stages.1.quantize.op_types", "at least 1"),
        ("      max_drop: -1\n", "stages.1.quantize.max_drop", "greater than or equal to 0"),
        ("      max_drop_relative: 2\n", "stages.1.quantize.max_drop_relative", "less than or equal to 1"),
        ("      fallback_trials: 3\n", "stages.1.quantize.fallback_trials", "needs max_drop"),
        ("      exclude_nodes: [a, a]\n", "stages.1.quantize.exclude_nodes", "twice"),
        ("      calibraton_samples: 5\n", "stages.1.quantize.calibraton_samples", "calibration_samples"),
    ],
)
def test_bad_static_config_is_a_recipe_error(tmp_path, extra, field, words):
    p = tmp_path / "recipe.yaml"
    p.write_text(BASE + extra)
    with pytest.raises(RecipeError) as info:
        load_recipe(p)
    e = info.value
    assert e.file == str(p) and e.line is not None and e.line >= 6, str(e)
    assert e.field == field and words in str(e), str(e)


def test_good_static_config(tmp_path):
    p = tmp_path / "recipe.yaml"
    p.write_text(BASE + "      method: entropy\n      max_drop: 0.5\n      fallback_trials: 2\n      exclude_nodes: [x]\n")
    recipe, _ = load_recipe(p)
    cfg = recipe.stage_list()[1][1]
    assert isinstance(cfg, StaticQuant) and cfg.method == "entropy" and cfg.fallback_trials == 2
    assert cfg.op_types == ["MatMul", "Gemm"] and cfg.activation_type == "uint8" and cfg.per_channel


def test_no_tensors_to_calibrate_gives_empty_ranges(tiny_onnx, tmp_path):
    from compressor.quantize.calibration import calibrate

    path, batches = tiny_onnx
    for method in ("minmax", "entropy"):
        assert len(calibrate(path, set(), iter(batches), method, work_dir=tmp_path).data) == 0


def test_fused_graph_of_a_fresh_model_quantizes(tiny_onnx, tiny_dir, tmp_path):
    """A fresh model's LayerNorm weights and zero biases are one merged constant in the export; the static
    (Gemm bias) and dynamic (EmbedLayerNormalization) passes both rewrite it unless it is unshared first."""
    from onnxruntime.quantization.calibrate import save_tensors_data
    from transformers import AutoConfig

    from compressor.onnx.onnx import optimize
    from compressor.onnx.session import make_session
    from compressor.quantize.calibration import calibrate
    from compressor.quantize.static_graph import Plan, _load, _shape_infer, plan_nodes, quantize_plan

    path, batches = tiny_onnx
    assert optimize(path, AutoConfig.from_pretrained(tiny_dir / "bert"), tmp_path / "model.opt.onnx")
    src = _shape_infer(tmp_path / "model.opt.onnx", tmp_path / "shaped.onnx")
    cfg = StaticQuant(optimized=True)
    plan = Plan(src=src, fp32=tmp_path / "model.opt.onnx", graph="fused")
    plan.static, plan.dynamic, plan.op_of, plan.tensors, plan.skipped = plan_nodes(_load(src), cfg)
    assert {plan.op_of[n] for n in plan.dynamic} == {"Attention", "EmbedLayerNormalization"}
    save_tensors_data(calibrate(src, plan.tensors, iter(batches), "minmax", work_dir=tmp_path), tmp_path / "c.json")
    out = quantize_plan(plan, cfg, tmp_path / "c.json", tmp_path / "q.onnx")
    sess = make_session(out)
    feed = {i.name: batches[0][i.name].astype(np.int64) for i in sess.get_inputs()}
    assert sess.run(None, feed)[0].shape == (len(batches[0]["input_ids"]), 2)
