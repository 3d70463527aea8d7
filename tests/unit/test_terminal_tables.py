"""The end-of-run and bench tables fit an 80-column terminal without cutting a cell (issue 17)."""

from __future__ import annotations

from compressor.report.markdown import print_table, render_markdown
from compressor.report.terminal import bench_summary, render


def _bench(ms: float, rounds: list[float]) -> list[dict]:
    return [{"batch": 1, "seq": 128, "device": "cpu", "p50_ms": ms, "round_p50_ms": rounds}]


def _results() -> dict:
    def art(acc, ci, ms, rounds, paired=None, params=22_700_000, size=90 * 2**20):
        m = {"accuracy": acc, "accuracy_ci": ci, "f1_macro": acc, "f1_macro_ci": ci, "n": 872}
        if paired:
            m["paired"] = paired
        return {"params": params, "size_bytes": size, "gzip_bytes": size, "metrics": {"dev": m}, "bench": _bench(ms, rounds)}

    ns = {"vs": "baseline", "b": 3, "c": 4, "p_value": 1.0, "significant": False}
    return {
        "name": "sst2-distill-8k-transfer",
        "task": "sequence-classification",
        "model": "m",
        "seed": 1,
        "device": "cpu",
        "primary_metric": {"name": "accuracy", "higher_is_better": True},
        "data": {"train": 8000, "dev": 872},
        "bench_settings": {"batch_sizes": [1, 8], "seq_lengths": [128]},
        "artifacts": {
            "baseline": art(0.9014, [0.8800, 0.9190], 40.0, [40.0, 41.0, 39.0]),
            "baseline-onnx": art(0.9014, [0.8800, 0.9190], 20.0, [20.0, 20.5, 19.8], ns),
            "pytorch": art(0.8956, [0.8738, 0.9139], 14.0, [14.0, 13.5, 14.5], ns, params=11_000_000),
            "onnx": art(0.8956, [0.8738, 0.9139], 7.0, [7.0, 7.1, 6.9], ns, params=11_000_000),
            "int8": art(0.8911, [0.8688, 0.9099], 3.0, [2.0, 4.5, 3.0], ns, params=11_000_000),
        },
        "stages": [],
        "fingerprint": {},
        "bench_notes": [],
    }


def test_run_table_fits_80_columns_without_ellipsis(capsys):
    text = print_table(_results(), width=80)
    lines = text.splitlines()
    table = lines[1:8]  # header, rule, five artifacts
    assert all(len(line) <= 80 for line in table), "\n".join(table)
    assert "…" not in text
    header = table[0].split()
    assert header[:5] == ["artifact", "acc", "%", "95%", "CI"]  # full header words, not "arti…" / "accu…"
    assert any(line.startswith("baseline-onnx") for line in table) and "87.4–91.4" in text
    assert "int8 speed-up: unstable, not claimed" in text  # rounds 20 ms / 2.0 … 4.5 ms disagree
    assert "5.71×" in text or "ref" in text  # the claimed ones stay numbers
    assert "ns" in table[4]  # Δ of one sentence: no significant change
    assert capsys.readouterr().out.strip() == text.strip()


def test_full_report_keeps_every_column():
    md = render_markdown(_results())
    assert "unstable, not claimed" in md and "[87.4, 91.4]" in md and "(n.s., p 1)" in md and "gzip MiB" in md


def test_a_table_too_wide_is_printed_vertically():
    head = ["artifact", "a very long header here", "another long header"]
    rows = [["x" * 40, "1" * 20, "2" * 20]]
    text = render(head, rows, width=80)
    assert "…" not in text and "x" * 40 in text and all(len(line) <= 80 for line in text.splitlines())
    assert text.splitlines()[1].strip().startswith("a very long header here: 1")


def test_bench_table_numbers_artifacts_and_fits():
    arts = ["runs/sst2-distill-8k-transfer/model", "runs/sst2-distill-8k-transfer/onnx/model.int8.onnx"]
    rows = [
        {
            "artifact": arts[0],
            "runtime": "torch",
            "device": "cpu",
            "threads": 2,
            "batch": 8,
            "seq": 128,
            "p50_ms": 451.2,
            "round_p50_ms": [451.2, 37.5, 40.1],
            "throughput_per_s": 17.7,
        },
        {
            "artifact": arts[1],
            "runtime": "onnxruntime",
            "device": "cpu",
            "threads": 2,
            "batch": 8,
            "seq": 128,
            "p50_ms": 5.1,
            "round_p50_ms": [5.0, 5.2, 5.1],
            "throughput_per_s": 1568.6,
        },
    ]
    head, out, legend = bench_summary(rows, arts)
    text = render(head, out, 80)
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert out[1][-1] == "unstable" and any("unstable, not claimed" in line for line in legend)
    assert legend[0] == f"#1 {arts[0]}"


def test_plot_axis_spans_the_intervals_and_draws_error_bars():
    from compressor.report.plots import Point, figures_for, metric_limits

    # the quickstart case: 70.00 % vs 70.17 % on 600 rows, intervals about ±3.7 points
    pts = [Point("", "pytorch", 90.0, 40.0, 0.7000, (0.6622, 0.7353)), Point("", "int8", 23.0, 10.0, 0.7017, (0.6640, 0.7369))]
    lo, hi = metric_limits(pts, 100.0)
    assert lo < 66.22 and hi > 73.69 and hi - lo > 7  # not a 0.2-point axis
    figs = figures_for([("", _results())])
    assert figs["size"][:8] == b"\x89PNG\r\n\x1a\n" and "latency" in figs
