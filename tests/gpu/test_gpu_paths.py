"""The GPU paths on a real GPU: a tiny run on CUDA with CUDA rows beside CPU rows, the CUDA EP, bitsandbytes.

Marked `gpu`: skipped, with the reason, where no CUDA GPU is visible (every CI machine of this project)."""

from __future__ import annotations

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is visible")]


def _cuda_ep() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(not torch.cuda.is_available() or not _cuda_ep(), reason="needs onnxruntime-gpu's CUDA EP")
def test_cuda_session_runs_on_the_gpu(tiny_bert_onnx):
    from compressor.measure.bench.runner import bench_onnx
    from compressor.onnx.session import make_session

    s = make_session(tiny_bert_onnx["plain"], device="cuda")
    assert s.get_providers()[0] == "CUDAExecutionProvider"
    rows = bench_onnx(tiny_bert_onnx["plain"], 100, [1, 4], [16], warmup=2, iterations=5, device="cuda")
    assert [r["device"] for r in rows] == ["cuda", "cuda"] and all(r["p50_ms"] > 0 for r in rows)


def test_run_on_cuda_reports_cuda_rows_beside_cpu_rows(cls_recipe):
    from compressor.pipeline.orchestrate import run

    bnb = importlib.util.find_spec("bitsandbytes") is not None
    run_dir = run(
        cls_recipe,
        overrides=[
            "device=cuda",
            "bench.devices=[cpu, cuda, tensorrt]",
            "bench.iterations=5",
            "bench.bitsandbytes=[int8, nf4]" if bnb else "bench.bitsandbytes=[]",
        ],
        quiet=True,
    )
    m = json.loads((run_dir / "metrics.json").read_text())
    arts = m["artifacts"]
    devices = {r["device"] for r in arts["pytorch"]["bench"]}
    assert devices == {"cpu", "cuda"}, devices
    if _cuda_ep():
        assert "cuda" in {r["device"] for r in arts["onnx"]["bench"]}, m.get("bench_notes")
    if bnb:
        for name in ("bnb-int8", "bnb-nf4"):
            assert name in arts, (name, m.get("bench_notes"))
            acc = arts[name]["metrics"]["dev"]["accuracy"]
            assert acc == pytest.approx(arts["pytorch"]["metrics"]["dev"]["accuracy"], abs=0.15), name
            assert {r["device"] for r in arts[name]["bench"]} == {"cuda"}
    trt_rows = [r for r in arts["onnx"]["bench"] if r["device"] == "tensorrt"]
    if not trt_rows:  # no TensorRT libraries: said so, never CUDA EP timings filed under "tensorrt" (seen on an H200)
        assert any("TensorRT" in n or "tensorrt" in n for n in m.get("bench_notes", [])), m.get("bench_notes")
    report = (run_dir / "report.md").read_text()
    assert "cuda" in report
