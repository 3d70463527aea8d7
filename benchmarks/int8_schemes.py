"""INT8 schemes on the MiniLM SST-2 teacher: the one-liner vs our dynamic and static (QDQ) variants.

Prerequisites:
    compressor run recipes/sst2-finetune.yaml                 # the teacher -> runs/sst2-finetune
    compressor run recipes/sst2-qat.yaml                      # optional: its QAT INT8 -> runs/sst2-qat
Then:
    python benchmarks/int8_schemes.py                         # writes benchmarks/INT8_RESULTS.md and int8_results.json
    python benchmarks/int8_schemes.py --max-drop 0.5          # static variants with the accuracy budget on

Expect about 10 minutes on 2 CPU cores (six static builds with calibration, twelve dev evaluations,
three timing rounds); with --max-drop add about 1.5 minutes per static variant that misses the budget
(each of its ~40 candidate nodes is re-quantized and probed alone).

Every variant is built here from the teacher's run directory (its fine-tuned model, its fp32 exports
and the training data its recipe names, for calibration), scored on the full SST-2 dev set by the
same code, and timed at batch x sequence --shapes (default 1x128), one ONNX Runtime session at a
time with spinning off. Timing runs in --rounds rounds over all variants (a session is created,
timed and dropped per variant and round) and reports the median of the per-round medians, so that
drift in machine load does not favour whichever variant ran first.

The one-liner baseline is what users type today: torch.onnx.export of the model, then
onnxruntime.quantization.quantize_dynamic with default settings (as in sst2_headline.py). The QAT row is
the INT8 file of the sst2-qat run (trained with fake quantization, exported as QDQ), when that run exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
METHODS = ("minmax", "percentile", "entropy")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sst2_headline import one_liner  # noqa: E402  (the same baseline in both tables)


def teacher_context(run_dir: Path, work: Path):
    """A RunContext over the teacher run: its recipe's data, its fine-tuned model, its fp32 exports."""
    from compressor.models import load_model
    from compressor.pipeline.orchestrate import build_context
    from compressor.recipe import load_recipe

    info = json.loads((run_dir / "run.json").read_text())
    recipe, _ = load_recipe(run_dir / "recipe.yaml")
    ctx = build_context(recipe, Path(info["recipe_dir"]), work)
    ctx.model = load_model(run_dir / "model", ctx.task, len(ctx.label_names), ctx.label_names)
    ctx.artifacts = {"onnx": run_dir / "onnx" / "model.onnx"}
    ctx.stage_path = "stages.0.quantize"
    (work / "onnx").mkdir(parents=True, exist_ok=True)
    return ctx


def fused_graphs(plain: Path, config, work: Path) -> tuple[Path, Path | None]:
    """ORT's fused graph of the teacher's export, made fresh here: (as fused, with the last layer for [CLS] only
    or None when that rewrite does not apply), so that both rows exist whichever code made the run."""
    from compressor.onnx.first_token import trim_file
    from compressor.onnx.onnx import optimize

    full, trimmed = work / "full.opt.onnx", work / "cls.opt.onnx"
    if optimize(plain, config, full) is None:
        raise SystemExit("ORT's optimizer did not fuse the teacher's export")
    shutil.copy(full, trimmed)
    record = trim_file(trimmed)
    if not record["applied"]:
        print(f"no CLS-only rows: {record['reason']}", flush=True)
        return full, None
    return full, trimmed


def build_variant(ctx, cfg, dest: Path) -> dict:
    """Run one quantize stage handler against the teacher context; keep its INT8 file as ``dest``."""
    from compressor.core.registry import STAGES
    from compressor.onnx.onnx import provenance_path
    from compressor.pipeline.orchestrate import _register_stages

    _register_stages()

    t0 = time.perf_counter()
    ctx.artifacts.pop("int8", None)
    result = STAGES.get(cfg)(ctx, cfg)
    made = ctx.artifacts["int8"]
    shutil.move(str(made), dest)
    shutil.move(str(provenance_path(made)), provenance_path(dest))
    result["build_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(ROOT / "runs" / "sst2-finetune"), help="run dir of the teacher")
    ap.add_argument("--qat-run", default=str(ROOT / "runs" / "sst2-qat"), help="run dir of the QAT recipe (optional)")
    ap.add_argument("--dev", default=str(DEV), help="data file to score on")
    ap.add_argument("--text", default="sentence")
    ap.add_argument("--label", default="label")
    ap.add_argument("--labels", default="0,1", help="label names in id order")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--shapes", default="1x128", help="batch x sequence list, e.g. 1x128,8x128")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--graphs", default="plain,fused", help="graphs the static variants quantize")
    ap.add_argument("--calibration-samples", type=int, default=256)
    ap.add_argument("--max-drop", type=float, default=None, help="accuracy budget (points) for the static variants")
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = ap.parse_args()
    run_dir, dev = Path(args.run), Path(args.dev)
    if not dev.is_file():
        print(f"skipped: {dev} is absent (see ../shared/data/SOURCES.md)")
        return 0
    if not (run_dir / "run.json").is_file() or not (run_dir / "onnx" / "model.onnx").is_file():
        print(f"missing run {run_dir}: run `compressor run recipes/sst2-finetune.yaml` first", file=sys.stderr)
        return 2

    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("compressor").setLevel(logging.WARNING)
    from compressor.data import encode_split, load_classification, make_loader
    from compressor.measure.artifacts import onnx_size
    from compressor.measure.bench.runner import bench_onnx, bench_torch, fingerprint, gzip_size
    from compressor.measure.evaluate import evaluate_onnx, evaluate_torch
    from compressor.recipe.schema import DataConfig, DynamicQuant, StaticQuant

    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="int8-schemes-"))
    try:
        ctx = teacher_context(run_dir, work / "ctx")
        task = ctx.task
        data = load_classification(
            DataConfig(
                train=str(dev),
                text=args.text,
                label=args.label,
                labels=args.labels.split(","),
                split={"dev": 0.0, "test": 0.0, "dedupe": False},
            ),
            None,
            0,
        )
        enc = encode_split(data.splits["train"], ctx.tokenizer, args.max_length)
        loader = lambda bs=64: make_loader(enc, ctx.tokenizer, bs, shuffle=False)  # noqa: E731
        vocab = ctx.model.config.vocab_size

        variants: list[dict] = []  # name, path (or None for torch), graph, notes
        variants.append({"name": "fp32 PyTorch", "kind": "torch", "graph": "-"})
        variants.append({"name": "fp32 ORT (plain export)", "path": ctx.artifacts["onnx"], "graph": "plain"})
        full, trimmed = fused_graphs(ctx.artifacts["onnx"], ctx.model.config, work)
        variants.append({"name": "fp32 ORT (fused, full last layer)", "path": full, "graph": "fused"})
        if trimmed is not None:
            variants.append({"name": "fp32 ORT (fused)", "path": trimmed, "graph": "fused + CLS-only"})
        fused_kind = "fused" if trimmed is None else "fused + CLS-only"
        t0 = time.perf_counter()
        _, ol = one_liner(run_dir / "model", work)
        variants.append(
            {
                "name": "one-liner INT8 (export + quantize_dynamic)",
                "path": ol,
                "graph": "plain",
                "build_seconds": round(time.perf_counter() - t0, 1),
            }
        )
        builds = [
            ("ours dynamic, full last layer", DynamicQuant(), full),
            ("ours dynamic (recipe default)", DynamicQuant(), None),
        ]
        builds.append(("ours dynamic, SkipLayerNorm kept fused", DynamicQuant(layernorm="fused"), None))
        builds.append(("ours dynamic, per-tensor weights", DynamicQuant(per_channel=False), None))
        budget = {"max_drop": args.max_drop} if args.max_drop is not None else {}
        for graph in [g for g in args.graphs.split(",") if g]:
            for m in METHODS:
                builds.append(
                    (
                        f"ours static {m} ({graph})",
                        StaticQuant(method=m, optimized=graph == "fused", calibration_samples=args.calibration_samples, **budget),
                        None,
                    )
                )
        for name, cfg, graph_path in builds:
            ctx.artifacts["onnx-opt"] = graph_path or trimmed or full
            dest = work / (name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "") + ".onnx")
            print(f"building {name} ...", flush=True)
            res = build_variant(ctx, cfg, dest)
            graph = res.get("graph", "fused" if cfg.optimized else "plain")
            variants.append(
                {
                    "name": name,
                    "path": dest,
                    "graph": fused_kind if graph == "fused" and graph_path is None else graph,
                    "kept_fp32": res.get("kept_fp32", []),
                    "fused_fallback": res.get("fused_fallback"),
                    "budget_passed": (res.get("budget") or {}).get("passed"),
                    "build_seconds": res["build_seconds"],
                }
            )

        qat = Path(args.qat_run) / "onnx" / "model.int8.onnx"
        if qat.is_file() and (Path(args.qat_run) / "status").read_text().strip() == "complete":
            variants.append({"name": "ours QAT (+ KD), QDQ export", "path": qat, "graph": "plain"})
        else:
            print(f"no QAT row: {qat} is missing (run recipes/sst2-qat.yaml)", flush=True)
        fp32_ort = None
        for v in variants:  # score, one at a time
            if v.get("kind") == "torch":
                v["metrics"] = evaluate_torch(ctx.model, loader(), task)
                v["metrics_b1"] = evaluate_torch(ctx.model, loader(1), task)
                weights = sorted((run_dir / "model").glob("*.safetensors"))
                v["size_bytes"] = sum(w.stat().st_size for w in weights)
                v["gzip_bytes"] = sum(gzip_size(w) for w in weights)
            else:
                v["metrics"] = evaluate_onnx(v["path"], loader(), task, args.threads)
                # dynamic INT8 scales activations per batch: one sentence at a time (no padding) is how b1 serving sees it
                v["metrics_b1"] = evaluate_onnx(v["path"], loader(1), task, args.threads)
                v["size_bytes"], v["gzip_bytes"] = onnx_size(v["path"]), gzip_size(v["path"])
                if v["name"] == "fp32 ORT (plain export)":
                    fp32_ort = v["metrics_b1"]["accuracy"]
            print(
                f"scored {v['name']:45s} acc {v['metrics']['accuracy'] * 100:6.2f} (b1 {v['metrics_b1']['accuracy'] * 100:6.2f})",
                flush=True,
            )

        batch_sizes, seqs = sorted({b for b, _ in shapes}), sorted({s for _, s in shapes})
        per_round: dict[str, dict[str, list[float]]] = {v["name"]: {} for v in variants}
        for r in range(args.rounds):  # time, one live session at a time, variants interleaved per round
            for v in variants:
                if v.get("kind") == "torch":
                    rows = bench_torch(ctx.model, batch_sizes, seqs, warmup=5, iterations=args.iterations, threads=args.threads)
                else:
                    rows = bench_onnx(
                        v["path"], vocab, batch_sizes, seqs, warmup=5, iterations=args.iterations, threads=args.threads
                    )
                for row in rows:
                    if (row["batch"], row["seq"]) in shapes:
                        per_round[v["name"]].setdefault(f"{row['batch']}x{row['seq']}", []).append(row["p50_ms"])
            print(f"timing round {r + 1}/{args.rounds} done", flush=True)
        for v in variants:
            v["p50_ms"] = {k: statistics.median(x) for k, x in per_round[v["name"]].items()}
            v["p50_rounds_ms"] = per_round[v["name"]]
            v["path"] = str(v.get("path", ""))

        ol_row = next(v for v in variants if v["name"].startswith("one-liner"))
        for v in variants:
            v["speedup_vs_oneliner"] = {k: ol_row["p50_ms"][k] / t for k, t in v["p50_ms"].items()}
            v["delta_pt_vs_fp32_ort"] = (v["metrics_b1"]["accuracy"] - fp32_ort) * 100
        out = {
            "run": str(run_dir),
            "dev_set": str(dev),
            "n_dev": len(enc),
            "shapes": args.shapes,
            "rounds": args.rounds,
            "iterations": args.iterations,
            "threads": args.threads,
            "max_drop": args.max_drop,
            "calibration_samples": args.calibration_samples,
            "fingerprint": fingerprint(),
            "variants": variants,
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        outdir = Path(args.out)
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "int8_results.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        (outdir / "INT8_RESULTS.md").write_text(render(out) + "\n")
        print(f"wrote {outdir / 'INT8_RESULTS.md'} and int8_results.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _flags(out: dict) -> str:
    flags = [
        f"--threads {out['threads']}" if out.get("threads") else "",
        f"--rounds {out['rounds']}",
        f"--max-drop {out['max_drop']}" if out.get("max_drop") is not None else "",
    ]
    return "".join(" " + f for f in flags if f)


def render(out: dict) -> str:
    shapes = list(out["variants"][0]["p50_ms"])
    head = ["variant", "graph", "dev acc % (b64)", "dev acc % (b1)", "Δ pt vs fp32 ORT (b1)", "size MB", "gzip MB"]
    head += [f"p50 ms b{s.replace('x', '×')}" for s in shapes] + [f"× vs one-liner ({shapes[0]})", "kept fp32", "build s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for v in out["variants"]:
        b1 = v.get("metrics_b1", v["metrics"])
        row = [
            v["name"],
            v["graph"],
            f"{v['metrics']['accuracy'] * 100:.2f}",
            f"{b1['accuracy'] * 100:.2f}",
            f"{v['delta_pt_vs_fp32_ort']:+.2f}",
            f"{v['size_bytes'] / 2**20:.1f}",
            f"{v['gzip_bytes'] / 2**20:.1f}",
        ]
        row += [f"{v['p50_ms'][s]:.2f}" for s in shapes]
        row += [
            f"{v['speedup_vs_oneliner'][shapes[0]]:.2f}×",
            str(len(v.get("kept_fp32") or [])),
            str(v.get("build_seconds", "")),
        ]
        lines.append("| " + " | ".join(row) + " |")
        if v.get("fused_fallback"):
            notes.append(f"- {v['name']}: fused graph not used: {v['fused_fallback']}")
        if v.get("kept_fp32"):
            notes.append(
                f"- {v['name']}: kept in fp32 by the accuracy budget: {', '.join(v['kept_fp32'])}"
                + ("" if v.get("budget_passed") else " (budget still missed; best trial kept)")
            )
    fp = out["fingerprint"]
    budget = (
        f"Static variants ran with the accuracy budget max_drop = {out['max_drop']} pt."
        if out["max_drop"] is not None
        else "Static variants ran without an accuracy budget (no fp32 fallback)."
    )
    return "\n".join(
        [
            "# INT8 schemes on the MiniLM SST-2 teacher",
            "",
            f"Generated by `python benchmarks/int8_schemes.py{_flags(out)}` on {out['created']} from `{out['run']}`. Accuracy on "
            f"{out['n_dev']} sentences of `{Path(out['dev_set']).name}` for every variant, by the same code, in batches of 64 "
            f"(padded to the longest) and one sentence at a time (b1: how a batch-1 server sees it; dynamic INT8 scales "
            f"activations per batch, so its accuracy moves with batching); Δ is taken at b1; latency = median over "
            f"{out['rounds']} interleaved rounds of the median of {out['iterations']} timed runs after warm-up, one live ONNX "
            f"Runtime session at a time with spinning off, threads = {out['threads'] or 'all cores'}. Static variants calibrate "
            f"on {out['calibration_samples']} training sentences. {budget}",
            "",
            *lines,
            "",
            *(["Notes:", "", *notes, ""] if notes else []),
            "Static INT8 is QDQ (uint8 activations, int8 per-channel weights) around the MatMuls / Gemms with constant weights "
            "and uint8 embedding tables; on the fused graph the Attention ops become QAttention (dynamic: ONNX Runtime has no "
            "static kernel for fused Attention). QAT: fake-quant training of every Linear layer (int8 per-channel weights, "
            "uint8 per-tensor activations) with KD from the fp32 teacher, exported as QDQ with int8 weights, and uint8 "
            "embedding tables only where they stay within the export's parity tolerance (else fp32 tables: a larger file; "
            "the run's log says which).",
            "",
            "Our INT8 graphs write each residual Add + LayerNorm as Sum + LayerNormalization where ONNX Runtime's fused "
            "SkipLayerNormalization kernel measures slower on the machine that builds them (`layernorm: auto`, the default; "
            "ORT fuses Add, not Sum, when it loads a graph, so the faster pair survives a default session). The row "
            "'SkipLayerNorm kept fused' is the recipe-default dynamic graph without that rewrite.",
            "",
            "Graph 'fused + CLS-only': ORT's fused graph with its last layer computed for the [CLS] token only "
            "(`export.cls_only_last_layer`, the default; compressor/onnx/first_token.py). The classifier reads one row of "
            "that layer, so its queries, attention output, feed-forward block and LayerNorms run for one token while its "
            "keys and values still see all of them: the same logits (fp32 rows above: identical accuracy), less work. The "
            "rows 'full last layer' are the same graphs without it, to show what each part buys.",
            "",
            "## Machine",
            "",
            f"{fp['cpu']}, {fp['cores']} cores, flags {', '.join(fp['cpu_flags'])}; torch {fp['torch']}, transformers "
            f"{fp['transformers']}, onnxruntime {fp['onnxruntime']}; GPU: {fp['gpu'] or 'none'}.",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
