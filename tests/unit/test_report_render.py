"""report.md and report.html rendered from a hand-written metrics.json: the rows and values a reader relies on."""

from __future__ import annotations

import json

import pytest

from compressor.core.records import read_metrics, write_metrics
from compressor.report import sections
from compressor.report.document import Figures, Para, Section, SectionRegistry, Table
from compressor.report.html import render_html
from compressor.report.markdown import render_markdown


def _bench(p50: float, rounds: list[float]) -> list[dict]:
    return [
        {
            "batch": 1,
            "seq": 128,
            "device": "cpu",
            "runtime": "x",
            "threads": 2,
            "p50_ms": p50,
            "round_p50_ms": rounds,
            "throughput_per_s": 1000 / p50,
        }
    ]


METRICS = {
    "name": "sst2-int8",
    "task": "sequence-classification",
    "model": "models/minilm",
    "seed": 7,
    "device": "cpu",
    "primary_metric": {"name": "accuracy", "higher_is_better": True},
    "labels": ["negative", "positive"],
    "data": {"train": 800, "dev": 200, "test": 100},
    "stages": [
        {
            "stage": "finetune",
            "seconds": 61.5,
            "best_dev": 0.905,
            "best_step": 300,
            "steps": 400,
            "history": [{"step": 100, "loss": 0.6}, {"step": 300, "loss": 0.3, "eval": {"accuracy": 0.905}}],
        },
        {
            "stage": "export",
            "seconds": 3.25,
            "exporter": "torchscript",
            "opset": 17,
            "parity": {"max_abs_diff": 1.5e-6},
            "fusions": {"Attention": 6},
        },
        {
            "stage": "quantize",
            "seconds": 12.0,
            "scheme": "static",
            "method": "minmax",
            "graph": "fused",
            "kept_fp32": ["/encoder/layer.0/Add"],
            "budget": {
                "passed": True,
                "split": "dev",
                "trials": [
                    {"kept_fp32": [], "value": 0.86, "drop": -0.04, "passed": False},
                    {"kept_fp32": ["a"], "value": 0.895, "drop": -0.005, "passed": True},
                ],
            },
        },
    ],
    "artifacts": {
        "pytorch": {
            "path": "model",
            "runtime": "torch",
            "params": 22_700_000,
            "size_bytes": 90 * 2**20,
            "gzip_bytes": 83 * 2**20,
            "metrics": {
                "dev": {
                    "accuracy": 0.9,
                    "accuracy_ci": [0.85, 0.94],
                    "f1_macro": 0.899,
                    "n": 200,
                    "majority_baseline": 0.5,
                    "majority_class": 1,
                    "support": [100, 100],
                    "classes_present": 2,
                    "predicted_classes": 2,
                    "missed_share": 0.0,
                    "per_class_recall": [0.91, 0.89],
                    "confusion": [[91, 9], [11, 89]],
                },
                "test": {"accuracy": 0.88, "f1_macro": 0.87, "n": 100},
            },
            "bench": _bench(20.0, [20.0, 20.5, 19.5]),
        },
        "int8": {
            "path": "onnx/model.int8.onnx",
            "runtime": "onnxruntime",
            "params": 22_700_000,
            "size_bytes": 23 * 2**20,
            "gzip_bytes": 21 * 2**20,
            "provenance": {"scheme": "static"},
            "metrics": {
                "dev": {
                    "accuracy": 0.88,
                    "accuracy_ci": [0.83, 0.92],
                    "f1_macro": 0.879,
                    "n": 200,
                    "paired": {"vs": "pytorch", "significant": False, "p_value": 0.29},
                },
                "test": {"accuracy": 0.87, "f1_macro": 0.86, "n": 100},
            },
            "bench": _bench(5.0, [5.0, 5.1, 4.9]),
        },
    },
    "bench_notes": ["the machine was busy while timing (load 1.8 on 2 cores)"],
    "bench_settings": {"batch_sizes": [1], "seq_lengths": [128]},
    "timing_policy": {"torch": "2 threads", "onnxruntime": "2 intra-op threads"},
    "fingerprint": {"cpu": "Test CPU", "cores": 2, "torch": "2.13.0", "compressor": "0.1.0"},
    "seconds": 99.0,
    "plan": [{"stage": "stage 2: quantize (static)", "verdict": "smaller and faster", "why": "VNNI"}],
}


@pytest.fixture
def results(tmp_path) -> dict:
    """The hand-written metrics.json, written and read back through the typed record (as the report gets it)."""
    write_metrics(tmp_path / "metrics.json", METRICS)
    return read_metrics(tmp_path / "metrics.json")


def test_markdown_rows_and_values(results):
    md = render_markdown(results, {"size": "report_size.png"})
    assert md.startswith("# compressor run: sst2-int8\n")
    assert (
        "Model `models/minilm`, task sequence-classification, seed 7, trained on cpu. Data: train 800, dev 200, test 100." in md
    )
    head = (
        "| artifact | accuracy (dev) [95 % CI] | Δ | F1 [95 % CI] | params | size MiB | gzip MiB | p50 ms cpu b1×128 "
        "| speed-up b1×128 |"
    )
    assert head in md
    assert "| pytorch | 90.00 % [85.0, 94.0] |  | 89.90 % | 22.70 M | 90.0 | 83.0 | 20.00 | reference |" in md
    assert (
        "| int8 (model.int8.onnx) | 88.00 % [83.0, 92.0] | -2.00 (n.s., p 0.29) | 87.90 % | 22.70 M | 23.0 | 21.0 | 5.00 | 4.00×"
        in md
    )
    assert "Notes:\n- the machine was busy while timing (load 1.8 on 2 cores)" in md
    assert "Majority-class baseline on dev: 50.00% (always answering 'positive')" in md
    assert "Per-class recall on dev:" in md and "| negative | 100 | 91.00% |" in md
    assert "| positive | 11 | 89 |" in md  # confusion matrix row
    assert "## Test split" in md and "| int8 (model.int8.onnx) | 87.00 % | 86.00 | 100 |" in md
    assert "![accuracy vs size](report_size.png)" in md and "Circled points are on the Pareto front" in md
    assert "![accuracy vs latency]" not in md  # not drawn: not shown
    int8 = md[md.index("### INT8 (stage 2: quantize)") :]
    assert "Accuracy budget met after 2 trial(s)." in int8
    assert "| 1 | 1 | 0.8950 | -0.005 | yes |" in int8 and "| /encoder/layer.0/Add |" in int8
    assert "## Plan vs measurement" not in md  # the plan's INT8 verdict is tested against fp32 ONNX: none in this run
    assert "- **finetune** (61.5 s): best dev accuracy 0.9050 at step 300 (checkpoint selection)" in md
    assert "- **export** (3.2 s): parity max |diff| 1.50e-06; fusions Attention×6; exporter torchscript opset 17" in md
    assert "| cpu | Test CPU |" in md and "| seed | 7 |" in md and "| compressor | 0.1.0 |" in md


def test_html_has_the_same_numbers_and_is_self_contained(results):
    html = render_html(results, {"size": b"\x89PNG", "confusion": b"\x89PNG"}, "name: sst2-int8\n")
    assert html.startswith("<!DOCTYPE html>") and "http://" not in html and "https://" not in html
    assert "<h1>compressor run: sst2-int8</h1>" in html
    for cell in ("90.00 % [85.0, 94.0]", "-2.00 (n.s., p 0.29)", "4.00×", "int8 (model.int8.onnx)", "87.00 %"):
        assert f">{cell}</td>" in html, cell
    assert '<div class="warn">the machine was busy while timing (load 1.8 on 2 cores)</div>' in html
    assert "<h3>INT8 (stage 2: quantize)</h3>" in html and "<li><b>finetune</b> (61.5 s)" in html
    assert html.count("data:image/png;base64,") == 2  # size and confusion, inline
    assert "<pre>name: sst2-int8\n</pre>" in html


def test_markdown_and_html_render_the_same_sections(results):
    md, html = render_markdown(results, {}), render_html(results, {})
    md_titles = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    html_titles = [t for t in __import__("re").findall(r"<h2>(.*?)</h2>", html)]
    assert md_titles == html_titles == ["Variants", "Test split", "Model health", "Compression", "Stages", "Reproduction"]
    assert "Plots" not in md_titles  # no figure drawn: the section is left out


def test_a_registered_section_reaches_both_reports(results, monkeypatch):
    """A new section is one builder plus one registration: both renderers show it, in registration order."""
    registry = SectionRegistry()
    for name in sections.SECTIONS.names():
        registry.add(name, sections.SECTIONS.get(name))
    registry.add(
        "energy",
        lambda r: Section(
            "Energy",
            lines=[f"{r['name']}: 1.5 J per query"],
            blocks=[Table(["artifact", "J"], [["int8", "0.4"]], "Per artifact"), Para("measured with RAPL")],
        ),
    )
    monkeypatch.setattr(sections, "SECTIONS", registry)
    md, html = render_markdown(results, {}), render_html(results, {})
    assert "## Energy\n\n- sst2-int8: 1.5 J per query\n\nPer artifact:\n\n| artifact | J |\n|---|---|\n| int8 | 0.4 |" in md
    assert md.index("## Reproduction") < md.index("## Energy")
    assert "<h2>Energy</h2>" in html and '<td class="num">0.4</td>' in html and "measured with RAPL" in html
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("energy", lambda r: None)


def test_a_section_of_figures_only_is_hidden_when_none_was_drawn():
    sec = Section("Plots", blocks=[Figures(["size", "latency"], "caption", ("size",))])
    assert not sec.visible({}) and sec.visible({"latency": "x.png"})
    assert not sec.blocks[0].caption_shown({"latency": 1}) and sec.blocks[0].caption_shown({"size": 1})


def test_the_report_reads_an_unversioned_metrics_json(tmp_path):
    """metrics.json written before schema_version existed renders the same."""
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    old = read_metrics(tmp_path / "metrics.json")
    assert old["schema_version"] == 1 and render_markdown(old) == render_markdown(dict(METRICS))
