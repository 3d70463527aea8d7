"""Reproduce the headline table on the real MiniLM + SST-2, all variants measured in one run.

Prerequisites (each a normal `compressor run`, 13–30 min on 2 CPU cores):
    compressor run recipes/sst2-teacher.yaml
    compressor run recipes/sst2-distill.yaml                      # KD: logits + hidden  -> runs/sst2-distill-lh
    compressor run recipes/sst2-distill.yaml --set name=sst2-distill-logits \
        --set "stages.0.distill.losses=[{type: logits, temperature: 2.0, alpha: 0.5}]"
    compressor run recipes/sst2-distill.yaml --set name=sst2-distill \
        --set "stages.0.distill.losses=[{type: logits}, {type: hidden}, {type: attention}]"
    compressor run recipes/sst2-distill.yaml --set name=sst2-student-hard \
        --set "stages.0.distill.losses=[{type: logits, alpha: 1.0}]"  # hard labels only, same steps and seed
Then:
    python benchmarks/sst2_headline.py            # writes benchmarks/RESULTS.md and results.json

Every variant is scored on the full SST-2 dev set (872 sentences) by the same code and timed
here, one ONNX Runtime session at a time (spinning off), at batch × sequence given by --shapes.
The "one-liner" baseline is what users type today: torch.onnx.export of the default model,
then onnxruntime.quantization.quantize_dynamic with default settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
HARD = "hard labels only"
STUDENTS = [  # (label, run name): the runs the recipes in the docstring produce
    ("KD: logits + hidden", "sst2-distill-lh"),
    ("KD: logits", "sst2-distill-logits"),
    ("KD: logits + hidden + attention", "sst2-distill"),
    (HARD, "sst2-student-hard"),
]


def one_liner(model_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """torch.onnx.export + quantize_dynamic, as in the docs; inputs passed by name."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    enc = tok(["a sample sentence", "another one"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = out_dir / "oneliner.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (), str(fp32), kwargs={n: enc[n] for n in names}, input_names=names,
                          output_names=["logits"], dynamic_axes={n: {0: "b", 1: "s"} for n in names} | {"logits": {0: "b"}},
                          opset_version=17, dynamo=False)
        int8 = out_dir / "oneliner.int8.onnx"
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    ap.add_argument("--shapes", default="1x128,8x128", help="batch x sequence list")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = ap.parse_args()
    if not DEV.is_file():
        print(f"skipped: {DEV} is absent (see ../shared/data/SOURCES.md)")
        return 0

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from compressor.bench.runner import bench_onnx, bench_torch, fingerprint, gzip_size
    from compressor.data import encode_split, load_classification, make_loader
    from compressor.evaluate import evaluate_onnx, evaluate_torch
    from compressor.models import count_parameters, load_model, load_tokenizer
    from compressor.recipe.schema import DataConfig
    from compressor.report.metrics import onnx_size

    runs = Path(args.runs)
    teacher = runs / "sst2-teacher"
    students = {label: runs / name for label, name in STUDENTS if (runs / name / "metrics.json").is_file()}
    for d in [teacher, runs / "sst2-distill", runs / "sst2-student-hard"]:
        if not (d / "metrics.json").is_file():
            print(f"missing run {d}: run the recipes named in this script's docstring first", file=sys.stderr)
            return 2
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    batch_sizes = sorted({b for b, _ in shapes})
    seqs = sorted({s for _, s in shapes})

    tok = load_tokenizer(teacher / "model")
    data = load_classification(DataConfig(train=str(DEV), text="sentence", label="label", labels=["0", "1"],
                                          split={"dev": 0.0, "test": 0.0, "dedupe": False}), None, 0)
    enc = encode_split(data.splits["train"], tok, 128)
    loader = lambda: make_loader(enc, tok, 64, shuffle=False)  # noqa: E731

    tmp = Path(tempfile.mkdtemp(prefix="headline-"))
    variants = []  # (name, stages, kind, path or model, params)

    t_model = load_model(teacher / "model", "sequence-classification", 2)
    t_params = count_parameters(t_model)
    ol_fp32, ol_int8 = one_liner(teacher / "model", tmp)
    variants += [
        ("teacher fp32 (PyTorch)", "finetune", "torch", t_model, t_params, teacher / "model" / "model.safetensors"),
        ("teacher fp32 ORT (plain export)", "finetune, export", "onnx", ol_fp32, t_params, ol_fp32),
        ("one-liner INT8 (export + quantize_dynamic)", "finetune, export, quantize_dynamic", "onnx", ol_int8, t_params, ol_int8),
        ("teacher fp32 ORT (fused)", "finetune, export+optimize", "onnx", teacher / "onnx/model.opt.onnx", t_params,
         teacher / "onnx/model.opt.onnx"),
        ("teacher INT8 (ours: fused + dynamic)", "finetune, export, quantize", "onnx", teacher / "onnx/model.int8.onnx", t_params,
         teacher / "onnx/model.int8.onnx"),
    ]
    for label, d in students.items():
        s_model = load_model(d / "model", "sequence-classification", 2)
        p = count_parameters(s_model)
        variants += [
            (f"student 3L {label} (PyTorch)", f"distill ({label})", "torch", s_model, p, d / "model" / "model.safetensors"),
            (f"student 3L {label} ORT fused", f"distill ({label}), export", "onnx", d / "onnx/model.opt.onnx", p,
             d / "onnx/model.opt.onnx"),
            (f"student 3L {label} INT8", f"distill ({label}), export, quantize", "onnx", d / "onnx/model.int8.onnx", p,
             d / "onnx/model.int8.onnx"),
        ]

    records = []
    for name, stages, kind, obj, params, file in variants:
        t0 = time.perf_counter()
        if kind == "torch":
            metrics = evaluate_torch(obj, loader(), "sequence-classification")
            rows = bench_torch(obj, batch_sizes, seqs, warmup=5, iterations=args.iterations, threads=args.threads)
            size = file.stat().st_size
        else:
            metrics = evaluate_onnx(obj, loader(), "sequence-classification", args.threads)
            rows = bench_onnx(obj, 30522, batch_sizes, seqs, warmup=5, iterations=args.iterations, threads=args.threads)
            size = onnx_size(obj)
        p50 = {f"{r['batch']}x{r['seq']}": r["p50_ms"] for r in rows if (r["batch"], r["seq"]) in shapes}
        records.append({"name": name, "stages": stages, "metric": "accuracy", "value": metrics["accuracy"],
                        "f1_macro": metrics["f1_macro"], "params": params, "size_bytes": size, "gzip_bytes": gzip_size(file),
                        "p50_ms": p50})
        print(f"{name:48s} acc {metrics['accuracy']*100:6.2f}  " + "  ".join(f"{k} {v:7.2f} ms" for k, v in p50.items())
              + f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    base = next(r for r in records if r["name"].startswith("teacher fp32 (PyTorch)"))
    ol = next(r for r in records if r["name"].startswith("one-liner"))
    for r in records:
        r["speedup_vs_teacher"] = {k: base["p50_ms"][k] / v for k, v in r["p50_ms"].items()}
        r["speedup_vs_oneliner"] = {k: ol["p50_ms"][k] / v for k, v in r["p50_ms"].items()}
    fp = fingerprint()
    distill = {}
    for label, d in students.items():
        m = json.loads((d / "metrics.json").read_text())
        st = next(s for s in m["stages"] if s["stage"] == "distill")
        distill[label] = {"run": d.name, "steps": st["steps"], "losses": st["losses"], "seed": m["seed"],
                          "best_step": st["best_step"], "best_dev": st["best_dev"]}
    out = {"dev_set": str(DEV.relative_to(ROOT.parent)), "n_dev": len(enc), "shapes": args.shapes, "fingerprint": fp,
           "variants": records, "distill_runs": distill,
           "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    outdir = Path(args.out)
    (outdir / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    (outdir / "RESULTS.md").write_text(render(out) + "\n")
    print(f"wrote {outdir / 'RESULTS.md'} and results.json")
    return 0


def render(out: dict) -> str:
    shapes = list(out["variants"][0]["p50_ms"])
    head = ["variant", "stages", "dev acc %", "Δ pt vs teacher", "params M", "size MB", "gzip MB"]
    head += [f"p50 ms b{s.replace('x', '×')}" for s in shapes]
    head += [f"× vs teacher ({shapes[0]})", f"× vs one-liner ({shapes[0]})"]
    base = out["variants"][0]["value"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in out["variants"]:
        row = [r["name"], r["stages"], f"{r['value'] * 100:.2f}", f"{(r['value'] - base) * 100:+.2f}", f"{r['params'] / 1e6:.2f}",
               f"{r['size_bytes'] / 2**20:.1f}", f"{r['gzip_bytes'] / 2**20:.1f}"]
        row += [f"{r['p50_ms'][s]:.2f}" for s in shapes]
        row += [f"{r['speedup_vs_teacher'][shapes[0]]:.2f}×", f"{r['speedup_vs_oneliner'][shapes[0]]:.2f}×"]
        lines.append("| " + " | ".join(row) + " |")
    fp = out["fingerprint"]
    acc = {r["name"]: r["value"] for r in out["variants"]}
    t = acc["teacher fp32 (PyTorch)"]
    hard = acc[f"student 3L {HARD} (PyTorch)"]
    dlines = []
    for label, info in out["distill_runs"].items():
        a = acc[f"student 3L {label} (PyTorch)"]
        losses = " + ".join(f"{x['type']}" + (f" (τ {x['temperature']}, α {x['alpha']})" if x["type"] == "logits" else "")
                            + (f" ×{x['weight']}" if x["weight"] != 1.0 else "") for x in info["losses"])
        dlines.append(f"| {label} | `{info['run']}` | {losses} | {info['steps']} | {a * 100:.2f} | {a / t * 100:.1f} % | "
                      f"{(a - hard) * 100:+.2f} |")
    return "\n".join([
        "# compressor: headline results (MiniLM-L6 on SST-2)", "",
        f"Generated by `python benchmarks/sst2_headline.py` on {out['created']}. Accuracy on the full SST-2 dev set "
        f"({out['n_dev']} sentences) for every variant, by the same code; latency = median over timed runs after "
        "warm-up, one live ONNX Runtime session at a time with spinning off, all in the same process and run.", "",
        *lines, "",
        "## Distillation (issue 3)", "",
        f"Teacher: MiniLM-L6 fine-tuned on 8,000 SST-2 rows, {t * 100:.2f} % dev. Every student has 3 layers initialised "
        "from teacher layers 0/2/4 and is trained for the same steps with the same seed, data order and schedule; only "
        "the losses differ. All runs, including the ones that did not help, are listed.", "",
        "| student | run | losses | steps | dev acc % | of teacher | vs hard labels (pt) |", "|---|---|---|---|---|---|---|",
        *dlines, "",
        "The best checkpoint of each run is chosen on the same dev set that is reported (GLUE's test labels are "
        "not public), for every variant alike.", "",
        "## Machine", "",
        f"{fp['cpu']}, {fp['cores']} cores, flags {', '.join(fp['cpu_flags'])}; torch {fp['torch']}, transformers "
        f"{fp['transformers']}, onnxruntime {fp['onnxruntime']}; GPU: {fp['gpu'] or 'none'}.",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
