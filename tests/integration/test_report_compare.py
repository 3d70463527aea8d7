"""report.html / report.md plots on tiny runs, the Pareto front, and `compressor compare`."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from compressor.cli.commands import app
from compressor.pipeline.orchestrate import run
from compressor.report.plots import pareto_front
from tests.conftest import write_recipe

PNG = b"\x89PNG\r\n\x1a\n"
FAST = [
    "stages.0.finetune.epochs=2",
    "stages.0.finetune.eval_every=10",
    "bench.iterations=2",
    "bench.warmup=0",
    "bench.threads=1",
]


def _recipe(tiny_dir, folder, task: str) -> str:
    if task == "cls":
        return f"""
name: tiny-cls
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2, test: 0.1}}, max_length: 32}}
stages:
  - finetune: {{epochs: 2, lr: 1.0e-3, batch_size: 16}}
  - export: {{}}
  - quantize: {{type: dynamic}}
bench: {{batch_sizes: [1], seq_lengths: [32], iterations: 2, warmup: 0}}
output: {{dir: {folder / "runs"}}}
"""
    return f"""
name: tiny-lm
model: {{path: {tiny_dir / "gpt2"}, task: causal-lm}}
data: {{train: {tiny_dir / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16}}
stages:
  - finetune: {{epochs: 2, lr: 1.0e-3, batch_size: 8}}
  - export: {{}}
  - quantize: {{type: dynamic}}
bench: {{batch_sizes: [1], seq_lengths: [16], iterations: 2, warmup: 0}}
output: {{dir: {folder / "runs"}}}
"""


def _run_single_threaded(recipe):
    """Tiny models run fastest on one thread; on a busy 2-core machine two torch threads wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(recipe, quiet=True, overrides=FAST)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cls_run(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-cls")
    return _run_single_threaded(write_recipe(folder, _recipe(tiny_dir, folder, "cls")))


@pytest.fixture(scope="module")
def lm_run(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-lm")
    return _run_single_threaded(write_recipe(folder, _recipe(tiny_dir, folder, "lm")))


def _self_contained(html: str) -> None:
    assert '<img src="data:image/png;base64,' in html
    assert not re.search(r"https?://", html), re.search(r".{60}https?://.{60}", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    for src in re.findall(r'src="([^"]*)"', html):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)


# ---------------------------------------------------------------- report of one run
def test_run_writes_a_self_contained_html_report(cls_run):
    html = (cls_run / "report.html").read_text()
    _self_contained(html)
    assert html.count('<img src="data:image/png;base64,') == 4  # size, latency, training, confusion matrix
    m = json.loads((cls_run / "metrics.json").read_text())
    for name, label in (("pytorch", "pytorch"), ("onnx", "onnx (model.opt.onnx)"), ("int8", "int8 (model.int8.onnx)")):
        assert name in m["artifacts"] and f">{label}</td>" in html  # ONNX rows name the file they measured
    assert "Pareto front" in html and "recipe.yaml" in html and "seed" in html
    assert m["fingerprint"]["onnxruntime"] in html and "finetune" in html


def test_report_md_links_its_plots(cls_run):
    md = (cls_run / "report.md").read_text()
    for name in ("report_size.png", "report_latency.png", "report_training.png", "report_confusion.png"):
        assert (cls_run / name).read_bytes().startswith(PNG)
        assert f"]({name})" in md


def test_causal_lm_report_reads_perplexity_lower_is_better(lm_run):
    html = (lm_run / "report.html").read_text()
    _self_contained(html)
    assert "perplexity (dev)" in html and "lower in perplexity" in html
    assert (lm_run / "report_training.png").is_file()


def test_pareto_front_on_a_hand_made_example():
    #        0     1     2     3     4     5
    xs = [1.0, 2.0, 3.0, 4.0, 2.0, 0.5]
    acc = [0.80, 0.85, 0.84, 0.90, 0.85, 0.50]  # 2 is dominated by 1; 1 and 4 tie: both kept
    assert pareto_front(xs, acc, higher_is_better=True) == [5, 0, 1, 4, 3]
    ppl = [30.0, 20.0, 25.0, 10.0, 21.0, 40.0]  # lower is better: 2 dominated by 1, 4 by 1
    assert pareto_front(xs, ppl, higher_is_better=False) == [5, 0, 1, 3]
    assert pareto_front([1.0], [0.5]) == [0]


# ---------------------------------------------------------------- compare
def _copy_run(src, dst, **fingerprint):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model", "onnx", "checkpoints"))
    if fingerprint:
        m = json.loads((dst / "metrics.json").read_text())
        m["fingerprint"].update(fingerprint)
        (dst / "metrics.json").write_text(json.dumps(m))
    return dst


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_compare_merges_runs_and_flags_different_hardware(cls_run, tmp_path):
    other = _copy_run(cls_run, tmp_path / "elsewhere" / cls_run.name, cpu="Intel Xeon Platinum 8480+", cores=16)
    out = tmp_path / "cmp"
    r = _cli("compare", cls_run, other, "-o", out)
    assert r.exit_code == 0, r.output
    assert "different hardware" in r.output
    data = json.loads((out / "compare.json").read_text())
    assert data["head"][:3] == ["run", "machine", "artifact"]
    assert len(data["rows"]) == 6 and {row[1] for row in data["rows"]} == {"A", "B"}
    assert any("different hardware" in n and "Intel Xeon" in n for n in data["notes"])
    html = (out / "compare.html").read_text()
    _self_contained(html)
    assert "different hardware" in html
    md = (out / "compare.md").read_text()
    assert "| run | machine | artifact |" in md and "](compare_size.png)" in md


def test_compare_of_same_machine_has_no_warning(cls_run, tmp_path):
    other = _copy_run(cls_run, tmp_path / "again" / cls_run.name)
    r = _cli("compare", cls_run, other, "-o", tmp_path / "cmp")
    assert r.exit_code == 0, r.output
    assert "different hardware" not in r.output
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["head"][:2] == ["run", "artifact"]


def test_compare_refuses_incomplete_runs_unless_allowed(cls_run, tmp_path):
    broken = _copy_run(cls_run, tmp_path / "broken" / "tiny-cls-broken")
    (broken / "status").write_text("failed: interrupted\n")
    r = _cli("compare", cls_run, broken, "-o", tmp_path / "cmp")
    assert r.exit_code == 2
    assert "not complete" in r.output and "--allow-incomplete" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "cmp" / "compare.html").exists()
    r = _cli("compare", cls_run, broken, "-o", tmp_path / "cmp", "--allow-incomplete")
    assert r.exit_code == 0, r.output
    assert "tiny-cls-broken (incomplete)" in (tmp_path / "cmp" / "compare.md").read_text()


def test_compare_refuses_bad_inputs(cls_run, lm_run, tmp_path):
    r = _cli("compare", cls_run, lm_run, "-o", tmp_path / "cmp")
    assert r.exit_code == 2 and "different metrics" in r.output
    r = _cli("compare", tmp_path / "missing", "-o", tmp_path / "cmp")
    assert r.exit_code == 2 and "no such run directory" in r.output
    (tmp_path / "empty").mkdir()
    r = _cli("compare", tmp_path / "empty", "-o", tmp_path / "cmp")
    assert r.exit_code == 2 and "no metrics.json" in r.output


def test_eval_and_bench_find_a_run_dirs_tokenizer(cls_run, tiny_dir, tmp_path):
    """An ONNX file inside a run directory borrows the tokenizer and config of ../model."""
    out = tmp_path / "eval.json"
    r = _cli("eval", cls_run / "onnx" / "model.int8.onnx", "--data", tiny_dir / "sent.csv", "--limit", "40", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["metrics"]["n"] == 40
    r = _cli(
        "bench",
        cls_run / "onnx" / "model.int8.onnx",
        "--batch-sizes",
        "1",
        "--seq-lengths",
        "8",
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--json",
        tmp_path / "bench.json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["p50_ms"] > 0
