"""Reproduce the headline table on the real MiniLM + SST-2: every variant measured in one run, on one machine.

Prerequisites: the runs the recipes make (each a normal `compressor run`; times on 2 CPU cores):
    compressor run recipes/sst2-finetune.yaml      # the teacher, ~60 min          -> runs/sst2-finetune
    compressor run recipes/sst2-distill.yaml       # 3-layer KD student, ~40 min   -> runs/sst2-distill
    compressor run recipes/sst2-distill.yaml --set name=sst2-student-hard \\
        --set "stages.0.distill.losses=[{type: logits, alpha: 1.0}]"                # hard labels only, same steps and seed
    compressor run recipes/sst2-distill-8k.yaml    # the same KD student on 8,000 labelled rows
    compressor run recipes/sst2-distill-8k.yaml --set name=sst2-student-hard-8k \\
        --set "stages.0.distill.losses=[{type: logits, alpha: 1.0}]"                # ... and its hard-label twin
    compressor run recipes/sst2-distill-8k-transfer.yaml  # ... plus the rest of SST-2 train as unlabelled transfer text
    compressor run recipes/sst2-8k-teacher.yaml    # the brief's reference setting: an 8k-row teacher ...
    compressor run recipes/sst2-8k-distill.yaml    # ... its KD student, and its hard-label twin:
    compressor run recipes/sst2-8k-distill.yaml --set name=sst2-8k-student-hard \\
        --set "stages.0.distill.losses=[{type: logits, alpha: 1.0}]"
    compressor run recipes/sst2-qat-student.yaml   # QAT (+ KD) of the KD student
    compressor run recipes/sst2-prune80.yaml       # KD + 80 % gradual magnitude pruning
    compressor run recipes/sst2-structured.yaml    # heads / FFN removed + KD recovery
    compressor run recipes/sst2-vocab.yaml         # vocabulary trimming
    compressor run recipes/sst2-qat.yaml           # QAT (+ KD from the fp32 teacher)
    compressor run recipes/sst2-combined.yaml      # student + vocabulary trimming + INT8
Then:
    python benchmarks/sst2_headline.py             # writes benchmarks/RESULTS.md and benchmarks/results.json

Runs that are missing are listed as such and left out. Every variant is scored on the full SST-2 dev set
(872 sentences) by the same code and timed here at --shapes, in --rounds interleaved rounds (each round
times every variant once; the reported latency is the median of the per-round medians, so machine drift
favours no variant), one live ONNX Runtime session at a time with idle spinning off. The "one-liner"
is what users type today: torch.onnx.export of the teacher, then quantize_dynamic with default settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
TEACHER = "sst2-finetune"
# (run, label, stages, artifacts to take: (suffix, kind, file relative to the run dir))
RUNS = [
    (
        TEACHER,
        "teacher",
        "finetune",
        [
            ("fp32 PyTorch", "torch", "model"),
            ("fp32 ORT fused", "onnx", "onnx/model.opt.onnx"),
            ("INT8 dynamic (ours)", "onnx", "onnx/model.int8.onnx"),
        ],
    ),
    ("sst2-qat", "teacher", "finetune → QAT + KD", [("INT8 QAT", "onnx", "onnx/model.int8.onnx")]),
    (
        "sst2-vocab",
        "teacher vocab-trimmed",
        "finetune → prune vocabulary",
        [("fp32 ORT fused", "onnx", "onnx/model.opt.onnx"), ("INT8", "onnx", "onnx/model.int8.onnx")],
    ),
    (
        "sst2-structured",
        "teacher structured (8/12 heads, FFN 768)",
        "finetune → prune structured → KD recovery",
        [
            ("fp32 PyTorch", "torch", "model"),
            ("fp32 ORT fused", "onnx", "onnx/model.opt.onnx"),
            ("INT8", "onnx", "onnx/model.int8.onnx"),
        ],
    ),
    (
        "sst2-distill",
        "student 3L KD",
        "finetune → distill (logits + hidden)",
        [
            ("fp32 PyTorch", "torch", "model"),
            ("fp32 ORT fused", "onnx", "onnx/model.opt.onnx"),
            ("INT8", "onnx", "onnx/model.int8.onnx"),
        ],
    ),
    (
        "sst2-student-hard",
        "student 3L hard labels",
        "finetune → same student, hard labels only",
        [("fp32 PyTorch", "torch-acc", "model")],
    ),
    (
        "sst2-distill-8k",
        "student 3L KD, 8k rows",
        "finetune → distill on 8,000 labelled rows (logits + hidden)",
        [("fp32 PyTorch", "torch-acc", "model")],
    ),
    (
        "sst2-distill-8k-transfer",
        "student 3L KD, 8k rows + transfer set",
        "finetune → distill on 8,000 labelled rows + 59k unlabelled sentences (teacher-supervised)",
        [("fp32 PyTorch", "torch-acc", "model")],
    ),
    (
        "sst2-student-hard-8k",
        "student 3L hard labels, 8k rows",
        "finetune → same student, 8,000 rows, hard labels only",
        [("fp32 PyTorch", "torch-acc", "model")],
    ),
    ("sst2-8k-teacher", "8k-row teacher", "finetune on 8,000 rows", [("fp32 PyTorch", "torch-acc", "model")]),
    (
        "sst2-8k-distill",
        "8k-row teacher's student 3L KD",
        "finetune (8k) → distill (8k)",
        [("fp32 PyTorch", "torch-acc", "model")],
    ),
    (
        "sst2-8k-student-hard",
        "8k-row teacher's student 3L hard labels",
        "finetune (8k) → same student, hard labels only",
        [("fp32 PyTorch", "torch-acc", "model")],
    ),
    ("sst2-qat-student", "student 3L KD", "finetune → distill → QAT + KD", [("INT8 QAT", "onnx", "onnx/model.int8.onnx")]),
    (
        "sst2-prune80",
        "student 3L KD + 80 % sparse",
        "finetune → distill → KD + gradual magnitude pruning",
        [
            ("fp32 PyTorch", "torch", "model"),
            ("fp32 ORT fused", "onnx", "onnx/model.opt.onnx"),
            ("INT8", "onnx", "onnx/model.int8.onnx"),
        ],
    ),
    (
        "sst2-combined",
        "student 3L KD + vocab-trimmed",
        "finetune → distill → prune vocabulary → INT8",
        [("fp32 ORT fused", "onnx", "onnx/model.opt.onnx"), ("INT8", "onnx", "onnx/model.int8.onnx")],
    ),
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
        torch.onnx.export(
            model,
            (),
            str(fp32),
            kwargs={n: enc[n] for n in names},
            input_names=names,
            output_names=["logits"],
            dynamic_axes={n: {0: "b", 1: "s"} for n in names} | {"logits": {0: "b"}},
            opset_version=17,
            dynamo=False,
        )
        int8 = out_dir / "oneliner.int8.onnx"
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    ap.add_argument("--shapes", default="1x128,8x128", help="batch x sequence list")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    ap.add_argument("--limit", type=int, default=None, help="score only the first N dev sentences (a smoke check, not results)")
    args = ap.parse_args()
    if not DEV.is_file():
        print(f"skipped: {DEV} is absent (see ../shared/data/SOURCES.md)")
        return 0
    runs = Path(args.runs)
    if not (runs / TEACHER / "status").is_file() or (runs / TEACHER / "status").read_text().strip() != "complete":
        print(f"missing run {runs / TEACHER}: `compressor run recipes/sst2-finetune.yaml` first", file=sys.stderr)
        return 2

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from compressor.data import encode_split, load_classification, make_loader
    from compressor.measure.artifacts import nonzero_parameters, onnx_size
    from compressor.measure.bench.runner import bench_onnx, bench_torch, fingerprint, gzip_size
    from compressor.measure.evaluate import evaluate_onnx, evaluate_torch
    from compressor.models import count_parameters, load_model, load_tokenizer
    from compressor.recipe.schema import DataConfig

    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    keys = [f"{b}x{s}" for b, s in shapes]
    data = load_classification(
        DataConfig(
            train=str(DEV), text="sentence", label="label", labels=["0", "1"], split={"dev": 0.0, "test": 0.0, "dedupe": False}
        ),
        None,
        0,
    )
    if args.limit:
        data.splits["train"] = data.splits["train"].take(list(range(min(args.limit, len(data.splits["train"])))))
    tmp = Path(tempfile.mkdtemp(prefix="headline-"))
    variants, missing = [], []
    try:
        ol_fp32, ol_int8 = one_liner(runs / TEACHER / "model", tmp)
        for run, label, stages, takes in RUNS:
            d = runs / run
            if not (d / "status").is_file() or (d / "status").read_text().strip() != "complete":
                missing.append(run)
                continue
            model_dir = d / "model"
            tok = load_tokenizer(model_dir)
            enc = encode_split(data.splits["train"], tok, 128)
            model = load_model(model_dir, "sequence-classification", 2)
            params, nonzero = count_parameters(model), nonzero_parameters(model)
            extra = []
            if run == TEACHER:  # the one-liner baseline rows, from the same teacher
                extra = [
                    ("fp32 ORT plain export (torch.onnx.export)", "onnx", ol_fp32, "finetune → torch.onnx.export"),
                    (
                        "one-liner INT8 (export + quantize_dynamic)",
                        "onnx",
                        ol_int8,
                        "finetune → torch.onnx.export → quantize_dynamic",
                    ),
                ]
            for suffix, kind, rel in takes:
                path = d / rel
                if not path.exists():
                    missing.append(f"{run}/{rel}")
                    continue
                variants.append(
                    {
                        "name": f"{label}: {suffix}",
                        "run": run,
                        "stages": stages,
                        "kind": kind.removesuffix("-acc"),
                        "timed": not kind.endswith("-acc"),
                        "path": path,
                        "model": model if kind.startswith("torch") else None,
                        "enc": enc,
                        "tok": tok,
                        "params": params,
                        "nonzero_params": nonzero,
                        "vocab": model.config.vocab_size,
                    }
                )
            for name, kind, path, st in extra:
                variants.append(
                    {
                        "name": f"{label}: {name}",
                        "run": run,
                        "stages": st,
                        "kind": kind,
                        "timed": True,
                        "path": path,
                        "model": None,
                        "enc": enc,
                        "tok": tok,
                        "params": params,
                        "nonzero_params": nonzero,
                        "vocab": model.config.vocab_size,
                    }
                )
        for v in variants:  # score, one at a time
            loader = make_loader(v["enc"], v["tok"], 64, shuffle=False)
            if v["kind"] == "torch":
                v["metrics"] = evaluate_torch(v["model"], loader, "sequence-classification")
                weights = sorted(v["path"].glob("*.safetensors"))
                v["size_bytes"], v["gzip_bytes"] = sum(w.stat().st_size for w in weights), sum(gzip_size(w) for w in weights)
            else:
                v["metrics"] = evaluate_onnx(v["path"], loader, "sequence-classification", args.threads)
                v["size_bytes"], v["gzip_bytes"] = onnx_size(v["path"]), gzip_size(v["path"])
            print(f"scored {v['name']:62s} acc {v['metrics']['accuracy'] * 100:6.2f}", flush=True)
        rounds: dict[str, dict[str, list[float]]] = {v["name"]: {} for v in variants}
        bs, seqs = sorted({b for b, _ in shapes}), sorted({s for _, s in shapes})
        for r in range(args.rounds):
            for v in variants:
                if not v["timed"]:  # accuracy-only rows (the same architecture is timed in another row)
                    continue
                if v["kind"] == "torch":
                    rows = bench_torch(v["model"], bs, seqs, warmup=5, iterations=args.iterations, threads=args.threads)
                else:
                    rows = bench_onnx(v["path"], v["vocab"], bs, seqs, warmup=5, iterations=args.iterations, threads=args.threads)
                for row in rows:
                    if (row["batch"], row["seq"]) in shapes:
                        rounds[v["name"]].setdefault(f"{row['batch']}x{row['seq']}", []).append(row["p50_ms"])
            print(f"timing round {r + 1}/{args.rounds} done", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    records = []
    for v in variants:
        records.append(
            {
                "name": v["name"],
                "run": v["run"],
                "stages": v["stages"],
                "runtime": v["kind"],
                "artifact": str(v["path"].relative_to(runs)) if v["path"].is_relative_to(runs) else v["path"].name,
                "metric": "accuracy",
                "value": v["metrics"]["accuracy"],
                "f1_macro": v["metrics"]["f1_macro"],
                "params": v["params"],
                "nonzero_params": v["nonzero_params"],
                "size_bytes": v["size_bytes"],
                "gzip_bytes": v["gzip_bytes"],
                "p50_ms": {k: statistics.median(rounds[v["name"]][k]) for k in keys if k in rounds[v["name"]]},
                "p50_rounds_ms": rounds[v["name"]],
            }
        )
    base = next(r for r in records if r["name"] == "teacher: fp32 PyTorch")
    ol = next(r for r in records if r["name"].startswith("teacher: one-liner"))
    fp = fingerprint()
    for r in records:
        r["speedup_vs_teacher"] = {k: base["p50_ms"][k] / r["p50_ms"][k] for k in r["p50_ms"]}
        r["speedup_vs_oneliner"] = {k: ol["p50_ms"][k] / r["p50_ms"][k] for k in r["p50_ms"]}
        r["fingerprint"] = fp
    out = {
        "dev_set": "../shared/data/sst2/dev.tsv",
        "n_dev": len(data.splits["train"]),
        "shapes": keys,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "threads": args.threads,
        "fingerprint": fp,
        "missing": missing,
        "variants": records,
        "runs": run_facts(runs),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    outdir = Path(args.out)
    (outdir / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    (outdir / "RESULTS.md").write_text(render(out) + "\n")
    print(f"wrote {outdir / 'RESULTS.md'} and results.json" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return 0


def run_facts(runs: Path) -> dict:
    """What each run did (from its metrics.json): training steps, best dev, pruning / distillation facts."""
    out = {}
    for run, *_ in RUNS:
        f = runs / run / "metrics.json"
        if not f.is_file():
            continue
        m = json.loads(f.read_text())
        facts = {"seconds": m.get("seconds"), "seed": m.get("seed"), "data": m.get("data"), "stages": []}
        for s in m["stages"]:
            keep = {
                k: s[k]
                for k in (
                    "stage",
                    "seconds",
                    "steps",
                    "best_step",
                    "best_dev",
                    "losses",
                    "type",
                    "vocab_before",
                    "vocab_after",
                    "params_before",
                    "params_after",
                    "dev_before",
                    "dev_after",
                )
                if k in s
            }
            if "prune" in s:
                keep["prune"] = {k: v for k, v in s["prune"].items() if k not in ("layers",)}
            if "teacher" in s:
                keep["teacher"] = s["teacher"]
            facts["stages"].append(keep)
        out[run] = facts
    return out


def _table(records: list[dict], keys: list[str]) -> list[str]:
    head = ["variant", "dev acc %", "Δ pt vs teacher", "params M", "size MB", "gzip MB"]
    head += [f"p50 ms b{k.replace('x', '×')}" for k in keys] + [f"× vs teacher ({keys[0]})", f"× vs one-liner ({keys[0]})"]
    base = next(r for r in records if r["name"] == "teacher: fp32 PyTorch")["value"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        nz = f" ({r['nonzero_params'] / 1e6:.2f} nonzero)" if r["nonzero_params"] < 0.9 * r["params"] else ""
        row = [
            r["name"],
            f"{r['value'] * 100:.2f}",
            f"{(r['value'] - base) * 100:+.2f}",
            f"{r['params'] / 1e6:.2f}{nz}",
            f"{r['size_bytes'] / 2**20:.1f}",
            f"{r['gzip_bytes'] / 2**20:.1f}",
        ]
        row += [f"{r['p50_ms'][k]:.2f}" if k in r["p50_ms"] else "not timed" for k in keys]
        row += [f"{r[x][keys[0]]:.2f}×" if keys[0] in r[x] else "–" for x in ("speedup_vs_teacher", "speedup_vs_oneliner")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _sparse_vs_dense(recs: list[dict], key: str) -> str:
    """The measured ORT latency of the 80 %-sparse student next to the dense one (same graph shapes)."""
    by = {r["name"]: r for r in recs}
    a, b = by.get("student 3L KD: fp32 ORT fused"), by.get("student 3L KD + 80 % sparse: fp32 ORT fused")
    if not a or not b or key not in a["p50_ms"] or key not in b["p50_ms"]:
        return ""
    return (
        f": ORT fp32 b{key.replace('x', '×')} {b['p50_ms'][key]:.2f} ms sparse vs {a['p50_ms'][key]:.2f} ms dense "
        f"(ratio {a['p50_ms'][key] / b['p50_ms'][key]:.2f}, within this machine's timing noise)"
    )


def render(out: dict) -> str:
    keys, recs = out["shapes"], out["variants"]
    acc = {r["name"]: r["value"] for r in recs}
    t = acc["teacher: fp32 PyTorch"]
    runs = out["runs"]
    fp = out["fingerprint"]
    lines = [
        "# compressor: headline results (MiniLM-L6 on SST-2)",
        "",
        f"Generated by `python benchmarks/sst2_headline.py` on {out['created']}. Accuracy on the full SST-2 dev set "
        f"({out['n_dev']} sentences) for every variant, by the same code; latency = median over {out['rounds']} "
        f"interleaved rounds of the median of {out['iterations']} timed runs after warm-up, one live ONNX Runtime "
        f"session at a time with spinning off, {out['threads'] or fp['cores']} threads, all in one process. "
        "Machine-readable: `results.json` (one record per variant).",
        "",
        *_table(recs, keys),
        "",
    ]
    if out["missing"]:
        lines += [f"Not run, so not in the table: {', '.join(out['missing'])}.", ""]
    pairs = [
        ("full training set; teacher: full set", "sst2-distill", "student 3L KD", "student 3L hard labels", "teacher"),
        (
            "8,000 labelled rows; teacher: full set",
            "sst2-distill-8k",
            "student 3L KD, 8k rows",
            "student 3L hard labels, 8k rows",
            "teacher",
        ),
        (
            "8,000 labelled rows + the other 59k training sentences unlabelled (transfer set; hard labels cannot use it); "
            "teacher: full set",
            "sst2-distill-8k-transfer",
            "student 3L KD, 8k rows + transfer set",
            "student 3L hard labels, 8k rows",
            "teacher",
        ),
        (
            "8,000 labelled rows; teacher: the same 8,000 rows (the brief's reference setting)",
            "sst2-8k-distill",
            "8k-row teacher's student 3L KD",
            "8k-row teacher's student 3L hard labels",
            "8k-row teacher",
        ),
    ]
    rows = []
    for setting, run, kd_label, hard_label, teacher_label in pairs:
        kd, hard = acc.get(f"{kd_label}: fp32 PyTorch"), acc.get(f"{hard_label}: fp32 PyTorch")
        tt = acc.get(f"{teacher_label}: fp32 PyTorch")
        if kd is None or tt is None:
            continue
        st = next((s for s in runs[run]["stages"] if s["stage"] == "distill"), {})
        rows.append(
            f"| {setting} | {st.get('steps')} | {tt * 100:.2f} | {kd * 100:.2f} | {kd / tt:.1%} | "
            + (f"{hard * 100:.2f} | {hard / tt:.1%} | {(kd - hard) * 100:+.2f} |" if hard is not None else "not run | | |")
        )
    if rows:
        lines += [
            "## Distillation",
            "",
            "Student: 3 layers initialised from teacher layers 0/2/4; KD loss = 0.5·CE + 0.5·τ²·KL (τ 2) + hidden-state "
            "MSE (uniform layer map). Each hard-label twin has the same student, rows, steps, seed, data order and "
            "schedule; only the loss differs.",
            "",
            "| labelled data | steps | teacher dev acc % | KD dev acc % | of the teacher | hard-label dev acc % | of the teacher "
            "| KD − hard (pt) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Reference numbers of the project brief (plain transformers, 8,000 training rows): teacher 84.4 %, KD student "
            "83.4 %, hard-label student 81.9 %.",
            "",
        ]
    if any(r in runs for r in ("sst2-prune80", "sst2-structured", "sst2-vocab")):
        lines += ["## Pruning", ""]
    p80 = acc.get("student 3L KD + 80 % sparse: fp32 PyTorch")
    if p80 is not None:
        pr = next(s["prune"] for s in runs["sst2-prune80"]["stages"] if "prune" in s)
        r = next(x for x in recs if x["name"] == "student 3L KD + 80 % sparse: fp32 PyTorch")
        dense = next((x for x in recs if x["name"] == "student 3L KD: fp32 PyTorch"), None)
        lines += [
            f"- Gradual magnitude pruning during distillation: {pr['sparsity']:.1%} of the {pr['params']:,} Linear "
            f"weights are zero ({pr['schedule']['type']} schedule, steps {pr['schedule']['start']}–{pr['schedule']['end']}); "
            f"dev {p80 * 100:.2f} % = {p80 / t:.1%} of the teacher. gzip size {r['gzip_bytes'] / 2**20:.1f} MB"
            + (f" vs {dense['gzip_bytes'] / 2**20:.1f} MB dense student" if dense else "")
            + ". **Smaller when compressed, not faster** (dense kernels)"
            + _sparse_vs_dense(recs, keys[0])
            + "."
        ]
    sp = [x for x in recs if x["run"] == "sst2-structured"]
    if sp:
        pr = next(s["prune"] for s in runs["sst2-structured"]["stages"] if "prune" in s)
        fused = {x["name"]: x for x in recs}
        a, b = fused.get("teacher: fp32 ORT fused"), next((x for x in sp if x["name"].endswith("fp32 ORT fused")), None)
        if a and b:
            lines += [
                f"- Structured pruning of the teacher: heads {pr['heads']['before']} → {pr['heads']['after']} and FFN "
                f"{pr['ffn']['before']} → {pr['ffn']['after']} per layer, parameters {pr['params_before'] / 1e6:.2f} M → "
                f"{pr['params_after'] / 1e6:.2f} M; ORT CPU fp32 b{keys[0].replace('x', '×')} "
                f"{a['p50_ms'][keys[0]]:.2f} → {b['p50_ms'][keys[0]]:.2f} ms = "
                f"**{a['p50_ms'][keys[0]] / b['p50_ms'][keys[0]]:.2f}× faster**; dev {a['value'] * 100:.2f} → "
                f"{b['value'] * 100:.2f} % ({(b['value'] - a['value']) * 100:+.2f} pt) after the KD recovery."
            ]
    if "sst2-vocab" in runs:
        s = next(x for x in runs["sst2-vocab"]["stages"] if x.get("type") == "vocabulary")
        before, after = s["dev_before"]["accuracy"], s["dev_after"]["accuracy"]
        lines += [
            f"- Vocabulary trimming of the teacher: {s['vocab_before']:,} → {s['vocab_after']:,} tokens, parameters "
            f"{s['params_before'] / 1e6:.2f} M → {s['params_after'] / 1e6:.2f} M; dev {before * 100:.2f} → "
            f"{after * 100:.2f} % ({(after - before) * 100:+.2f} pt)."
        ]
    ptq, qat = acc.get("student 3L KD: INT8"), acc.get("student 3L KD: INT8 QAT")
    dense = acc.get("student 3L KD: fp32 PyTorch")
    if ptq is not None and qat is not None and dense is not None:
        lines += [
            "",
            "## INT8: where QAT pays",
            "",
            f"The 3-layer KD student loses {(dense - ptq) * 100:.2f} pt with post-training dynamic INT8 ({dense * 100:.2f} → "
            f"{ptq * 100:.2f} %); 500 steps of QAT + KD from the teacher (recipes/sst2-qat-student.yaml) give an INT8 QDQ "
            f"model at {qat * 100:.2f} % ({(qat - dense) * 100:+.2f} pt vs the fp32 student).",
        ]
    lines += [
        "",
        "INT8 schemes in detail (one-liner, ours dynamic, static per calibration method, QAT): "
        "[INT8_RESULTS.md](INT8_RESULTS.md).",
        "",
        "The best checkpoint of each training run is chosen on the same dev set that is reported (GLUE's test labels "
        "are not public), for every variant alike.",
        "",
        "## Machine",
        "",
        f"{fp['cpu']}, {fp['cores']} cores, flags {', '.join(fp['cpu_flags'])}; torch {fp['torch']}, transformers "
        f"{fp['transformers']}, onnxruntime {fp['onnxruntime']}; GPU: {fp['gpu'] or 'none (CUDA paths not measured)'}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
