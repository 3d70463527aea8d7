"""The walking skeleton on tiny models: fine-tune, export, INT8, evaluate, bench, report."""

from __future__ import annotations

import json

import onnx
import pytest

from compressor.pipeline.orchestrate import run


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_classifier_end_to_end(cls_recipe):
    run_dir = run(cls_recipe, quiet=True)
    for name in (
        "recipe.yaml",
        "metrics.json",
        "report.md",
        "log.txt",
        "model/config.json",
        "model/model.safetensors",
        "onnx/model.onnx",
        "onnx/model.onnx.json",
        "onnx/model.int8.onnx",
        "onnx/model.int8.onnx.json",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "status").read_text().strip() == "complete"
    m = _metrics(run_dir)
    arts = m["artifacts"]
    assert set(arts) == {"pytorch", "onnx", "int8"}
    # the cue words make the task learnable: fine-tuning must beat chance clearly
    assert arts["pytorch"]["metrics"]["dev"]["accuracy"] >= 0.9
    # fp32 ONNX is scored by the same code and must agree with PyTorch
    assert arts["onnx"]["metrics"]["dev"]["accuracy"] == pytest.approx(arts["pytorch"]["metrics"]["dev"]["accuracy"], abs=0.02)
    assert arts["int8"]["size_bytes"] < arts["onnx"]["size_bytes"]
    prov = json.loads((run_dir / "onnx/model.onnx.json").read_text())
    assert prov["parity"]["max_abs_diff"] < 1e-3 and prov["inputs"][:2] == ["input_ids", "attention_mask"]
    graph = onnx.load(str(run_dir / "onnx/model.int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "QAttention", "DynamicQuantizeMatMul"}, ops
    for row in arts["onnx"]["bench"]:
        assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["throughput_per_s"] > 0
    report = (run_dir / "report.md").read_text()
    assert "| int8 (model.int8.onnx) |" in report and "speed-up" in report
    # issue 17: intervals, paired tests, rounds, the timing policy and the selection split are recorded and stated
    dev = arts["int8"]["metrics"]["dev"]
    assert dev["accuracy_ci"][0] <= dev["accuracy"] <= dev["accuracy_ci"][1] and dev["paired"]["vs"] == "pytorch"
    assert "_rows" not in dev and "p_value" in dev["paired"]
    row = arts["int8"]["bench"][0]
    assert len(row["round_p50_ms"]) == row["rounds"] >= 2 and row["iterations"] == row["rounds"] * row["per_round"]
    assert "OMP_WAIT_POLICY=PASSIVE" in m["timing_policy"]["torch"] and "OMP_WAIT_POLICY=PASSIVE" in report
    assert m["stages"][0]["selection"]["split"] == "validation" and m["data"]["validation"] > 0
    assert "chosen on a validation split" in report and "Wilson" in report
    from compressor.measure.bench.runner import cuda_available

    if not cuda_available():  # the GPU paths say why they did not run, in metrics.json and in the report
        notes = " | ".join(m["bench_notes"])
        for needle in ("CUDA: skipped (no GPU", "TensorRT: skipped (no GPU", "bitsandbytes 8-bit / NF4: skipped"):
            assert needle in notes and needle in report, needle


def test_causal_lm_end_to_end(lm_recipe):
    run_dir = run(lm_recipe, quiet=True)
    m = _metrics(run_dir)
    ppl = {k: v["metrics"]["dev"]["perplexity"] for k, v in m["artifacts"].items()}
    assert set(ppl) == {"pytorch", "onnx", "int8"}
    dev = m["artifacts"]["int8"]["metrics"]["dev"]
    assert dev["perplexity_ci"][0] <= dev["perplexity"] <= dev["perplexity_ci"][1]
    assert "significant" in dev["paired"] and len(dev["paired"]["delta_ci"]) == 2
    assert ppl["onnx"] == pytest.approx(ppl["pytorch"], rel=1e-3)
    # vocabulary of 111 tokens: an untrained model sits near 111; training must cut it
    assert ppl["pytorch"] < 80
    hist = [h["loss"] for h in m["stages"][0]["history"] if "loss" in h]
    assert hist[-1] < hist[0]


def test_existing_run_dir_is_not_overwritten(cls_recipe):
    from compressor.core.errors import RunDirError

    run_dir = run(cls_recipe, overrides=["stages=[]", "bench.enabled=false"], quiet=True)
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(RunDirError, match="--force"):
        run(cls_recipe, overrides=["stages=[]"], quiet=True)
    assert (run_dir / "metrics.json").read_bytes() == before
