"""What every part of the report reads from metrics.json the same way: metrics, latencies, the split compared on,
the reference artifact, and the cells that format them. Pure functions over the metrics dict."""

from __future__ import annotations

from pathlib import Path

from compressor.core.stats import ratio_verdict

NOISE = 0.05  # latency ratios within 5 % of 1 are reported as "the same": that is run-to-run noise here
PLOT_TITLES = {
    "size": "{metric} vs size",
    "latency": "{metric} vs latency",
    "training": "training curves",
    "confusion": "confusion matrix",
}


def metric_value(rec: dict, split: str, name: str) -> float | None:
    return rec.get("metrics", {}).get(split, {}).get(name)


def bench_row(rec: dict, batch: int, seq: int, device: str = "cpu") -> dict | None:
    for r in rec.get("bench", []):
        if r["batch"] == batch and r["seq"] == seq and r["device"] == device:
            return r
    return None


def p50(rec: dict, batch: int, seq: int, device: str = "cpu") -> float | None:
    r = bench_row(rec, batch, seq, device)
    return None if r is None else r["p50_ms"]


def rounds(rec: dict, batch: int, seq: int, device: str = "cpu") -> list[float]:
    """Per-round median latencies (one value, the p50, for rows measured before rounds were recorded)."""
    r = bench_row(rec, batch, seq, device)
    return [] if r is None else list(r.get("round_p50_ms") or [r["p50_ms"]])


def eval_split(results: dict) -> str | None:
    """The split the report compares artifacts on: dev, else test."""
    arts = results["artifacts"]
    return next((s for s in ("dev", "test") if any(s in a.get("metrics", {}) for a in arts.values())), None)


def bench_shapes(results: dict) -> list[tuple[int, int]]:
    bs = results.get("bench_settings", {})
    return [(b, s) for b in bs.get("batch_sizes", []) for s in bs.get("seq_lengths", [])]


def bench_devices(results: dict) -> list[str]:
    return sorted({r["device"] for a in results["artifacts"].values() for r in a.get("bench", [])})


def reference(results: dict) -> str:
    """The artifact Δ and speed-up refer to: the uncompressed baseline when the run kept one, else PyTorch fp32."""
    return "baseline" if "baseline" in results["artifacts"] else "pytorch"


def speedup(results: dict, name: str, shape: tuple[int, int], device: str, ref: str | None = None):
    """The verdict on reference time / ``name``'s time at ``shape`` on ``device`` (``stats.ratio_verdict``)."""
    arts = results["artifacts"]
    ref = ref or reference(results)
    return ratio_verdict(rounds(arts.get(ref, {}), *shape, device), rounds(arts.get(name, {}), *shape, device))


def metric_cell(m: dict, name: str, with_ci: bool = True) -> str:
    """ "87.50 % [85.1, 89.6]" (accuracy, %) or "12.345 [12.1, 12.6]" (perplexity); the interval when recorded."""
    v = m.get(name)
    if v is None:
        return ""
    pct = name in ("accuracy", "f1_macro")
    text = f"{v * 100:.2f} %" if pct else f"{v:.3f}"
    ci = m.get(f"{name}_ci")
    if with_ci and ci and None not in ci:
        text += f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if pct else f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def delta_cell(m: dict, base_m: dict, name: str, long: bool = True) -> str:
    """Δ against the reference, marked "n.s." (no significant change) when the paired test says so."""
    v, b = m.get(name), base_m.get(name)
    if v is None or b is None:
        return ""
    text = f"{(v - b) * (100 if name == 'accuracy' else 1):+.2f}"
    paired = m.get("paired") or {}
    if "significant" not in paired:
        return text
    if long:
        p = f", p {paired['p_value']:.2g}" if "p_value" in paired else ""
        return text + (f" (n.s.{p})" if not paired["significant"] else (f" (p {paired['p_value']:.2g})" if p else " (sig.)"))
    return text + ("" if paired["significant"] else " ns")


def artifact_label(name: str, rec: dict) -> str:
    """``onnx (model.opt.onnx)``: an ONNX artifact's row names the file it measured; other rows keep their name."""
    path = rec.get("path")
    if rec.get("runtime") == "onnxruntime" and path:
        return f"{name} ({Path(str(path)).name})"
    return name


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
