"""``compressor plan`` said what each stage would buy; after the run, the report says whether it held.

The plan's rows (stage, verdict, why) are stored in metrics.json by the run. Each verdict that claims a
speed or size effect is checked against the measured artifacts that stage made: the ONNX export against
PyTorch, INT8 against the fp32 ONNX graph, the compressed model against the run's baseline.
"""

from __future__ import annotations

from compressor.report.common import NOISE, bench_devices, bench_shapes, p50
from compressor.report.document import Para, Section, Table

FASTER, SLOWER = 1 + NOISE, 1 - NOISE  # a speed ratio between them is "about the same": timing noise here


def _pair(kind: str, arts: dict) -> tuple[str, str] | None:
    """(made, reference): the artifacts whose comparison tests a stage's verdict."""
    if kind == "export":
        return ("onnx", "pytorch") if "onnx" in arts and "pytorch" in arts else None
    if kind == "quantize":
        return ("int8", "onnx") if "int8" in arts and "onnx" in arts else None
    if kind in ("prune", "distill", "finetune") and "baseline" in arts and "pytorch" in arts:
        return "pytorch", "baseline"
    return None


def _claims(verdict: str) -> tuple[bool | None, bool | None]:
    """(faster?, smaller?) as the verdict states them; None where it says nothing about that."""
    v = verdict.lower()
    faster = False if ("not faster" in v or "no gain" in v) else (True if "faster" in v else None)
    if "same size" in v:
        smaller = False
    else:
        smaller = True if "smaller" in v else None
    return faster, smaller


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def check_rows(results: dict) -> list[list[str]]:
    """[stage, plan said, measured, held?] per plan row that a measurement can test."""
    arts = results["artifacts"]
    shapes, devices = bench_shapes(results), bench_devices(results)
    shape, device = (shapes[0], "cpu" if "cpu" in devices else (devices[0] if devices else None)) if shapes else (None, None)
    rows = []
    for row in results.get("plan", []):
        stage, verdict = str(row.get("stage", "")), str(row.get("verdict", ""))
        kind = stage.split(" ")[1] if " " in stage else ""
        pair = _pair(kind, arts)
        faster, smaller = _claims(verdict)
        if pair is None or (faster is None and smaller is None):
            continue
        made, ref = pair
        measured, held = [], []
        if faster is not None and shape and device:
            t_made, t_ref = p50(arts[made], *shape, device), p50(arts[ref], *shape, device)
            if t_made and t_ref:
                ratio = t_ref / t_made
                measured.append(f"{made} {ratio:.2f}× the speed of {ref} at b{shape[0]}×{shape[1]} {device}")
                held.append(ratio >= FASTER if faster else ratio < FASTER)
        if smaller is not None:
            size_key = "gzip_bytes" if "when compressed" in verdict.lower() else "size_bytes"
            s_made, s_ref = arts[made].get(size_key), arts[ref].get(size_key)
            if s_made and s_ref:
                measured.append(f"{'gzip ' if size_key == 'gzip_bytes' else ''}size {_size(s_made)} vs {_size(s_ref)}")
                held.append(s_made < 0.97 * s_ref if smaller else s_made <= 1.03 * s_ref)
        if not held:
            continue
        verdict_held = "yes" if all(held) else ("no" if not any(held) else "partly")
        rows.append([stage, verdict, "; ".join(measured), verdict_held])
    return rows


HEAD = ["stage", "plan said", "measured here", "held?"]
NOTE = (
    "The plan's verdicts are rules about the runtimes, made before the run from config.json and the CPU's "
    f"flags; the measurements are this run's. A speed ratio between {SLOWER} and {FASTER} counts as about the "
    "same (timing noise)."
)


def plan_section(results: dict) -> Section | None:
    rows = check_rows(results)
    return Section("Plan vs measurement", blocks=[Table(HEAD, rows), Para(NOTE)]) if rows else None
