"""GPU figures for the SST-2 MiniLM teacher, in one process: every GPU runtime we offer, timed the same way.

    python benchmarks/gpu_bench.py --run-dir runs/sst2-gpu            # after `compressor run recipes/sst2-gpu.yaml`

Variants (each skipped with its reason where the machine lacks it):
  torch-fp32 / torch-fp16          PyTorch on CUDA (the fine-tuned model, fp16 = model.half())
  ort-cuda-fp32 / ort-cuda-fp16    ONNX Runtime's CUDA EP: the run's plain export, and ORT's GPU fusions + fp16
  trt-fp16 / trt-int8              ORT's TensorRT EP: the fp32 graph with fp16 enabled, the run's QDQ INT8 graph
  bnb-int8 / bnb-nf4               the fine-tuned model loaded by bitsandbytes (LLM.int8 / 4-bit NF4)

Timing: batch 1 and 32 × seq 128 synthetic tokens; inputs already on the GPU (PyTorch tensors, ORT I/O binding),
each call bracketed by CUDA events after a device synchronisation; `--rounds` interleaved rounds (every variant and
shape once per round, in turn), the median of each round, the median of the round medians reported with the spread
between rounds. Accuracy: the 872 SST-2 dev sentences in batches of 32, for every variant, with a 95 % Wilson
interval. Writes GPU_RESULTS.md and gpu_results.json into --out (default benchmarks/).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def environment(install_notes: str | None) -> dict:
    import onnxruntime as ort
    import torch
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "cpu_cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import bitsandbytes

        env["bitsandbytes"] = bitsandbytes.__version__
    except Exception as e:  # absent or broken: the bnb rows say so
        env["bitsandbytes"] = f"not importable ({type(e).__name__})"
    try:
        q = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", q, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except Exception as e:
        env["nvidia_smi"] = f"unavailable ({type(e).__name__})"
    if install_notes and Path(install_notes).is_file():
        env["install"] = Path(install_notes).read_text().strip()
    return env


def dev_batches(tokenizer, dev_tsv: Path, batch: int = 32, max_length: int = 128) -> list[dict]:
    import pandas as pd

    df = pd.read_csv(dev_tsv, sep="\t", quoting=3)
    texts, labels = df["sentence"].astype(str).tolist(), df["label"].astype(int).to_numpy()
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i : i + batch], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        out.append(
            {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
                "token_type_ids": enc.get("token_type_ids", np.zeros_like(enc["input_ids"])).astype(np.int64),
                "labels": labels[i : i + batch],
            }
        )
    return out


def synthetic(batch: int, seq: int, vocab: int) -> dict:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab, size=(batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


# ---------------------------------------------------------------- variants: name -> (predict(batch)->logits, caller(batch)->fn)


class TorchVariant:
    def __init__(self, model, dtype=None):
        import torch

        self.model = model if dtype is None else model.to(dtype)
        self.model.eval()
        self.torch = torch

    def _inputs(self, batch):
        return {k: self.torch.as_tensor(v, device="cuda") for k, v in batch.items() if k != "labels"}

    def predict(self, batch) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(**self._inputs(batch)).logits.float().cpu().numpy()

    def caller(self, batch):
        inputs = self._inputs(batch)

        def call():
            with self.torch.inference_mode():
                self.model(**inputs)

        return call


class OrtVariant:
    def __init__(self, path: Path, providers: list):
        import onnxruntime as ort

        from compressor.onnx.session import session_options

        opts = session_options()  # the product's options (ORT's default threads); the CUDA provider options come with providers
        self.ort = ort
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        used = self.session.get_providers()
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if wanted not in used:
            raise RuntimeError(f"{wanted} did not load (session runs on {used})")
        self.names = [i.name for i in self.session.get_inputs()]

    def _feed(self, batch):
        return {n: np.asarray(batch[n], dtype=np.int64) for n in self.names}

    def predict(self, batch) -> np.ndarray:
        return self.session.run(None, self._feed(batch))[0].astype(np.float32)

    def caller(self, batch):
        binding = self.session.io_binding()
        for n, v in self._feed(batch).items():
            binding.bind_ortvalue_input(n, self.ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
        for o in self.session.get_outputs():
            binding.bind_output(o.name, "cuda")
        binding.synchronize_inputs()

        def call():
            self.session.run_with_iobinding(binding)

        return call


def fp16_graph(src: Path, dst: Path, config) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(
        str(src),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        use_gpu=True,
        opt_level=1,
    )
    opt.convert_float_to_float16(keep_io_types=True)
    opt.save_model_to_file(str(dst))
    return dst


def build_variants(run_dir: Path, work: Path, which: set[str]):
    """Yields (name, factory, note); factories build lazily so one failure never loses the others."""
    import torch

    from compressor.models import load_config, load_model

    model_dir = run_dir / "model"
    config = load_config(model_dir)
    onnx_dir = run_dir / "onnx"
    cuda = ["CUDAExecutionProvider"]
    trt_common = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(work / "trt-cache")}
    specs = {
        "torch-fp32": (lambda: TorchVariant(load_model(model_dir, "sequence-classification").cuda()), "PyTorch eager, fp32"),
        "torch-fp16": (
            lambda: TorchVariant(load_model(model_dir, "sequence-classification").cuda(), torch.float16),
            "PyTorch eager, model.half()",
        ),
        "ort-cuda-fp32": (
            lambda: OrtVariant(onnx_dir / "model.onnx", cuda),
            "CUDA EP, the run's plain export (ORT fuses at load)",
        ),
        "ort-cuda-fp16": (
            lambda: OrtVariant(fp16_graph(onnx_dir / "model.onnx", work / "model.gpu.fp16.onnx", config), cuda),
            "CUDA EP, ORT transformer optimizer (use_gpu) + fp16 weights/activations, fp32 I/O",
        ),
        "trt-fp16": (
            lambda: OrtVariant(
                onnx_dir / "model.onnx",
                [("TensorrtExecutionProvider", {**trt_common, "trt_fp16_enable": True}), "CUDAExecutionProvider"],
            ),
            "TensorRT EP, fp16 enabled, the plain fp32 export",
        ),
        "trt-int8": (
            lambda: OrtVariant(
                onnx_dir / "model.int8.onnx",
                [
                    ("TensorrtExecutionProvider", {**trt_common, "trt_fp16_enable": True, "trt_int8_enable": True}),
                    "CUDAExecutionProvider",
                ],
            ),
            "TensorRT EP, the run's static QDQ INT8 graph (explicit quantization)",
        ),
        "bnb-int8": (lambda: TorchVariant(_bnb(model_dir, "int8")), "bitsandbytes LLM.int8 (8-bit weights, fp16 outliers)"),
        "bnb-nf4": (lambda: TorchVariant(_bnb(model_dir, "nf4")), "bitsandbytes 4-bit NF4, bf16 compute"),
    }
    for name, (factory, note) in specs.items():
        if name in which:
            yield name, factory, note


def _bnb(model_dir: Path, mode: str):
    from compressor.measure import bnb

    return bnb.load(model_dir, "sequence-classification", mode)


def accuracy(variant, batches: list[dict]) -> dict:
    correct = n = 0
    for b in batches:
        pred = variant.predict(b).argmax(-1)
        correct += int((pred == b["labels"]).sum())
        n += len(b["labels"])
    lo, hi = wilson(correct, n)
    return {"accuracy": correct / n, "correct": correct, "n": n, "ci95": [lo, hi]}


def time_call(call, iterations: int, warmup: int) -> float:
    """Median ms of ``iterations`` calls, each bracketed by CUDA events after a synchronisation."""
    import torch

    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run(args) -> dict:
    import onnxruntime as ort
    import torch

    from compressor.models import load_tokenizer

    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels beside torch
        ort.preload_dlls()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run_dir)
    tok = load_tokenizer(run_dir / "model")
    batches = dev_batches(tok, Path(args.dev))
    vocab = tok.vocab_size if hasattr(tok, "vocab_size") else 30522
    shapes = [(int(b), args.seq) for b in args.batch_sizes.split(",")]
    result: dict = {
        "environment": environment(args.install_notes),
        "shapes": shapes,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "variants": {},
    }
    live = {}
    for name, factory, note in build_variants(run_dir, work, set(args.variants.split(","))):
        rec = result["variants"][name] = {"note": note}
        t0 = time.perf_counter()
        try:
            torch.cuda.reset_peak_memory_stats()
            v = factory()
            rec["build_s"] = round(time.perf_counter() - t0, 2)
            rec["dev"] = accuracy(v, batches)
            rec["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            rec["callers"] = None
            live[name] = {shape: v.caller(synthetic(shape[0], shape[1], vocab)) for shape in shapes}
            print(f"[gpu_bench] {name}: dev {rec['dev']['accuracy']:.4f} (built in {rec['build_s']} s)", flush=True)
        except Exception as e:
            rec["skipped"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
            print(f"[gpu_bench] {name}: skipped: {rec['skipped']}", flush=True)
        rec.pop("callers", None)
        gc.collect()
    per_round: dict = {n: {f"{b}x{s}": [] for b, s in shapes} for n in live}
    for r in range(args.rounds):
        for name, calls in live.items():
            for (b, s), call in calls.items():
                per_round[name][f"{b}x{s}"].append(time_call(call, args.iterations, args.warmup if r == 0 else 3))
        print(f"[gpu_bench] round {r + 1}/{args.rounds} done", flush=True)
    for name, shapes_ms in per_round.items():
        rows = {}
        for key, meds in shapes_ms.items():
            b = int(key.split("x")[0])
            med = statistics.median(meds)
            rows[key] = {
                "ms": med,
                "round_medians_ms": meds,
                "spread": (max(meds) - min(meds)) / med if med else None,
                "sequences_per_s": b / (med / 1000.0),
            }
        result["variants"][name]["latency"] = rows
    return result


def ratio_cell(ref_rounds: list | None, rounds: list) -> str:
    """Speed-up over the reference, round by round: a burst of load on the machine hits both variants of a round."""
    if not ref_rounds:
        return "—"
    ratios = [r / v for r, v in zip(ref_rounds, rounds) if v]
    lo, hi, med = min(ratios), max(ratios), statistics.median(ratios)
    if lo < 1.0 < hi:
        return f"unstable, not claimed [{lo:.2f}–{hi:.2f}×]"
    return f"{med:.2f}× [{lo:.2f}–{hi:.2f}]"


def render(result: dict) -> str:
    env = result["environment"]
    shapes = [f"{b}x{s}" for b, s in result["shapes"]]
    lines = [
        "# GPU results: SST-2 MiniLM teacher",
        "",
        "Written by `python benchmarks/gpu_bench.py` in one process (see its docstring for the method). "
        "Machine-specific: re-run the script on yours.",
        "",
        f"- GPU: {env.get('gpu')} — nvidia-smi: `{env.get('nvidia_smi')}`",
        f"- torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), transformers {env.get('transformers')}, "
        f"onnxruntime {env.get('onnxruntime')}, bitsandbytes {env.get('bitsandbytes')}, Python {env.get('python')}",
        f"- ORT providers: {', '.join(env.get('ort_providers', []))}",
        f"- timing: {result['rounds']} interleaved rounds × {result['iterations']} calls per shape, CUDA events after a "
        "synchronisation, inputs already on the GPU; ms = median of the round medians. A ratio is taken round by round "
        "(both variants timed in the same round), then its median, with the range over rounds in brackets; a range that "
        "reaches across 1× is marked *unstable, not claimed*",
        "",
    ]
    if env.get("install"):
        lines += ["Installed on the GPU machine:", "", "```", env["install"], "```", ""]
    ref = result["variants"].get("torch-fp32", {}).get("latency", {})
    head = (
        "| variant | dev accuracy (95 % CI) | "
        + " | ".join(f"{s} ms | {s} vs torch-fp32 [range]" for s in shapes)
        + " | GPU MiB |"
    )
    lines += [head, "|" + "---|" * (3 + 2 * len(shapes))]
    skipped = []
    for name, rec in result["variants"].items():
        if "skipped" in rec:
            skipped.append(f"- **{name}** ({rec['note']}): not measured — {rec['skipped']}")
            continue
        d = rec["dev"]
        cells = [name, f"{100 * d['accuracy']:.2f} % ({100 * d['ci95'][0]:.1f}–{100 * d['ci95'][1]:.1f})"]
        for s in shapes:
            lat = rec.get("latency", {}).get(s)
            if not lat:
                cells += ["—", "—"]
                continue
            cells.append(f"{lat['ms']:.3f}")
            cells.append(ratio_cell(ref.get(s, {}).get("round_medians_ms"), lat["round_medians_ms"]))
        cells.append(f"{rec.get('cuda_max_allocated_mb', '—')}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Variants:", ""] + [f"- {n}: {r['note']}" for n, r in result["variants"].items() if "skipped" not in r]
    if skipped:
        lines += ["", "Not measured here:", ""] + skipped
    lines += [
        "",
        "GPU MiB: torch.cuda.max_memory_allocated while the variant was built and evaluated (PyTorch's allocator "
        "only: ONNX Runtime's own arena is not counted there).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", help="a completed run of recipes/sst2-gpu.yaml (model/ and onnx/)")
    p.add_argument("--dev", default=str(ROOT.parent / "shared/data/sst2/dev.tsv"))
    p.add_argument("--out", default=str(ROOT / "benchmarks"))
    p.add_argument("--work", default="/tmp/gpu_bench")
    p.add_argument("--batch-sizes", default="1,32")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--variants", default="torch-fp32,torch-fp16,ort-cuda-fp32,ort-cuda-fp16,trt-fp16,trt-int8,bnb-int8,bnb-nf4")
    p.add_argument("--install-notes", default=None, help="a text file describing what was installed on the GPU machine")
    p.add_argument("--render", default=None, metavar="JSON", help="only re-write GPU_RESULTS.md from a stored gpu_results.json")
    args = p.parse_args(argv)
    if args.render:
        (Path(args.out) / "GPU_RESULTS.md").write_text(render(json.loads(Path(args.render).read_text())))
        return 0
    if not args.run_dir:
        p.error("--run-dir is required (unless --render)")
    return measure_and_write(args, run, render, "gpu_results.json", "GPU_RESULTS.md")


def measure_and_write(args, run_fn, render_fn, json_name: str, md_name: str) -> int:
    """On a CUDA machine: run, then write the JSON and the table beside each other in ``args.out``."""
    import torch

    if not torch.cuda.is_available():
        print(f"{Path(sys.argv[0]).name}: no CUDA GPU visible; this benchmark measures GPU runtimes only", file=sys.stderr)
        return 2
    result = run_fn(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / json_name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / md_name).write_text(render_fn(result))
    print(render_fn(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
