"""What INT8 buys where ONNX Runtime has no fusion (issue 18): MPNet, DeBERTa-v2 and ModernBERT beside BERT.

For each family, a randomly initialised sequence classifier of one size (default: MiniLM-L6's shape, 6 layers,
hidden 384, 12 heads; latency does not depend on the weight values) is exported by ``compressor export --int8``
(BERT gets ORT's fused graph, the others the plain graph, as provenance says), and every graph is timed by
``compressor bench`` in interleaved rounds (batch 1 x 128 tokens). For the unfused families the script also tries
the generic part of ORT's BERT optimizer on the plain graph ("partial": LayerNorm / Gelu / SkipLayerNorm fusions
without an Attention fusion), keeps it only when its logits match the plain graph, and times it and its INT8.

    python benchmarks/unfused_families.py     # writes benchmarks/unfused_families.json and UNFUSED_FAMILIES.md
    python benchmarks/unfused_families.py --layers 2 --hidden 64 --heads 4 --iterations 20   # a quick look

Results depend on the machine and its load: the load average before and after is written beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("bert", "mpnet", "deberta-v2", "modernbert")


def build(model_type: str, folder: Path, layers: int, hidden: int, heads: int) -> Path:
    """A random-init classifier of ``model_type`` with the test WordPiece tokenizer (compressor.testing)."""
    import torch
    import transformers

    from compressor import testing as T

    name, _, kwargs = T.TINY[model_type]
    size = {"hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": layers, "intermediate_size": 4 * hidden}
    if model_type == "modernbert":
        size.update(local_attention=128, global_attn_every_n_layers=3)
    if model_type == "deberta-v2":
        size.update(position_buckets=256)
    torch.manual_seed(0)
    cfg = getattr(transformers, name)(vocab_size=T.vocab_size(), **{**kwargs, **size, "max_position_embeddings": 512})
    cfg.num_labels = 2
    model = transformers.AutoModelForSequenceClassification.from_config(cfg).eval()
    T.write_tokenizer(folder)
    model.save_pretrained(folder)
    return folder


def cli(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    r = subprocess.run([sys.executable, "-m", "compressor", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"compressor {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def partial_fusion(plain: Path, heads: int, hidden: int) -> tuple[Path | None, dict]:
    """ORT's BERT optimizer on a graph it has no Attention pattern for: which fusions it still finds, and whether the
    result matches the plain graph (max |diff| of the logits on random inputs)."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.transformers.optimizer import optimize_model

    out = plain.with_name("model.partial.onnx")
    try:
        opt = optimize_model(str(plain), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1)
        fusions = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        opt.save_model_to_file(str(out))
    except Exception as e:  # the optimizer gives up on some graphs
        return None, {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    rng = np.random.default_rng(0)
    a, b = ort.InferenceSession(str(plain)), ort.InferenceSession(str(out))
    worst = 0.0
    for length in (7, 64, 128):
        feed = {}
        for i in a.get_inputs():
            ids = rng.integers(5, 100, size=(2, length)) if i.name == "input_ids" else np.ones((2, length))
            feed[i.name] = ids.astype(np.int64)
        if "attention_mask" in feed:
            feed["attention_mask"][1:, length // 2 :] = 0
        worst = max(worst, float(np.abs(a.run(None, feed)[0] - b.run(None, feed)[0]).max()))
    ok = worst <= 1e-3
    if not ok:
        out.unlink()
    return (out if ok else None), {"fusions": fusions, "max_abs_diff": worst, "kept": ok}


def quantize(src: Path) -> Path:
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.recipe.schema import DynamicQuant

    dst = src.with_name(src.stem + ".int8.onnx")
    quantize_dynamic_file(src, dst, DynamicQuant())
    return dst


def bench(paths: list[Path], work: Path, iterations: int, rounds: int) -> dict:
    out = work / "bench.json"
    cli(
        "bench",
        *map(str, paths),
        "--batch-sizes",
        "1",
        "--seq-lengths",
        "128",
        "--iterations",
        str(iterations),
        "--rounds",
        str(rounds),
        "--warmup",
        "5",
        "--json",
        str(out),
    )
    return json.loads(out.read_text())


def family_rows(model_type: str, work: Path, args) -> dict:
    model_dir = build(model_type, work / model_type, args.layers, args.hidden, args.heads)
    onnx_dir = work / f"{model_type}-onnx"
    cli("export", str(model_dir), "-o", str(onnx_dir), "--int8")
    prov = json.loads((onnx_dir / "model.onnx.json").read_text())
    graphs = {"fp32 plain": onnx_dir / "model.onnx"}
    if (onnx_dir / "model.opt.onnx").exists():
        graphs["fp32 fused (ORT)"] = onnx_dir / "model.opt.onnx"
        graphs["INT8 of fused"] = onnx_dir / "model.int8.onnx"
        partial = {}
    else:
        graphs["INT8 of plain"] = onnx_dir / "model.int8.onnx"
        path, partial = partial_fusion(onnx_dir / "model.onnx", args.heads, args.hidden)
        if path is not None:
            graphs["fp32 partial fusion"] = path
            graphs["INT8 of partial"] = quantize(path)
    result = bench(list(graphs.values()), onnx_dir, args.iterations, args.rounds)
    by_path = {r["artifact"]: r for r in result["rows"]}
    base = by_path[str(graphs["fp32 plain"])]
    rows = []
    for label, path in graphs.items():
        r = by_path[str(path)]
        ratios = [b / x for b, x in zip(base["round_p50_ms"], r["round_p50_ms"])]
        rows.append(
            {
                "graph": label,
                "file": path.name,
                "p50_ms": round(r["p50_ms"], 3),
                "round_p50_ms": r["round_p50_ms"],
                "vs_plain": round(base["p50_ms"] / r["p50_ms"], 2),
                "round_ratios": [round(x, 2) for x in ratios],
                "size_mb": round(path.stat().st_size / 2**20, 2),
            }
        )
    return {
        "fusion": prov.get("fusion", {"applied": True}),
        "partial_fusion": partial,
        "rows": rows,
        "notes": result.get("notes", []),
        "fingerprint": result.get("fingerprint"),
        "timing_policy": result.get("timing_policy"),
    }


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"# INT8 where ONNX Runtime has no fusion (issue 18): {', '.join(report['families'])}",
        "",
        f"Random-init classifiers of one shape ({s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, "
        f"FFN {4 * s['hidden']}; latency does not depend on the weight values), batch 1 x 128 tokens, "
        f"{s['iterations']} timed runs in {s['rounds']} interleaved rounds per family, by `compressor bench`. "
        f"Machine: {report['machine']}. Load average {report['load_before']} before, {report['load_after']} "
        "after (a shared machine: read ratios, not absolute times; a ratio whose rounds disagree by more than "
        "25 % is not a claim).",
        "",
        "| family | graph | fusion | p50 ms | × vs fp32 plain | per-round ratios (median) | MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for fam, res in report["results"].items():
        fusion = res["fusion"]
        how = (
            "the plain export; ORT fuses it (next rows)"
            if fusion.get("applied", True)
            else "none: " + fusion.get("reason", "").split(": ", 1)[-1]
        )
        for i, r in enumerate(res["rows"]):
            spread = r["round_ratios"]
            steady = max(spread) <= 1.25 * min(spread)
            lines.append(
                f"| {fam} | {r['graph']} | {how if i == 0 else ''} | {r['p50_ms']} | "
                f"{r['vs_plain']}{'' if steady else ' (unstable)'} | {min(spread)}–{max(spread)} "
                f"({statistics.median(spread):.2f}) | {r['size_mb']} |"
            )
    lines += ["", "Partial fusion (ORT's BERT optimizer on a graph without a BERT attention pattern):", ""]
    for fam, res in report["results"].items():
        p = res["partial_fusion"]
        if p:
            lines.append(
                f"- {fam}: "
                + (
                    p["error"]
                    if "error" in p
                    else f"fusions {p['fusions'] or 'none'}, max |diff| vs plain {p['max_abs_diff']:.2e}, "
                    + ("kept and timed" if p["kept"] else "rejected (logits differ)")
                )
            )
    lines += ["", "Reading (computed from the rows above):", ""] + summary(report)
    return "\n".join(lines) + "\n"


def summary(report: dict) -> list[str]:
    """One line per family: INT8's median per-round ratio over fp32 plain, and whether the partial fusion beat the
    plain graph (fp32 and INT8), so that the conclusion is read off the measurement, not written beside it."""
    out = []
    for fam, res in report["results"].items():
        med = {r["graph"]: statistics.median(r["round_ratios"]) for r in res["rows"]}
        steady = {r["graph"]: max(r["round_ratios"]) <= 1.25 * min(r["round_ratios"]) for r in res["rows"]}
        int8 = next(g for g in med if g.startswith("INT8 of") and "partial" not in g)
        line = f"- {fam}: {int8} {med[int8]:.2f}× fp32 plain (median of the rounds{'' if steady[int8] else ', unstable'})"
        if "fp32 partial fusion" in med:
            better = med["INT8 of partial"] > med[int8]
            line += (
                f"; the partial fusion gives {med['fp32 partial fusion']:.2f}× in fp32 and {med['INT8 of partial']:.2f}× "
                f"in INT8, {'better' if better else 'not better'} than INT8 of the plain graph"
            )
        out.append(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "unfused_families.json")
    ap.add_argument("--md", type=Path, default=ROOT / "benchmarks" / "UNFUSED_FAMILIES.md")
    ap.add_argument("--from-json", type=Path, help="rewrite the Markdown from an earlier JSON, without measuring")
    args = ap.parse_args()
    if args.from_json:
        args.md.write_text(markdown(json.loads(args.from_json.read_text())))
        return
    families = [f.strip() for f in args.families.split(",")]
    load_before = round(os.getloadavg()[0], 2)
    results = {}
    with tempfile.TemporaryDirectory(prefix="unfused-") as tmp:
        for fam in families:
            t0 = time.perf_counter()
            results[fam] = family_rows(fam, Path(tmp), args)
            print(f"{fam}: done in {time.perf_counter() - t0:.0f}s", flush=True)
    fp = next(iter(results.values()))["fingerprint"] or {}
    report = {
        "families": families,
        "settings": {k: getattr(args, k) for k in ("layers", "hidden", "heads", "iterations", "rounds")},
        "machine": f"{fp.get('cpu', '?')}, {fp.get('cores', '?')} cores, onnxruntime {fp.get('onnxruntime', '?')}",
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.md.write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
