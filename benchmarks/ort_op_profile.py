"""Where the time of an INT8 forward pass goes: ONNX Runtime's own per-operator profile, graph by graph.

Prerequisites:
    compressor run recipes/sst2-finetune.yaml          # the teacher -> runs/sst2-finetune
Then:
    python benchmarks/ort_op_profile.py                # writes benchmarks/INT8_PROFILE.md and int8_profile.json

Builds the one-liner (torch.onnx.export + quantize_dynamic, as in sst2_headline.py), our recipe-default
dynamic INT8 of the fused graph with and without the Sum + LayerNormalization rewrite
(compressor/quantize/cpu_graph.py), then with the last layer for [CLS] only as well
(compressor/onnx/first_token.py), and profiles each ONNX Runtime session at batch x sequence (default
1 x 128), one thread, one session at a time: per operator type, the mean kernel milliseconds per run
and the node count ORT actually executes (after its own load-time fusions). Integer GEMMs
(DynamicQuantizeMatMul, MatMulIntegerToFloat, MatMulInteger, QLinearMatMul and the GEMM inside
QAttention) run near this CPU's VNNI peak in every graph alike, so a speed-up over the one-liner can only
come from what surrounds them; the table shows how much that is.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_schemes import fused_graphs  # noqa: E402
from sst2_headline import one_liner  # noqa: E402  (the same baseline in every table)


def profile(path: Path, batch: int, seq: int, runs: int, vocab: int, prefix: Path) -> dict:
    """Per-op-type mean ms per run and node counts from ORT's profiler, plus the wall-clock median."""
    import onnxruntime as ort

    from compressor.onnx.session import session_options

    opts = session_options(threads=1)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(prefix)
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    from compressor.measure.bench.runner import synthetic_batch  # the inputs the benchmarks time

    synthetic = synthetic_batch(batch, seq, vocab)
    feed = {i.name: synthetic[i.name] for i in session.get_inputs()}
    for _ in range(10):
        session.run(None, feed)
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        wall.append(time.perf_counter() - t0)
    trace = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = collections.Counter()
    count: dict[str, int] = collections.Counter()
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            total[op] += event["dur"]
            count[op] += 1
    calls = runs + 10
    return {
        "wall_ms": float(np.median(wall)) * 1e3,
        "ops": {op: {"ms": total[op] / calls / 1e3, "nodes": count[op] // calls} for op in total},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(ROOT / "runs" / "sst2-finetune"), help="run dir of the teacher")
    ap.add_argument("--shape", default="1x128", help="batch x sequence")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = ap.parse_args()
    run_dir = Path(args.run)
    if not (run_dir / "onnx" / "model.opt.onnx").is_file():
        print(
            f"missing run {run_dir} (with its fused model.opt.onnx): `compressor run recipes/sst2-finetune.yaml` first",
            file=sys.stderr,
        )
        return 2
    import logging

    from compressor.measure.bench.runner import fingerprint
    from compressor.models import load_config
    from compressor.quantize.cpu_graph import tune_layernorm
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.recipe.schema import DynamicQuant

    logging.getLogger("compressor").setLevel(logging.WARNING)
    batch, seq = (int(x) for x in args.shape.split("x"))
    vocab = load_config(run_dir / "model").vocab_size
    work = Path(tempfile.mkdtemp(prefix="op-profile-"))
    try:
        _, ol = one_liner(run_dir / "model", work)
        full, trimmed = fused_graphs(run_dir / "onnx" / "model.onnx", load_config(run_dir / "model"), work)
        fused = work / "ours-fused-sln.onnx"
        quantize_dynamic_file(full, fused, DynamicQuant())
        ours = work / "ours.onnx"
        shutil.copy(fused, ours)
        decision = tune_layernorm(ours, "split")
        graphs = {"one-liner INT8": ol, "ours dynamic, SkipLayerNorm kept fused": fused, "ours dynamic (Sum + LayerNorm)": ours}
        if trimmed is not None:
            cls = work / "ours-cls.onnx"
            quantize_dynamic_file(trimmed, cls, DynamicQuant())
            tune_layernorm(cls, "split")
            graphs["ours dynamic (Sum + LayerNorm, [CLS]-only last layer)"] = cls
        results = {
            name: profile(path, batch, seq, args.runs, vocab, work / f"p{i}") for i, (name, path) in enumerate(graphs.items())
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "run": str(run_dir),
        "shape": args.shape,
        "runs": args.runs,
        "threads": 1,
        "rewrite": decision,
        "fingerprint": fingerprint(),
        "graphs": results,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "int8_profile.json").write_text(json.dumps(out, indent=2) + "\n")
    (outdir / "INT8_PROFILE.md").write_text(render(out) + "\n")
    print(render(out))
    return 0


INTEGER_GEMMS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "QLinearMatMul", "QAttention")


def render(out: dict) -> str:
    names = list(out["graphs"])
    ops = sorted(
        {op for g in out["graphs"].values() for op in g["ops"]},
        key=lambda op: -max(g["ops"].get(op, {}).get("ms", 0) for g in out["graphs"].values()),
    )
    head = ["operator"] + [f"{n}: ms (nodes)" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in ops:
        cells = []
        for n in names:
            o = out["graphs"][n]["ops"].get(op)
            cells.append(f"{o['ms']:.2f} ({o['nodes']})" if o else "-")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    kernel = {n: sum(o["ms"] for o in g["ops"].values()) for n, g in out["graphs"].items()}
    gemm = {n: sum(o["ms"] for op, o in g["ops"].items() if op in INTEGER_GEMMS) for n, g in out["graphs"].items()}
    lines.append("| **sum of kernels** | " + " | ".join(f"**{kernel[n]:.2f}**" for n in names) + " |")
    lines.append("| integer GEMM ops (incl. QAttention) | " + " | ".join(f"{gemm[n]:.2f}" for n in names) + " |")
    lines.append("| wall clock, median (no profiler) | " + " | ".join(f"{out['graphs'][n]['wall_ms']:.2f}" for n in names) + " |")
    fp = out["fingerprint"]
    return "\n".join(
        [
            "# Where INT8 time goes: ONNX Runtime operator profile, MiniLM SST-2 teacher",
            "",
            f"Generated by `python benchmarks/ort_op_profile.py` on {out['created']} from `{out['run']}`: batch × sequence "
            f"{out['shape']}, one thread, {out['runs']} profiled runs per graph, one session at a time. ms = mean kernel time "
            "per forward pass per operator type; (nodes) = nodes of that type ORT executes after its own load-time fusions. "
            "The wall clock was timed with the profiler on, so it runs a little above the benchmark tables.",
            "",
            *lines,
            "",
            f"Sum + LayerNorm rewrite: {out['rewrite']['skip_layernorm']} SkipLayerNormalization nodes written as "
            "Sum + LayerNormalization. [CLS]-only last layer: its Attention becomes Q/K/V MatMuls (the Q one on one row) "
            "and a MultiHeadAttention over one query; the layer's FFN and LayerNorms run on one row.",
            "",
            "## Machine",
            "",
            f"{fp['cpu']}, {fp['cores']} cores, flags {', '.join(fp['cpu_flags'])}; onnxruntime {fp['onnxruntime']}.",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
