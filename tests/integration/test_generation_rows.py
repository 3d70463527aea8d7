"""Generation rows in a causal-LM run (``bench.generation``, issue 15 item 5): prefill ms, decode tokens/s and peak
RSS for PyTorch and every cached ONNX graph at each batch size in metrics.json, the report's Generation section and
its perplexity-vs-speed figure; and the recipes ``validate`` refuses for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe

ROOT = Path(__file__).resolve().parents[2]


def _recipe(folder: Path, tiny_dir: Path, model: str, task: str, generation: str, data: str = "lm.txt") -> Path:
    return write_recipe(
        folder,
        f"""
name: gen-rows
model: {{path: {tiny_dir / model}, task: {task}}}
data: {{train: {tiny_dir / data}, split: {{dev: 0.2}}, max_length: 16, max_eval_samples: 16}}
stages:
  - export: {{with_past: true}}
  - quantize: {{type: int4, block_size: 16, include_lm_head: true}}
evaluate: {{splits: [dev], artifacts: [torch, onnx, int4]}}
bench:
  batch_sizes: [1]
  seq_lengths: [16]
  iterations: 2
  warmup: 0
  devices: [cpu]
  bitsandbytes: []
  generation: {generation}
output: {{dir: {folder / "runs"}}}
""",
    )


@pytest.fixture(scope="module")
def gen_run(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen-rows")
    recipe = _recipe(folder, tiny_dir, "llama", "causal-lm", "{prompt: 12, new_tokens: 6, batch_sizes: [2, 1], repeats: 2}")
    return run(recipe, quiet=True)


def test_metrics_hold_generation_rows_for_pytorch_and_each_cached_graph(gen_run):
    m = json.loads((gen_run / "metrics.json").read_text())
    assert m["generation_settings"]["prompt"] == 12 and m["generation_settings"]["new_tokens"] == 6
    for name in ("pytorch", "onnx", "int4"):
        rows = m["artifacts"][name]["generation"]
        assert [r["batch"] for r in rows] == [1, 2], name
        for r in rows:
            assert r["prompt"] == 12 and r["new_tokens"] == 6 and r["repeats"] == 2
            assert r["prefill_ms"] > 0 and r["decode_tokens_per_s"] > 0 and r["peak_rss_mb"] > r["start_rss_mb"] > 0
            # tokens/s counts every row of the batch over new_tokens - 1 decode steps
            assert r["decode_tokens_per_s"] == pytest.approx(r["batch"] * 1000 / r["decode_ms_per_token"], rel=0.02)
    assert m["artifacts"]["pytorch"]["generation"][0]["runtime"] == "torch"
    assert m["artifacts"]["int4"]["generation"][0]["runtime"] == "onnxruntime"


def test_report_has_the_generation_section_and_figure(gen_run):
    md = (gen_run / "report.md").read_text()
    assert "## Generation" in md and "decode tokens/s" in md and "peak RSS MiB" in md
    section = md.split("## Generation", 1)[1].split("\n## ", 1)[0]
    assert section.count("| int4 ") + section.count("| int4 (") >= 2  # one row per batch size
    assert (gen_run / "report_generation.png").stat().st_size > 1000
    assert (
        "report_generation.png" in (gen_run / "report.html").read_text()
        or "data:image/png" in (gen_run / "report.html").read_text()
    )


def _validate(recipe: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "compressor", "validate", str(recipe)], env=env, capture_output=True, text=True, timeout=300
    )
    return r.returncode, r.stderr.strip()


def test_validate_refuses_generation_that_cannot_run(tiny_dir, tmp_path):
    too_long = _recipe(tmp_path, tiny_dir, "llama", "causal-lm", "{prompt: 120, new_tokens: 32}")
    code, err = _validate(too_long)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "recipe.yaml:16" in err and "bench.generation.prompt" in err and "128" in err, err
    classifier = tmp_path / "cls"
    classifier.mkdir()
    recipe = write_recipe(
        classifier,
        f"""
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 16}}
bench: {{generation: {{}}}}
""",
    )
    code, err = _validate(recipe)
    assert code == 2 and len(err.splitlines()) == 1 and "bench.generation" in err and "causal LM" in err, err
