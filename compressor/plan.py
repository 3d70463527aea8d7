"""``compressor plan RECIPE``: what each stage can buy on this machine, before running anything.

Reads the recipe, the model's config.json (a small JSON file: no weights, no transformers) and
the machine's fingerprint (CPU flags from /proc/cpuinfo, GPU), and states per stage whether it
makes the model smaller, faster, both, or neither here, and why. The statements are
rules about the runtimes this project uses (ONNX Runtime on CPU, PyTorch), not measurements:
``compressor run`` measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.recipe.model_config import read_model_config
from compressor.report.compression import SMALLER_NOT_FASTER

INT8_FAST_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # int8 dot-product instructions ORT's MLAS uses
GATED_MLP = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral", "modernbert"}


@dataclass
class Advice:
    stage: str  # what the row is about: a stage ("1 distill"), "device", "bench cuda"
    verdict: str  # short: "faster + smaller", "smaller, not faster", "skipped", ...
    why: str


# ---------------------------------------------------------------- the model, from config.json only
@dataclass
class Shape:
    model_type: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    causal: bool

    @classmethod
    def from_config(cls, cfg: dict, causal: bool) -> Shape | None:
        from compressor.arch.families import find_family

        def num(v) -> int | None:  # a positive integer, or None (a hand-edited config may hold anything)
            return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

        def get(*keys: str) -> int | None:
            return next((num(cfg.get(k)) for k in keys if num(cfg.get(k))), None)

        def fam_value(what: str) -> int | None:
            try:
                return num(getattr(fam, what)(cfg)) if fam else None
            except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError):
                return None

        fam = find_family(cfg)
        layers = fam_value("layers") or get("num_hidden_layers", "n_layer")
        hidden = fam_value("hidden") or get("hidden_size", "n_embd", "dim")
        if not layers or not hidden:
            return None
        inter = fam_value("ffn_size") or get("intermediate_size", "n_inner", "hidden_dim") or 4 * hidden
        return cls(str(cfg.get("model_type", "?")), layers, hidden, inter, get("vocab_size") or 0, causal)

    def layer_params(self, hidden: int | None = None, inter: int | None = None) -> float:
        h, i = hidden or self.hidden, inter or self.intermediate
        return 4 * h * h + (3 if self.model_type in GATED_MLP else 2) * h * i

    def params(self, layers: int | None = None, hidden: int | None = None, inter: int | None = None) -> float:
        h = hidden or self.hidden
        return self.vocab * h + (self.layers if layers is None else layers) * self.layer_params(h, inter)

    def compute(self, layers: int | None = None, hidden: int | None = None, inter: int | None = None) -> float:
        """Multiply-adds per token: the layers, plus the LM head for a causal LM (an embedding lookup is free)."""
        h = hidden or self.hidden
        head = self.vocab * h if self.causal else 0
        return (self.layers if layers is None else layers) * self.layer_params(h, inter) + head


# ---------------------------------------------------------------- per stage
def _finetune(cfg, ctx: dict) -> Advice:
    dev = ctx["train_device"]
    where = f"cuda ({ctx['gpu']})" if dev == "cuda" else f"cpu ({ctx['cores']} cores, fp32)"
    verdict = "accuracy only" if cfg.prune is None else SMALLER_NOT_FASTER
    return Advice("", verdict, f"changes the weights, not the size or speed; trains on {where}" + _training_extras(cfg))


def _distill(cfg, ctx: dict) -> Advice:
    st = cfg.student
    teacher = ctx["shape"]
    if cfg.teacher:
        t_cfg = read_model_config(cfg.teacher, ctx["recipe_dir"])
        teacher = Shape.from_config(t_cfg, ctx["causal"]) if t_cfg else None
    if st.path is not None:
        s_cfg = read_model_config(st.path, ctx["recipe_dir"])
        student = Shape.from_config(s_cfg, ctx["causal"]) if s_cfg else None
        if teacher is None or student is None:
            return Advice("", "depends on the student", f"student {st.path}: its config is not readable here")
        layers, hidden, inter = student.layers, student.hidden, student.intermediate
    elif teacher is None:
        return Advice("", "faster + smaller (dense)", "the model's config.json is not local, so the ratio is unknown; "
                      "fewer or narrower layers speed up every runtime")
    elif st.current:
        return Advice("", "accuracy (recovery)", "student: current: the model as the previous stages left it (e.g. pruned) "
                      "learns from the teacher; its size and speed do not change here" + _training_extras(cfg))
    elif st.layers is not None or st.every is not None:
        keep = len(st.layers) if st.layers is not None else math.ceil(teacher.layers / st.every)
        layers, hidden, inter = keep, teacher.hidden, teacher.intermediate
    else:
        layers = st.num_hidden_layers or teacher.layers
        hidden, inter = st.hidden_size or teacher.hidden, st.intermediate_size or teacher.intermediate
    speed = teacher.compute() / max(teacher.compute(layers, hidden, inter), 1)
    size = teacher.params() / max(teacher.params(layers, hidden, inter), 1)
    verdict = "faster + smaller" if speed > 1.05 else ("smaller" if size > 1.05 else "no gain")
    why = (f"student {layers} layers × {hidden} wide vs teacher {teacher.layers} × {teacher.hidden}: "
           f"≈{speed:.1f}× less compute per token, ≈{size:.1f}× fewer parameters "
           f"({'the embeddings stay' if hidden == teacher.hidden else 'embeddings narrower too'}); dense, so every runtime gains")
    if st.path is None and st.layers is None and st.every is None:
        why += "; random init: needs a long distillation"
    return Advice("", verdict, why + _training_extras(cfg))


def _export(cfg, ctx: dict) -> Advice:
    from compressor.arch.families import FAMILIES

    mt = ctx["shape"].model_type if ctx["shape"] else None
    fam = FAMILIES.get(mt or "")
    ORT_OPTIMIZER_TYPES = {mt: fam.ort_optimizer} if fam and fam.ort_optimizer else {}
    if mt is None:
        return Advice("", "runtime", "ONNX Runtime graph; fusions depend on the architecture (config not local)")
    if mt in ORT_OPTIMIZER_TYPES and cfg.optimize:
        return Advice("", "faster (CPU)", f"'{mt}': ONNX Runtime fuses attention / layer norm / GELU; "
                      "usually faster than PyTorch eager at small batches; same size")
    if mt in ORT_OPTIMIZER_TYPES:
        return Advice("", "runtime", f"optimize: false: the plain graph, without the fusions ORT has for '{mt}'")
    why = fam.no_fusion if fam else "no ONNX Runtime transformer optimizer for this architecture"
    return Advice("", "runtime", f"'{mt}': {why}: plain graph; the gain over PyTorch depends on the model (measure it)")


def _quantize(cfg, ctx: dict) -> Advice:
    if cfg.type == "qat":
        return Advice("", "faster + smaller", "exports the QAT-trained model as a QDQ graph: int8 weights (≈4× smaller "
                      "MatMul weights), integer MatMuls in ONNX Runtime; " + _int8_speed(ctx))
    if not ctx["exported"]:
        return Advice("", "error", f"needs an export stage before it ({cfg.type} quantizes the ONNX graph)")
    if cfg.type in ("int4", "int8_weight"):
        bits = 4 if cfg.type == "int4" else 8
        return Advice("", "smaller; faster decoding", f"weight-only: MatMul weights in {bits} bits (≈{32 // bits}× smaller), "
                      "activations fp32 / int8 per block; pays off where decoding is memory-bound (batch 1 generation) "
                      "more than in prefill; measure with compressor bench --prompt / --new-tokens")
    flags = set(ctx["flags"])
    fast = [f for f in INT8_FAST_FLAGS if f in flags]
    size = "≈4× smaller MatMul / embedding weights"
    gpu = "; CPU only: ORT has no CUDA kernels for this graph" if ctx["gpu"] else ""
    if fast:
        return Advice("", "faster + smaller", f"{size}; {_int8_speed(ctx)}{gpu}")
    if "avx2" in flags:
        rr = "" if cfg.reduce_range else "; set reduce_range: true if accuracy drops"
        return Advice("", "smaller, modestly faster", f"{size}; no VNNI/AMX here: ORT's u8s8 kernels use AVX2 "
                      f"(vpmaddubsw), smaller speed-up and a risk of saturation{rr}{gpu}")
    if ctx["arch"] in ("aarch64", "arm64"):
        return Advice("", "smaller; speed: measure", f"{size}; ARM CPU: int8 speed depends on dot-product support "
                      f"(check with compressor bench){gpu}")
    return Advice("", "smaller, likely not faster", f"{size}; this CPU reports no AVX2/VNNI: int8 kernels gain little{gpu}")


def _int8_speed(ctx: dict) -> str:
    fast = [f for f in INT8_FAST_FLAGS if f in set(ctx["flags"])]
    if fast:
        return f"this CPU has {', '.join(fast)}: ORT runs int8 MatMuls with int8 dot-product instructions, so INT8 pays off"
    if "avx2" in set(ctx["flags"]):
        return "no VNNI/AMX here: ORT's u8s8 kernels use AVX2, a smaller speed-up"
    return "this CPU reports no AVX2/VNNI: int8 kernels gain little"


def _prune(cfg, ctx: dict) -> Advice:
    """Structured pruning removes heads / neurons (dense, faster); unstructured pruning leaves zeros."""
    shape = ctx["shape"]
    if cfg.type == "vocabulary":
        share = f" (the embedding table is {shape.vocab * shape.hidden / shape.params():.0%} of the parameters)" if shape else ""
        return Advice("", "smaller, not faster", f"drops embedding rows of tokens the training data never uses{share}; "
                      "an embedding lookup costs the same whatever the table size")
    if cfg.type == "structured":
        if shape is None:
            return Advice("", "faster + smaller", "heads / FFN neurons are removed, the matrices shrink (config not local)")
        heads = shape_heads(ctx)
        rm = cfg.heads if isinstance(cfg.heads, int) else round(cfg.heads * heads) if heads else 0
        ffn = shape.intermediate - (cfg.ffn if isinstance(cfg.ffn, int) else round(cfg.ffn * shape.intermediate))
        attn_share = (heads - rm) / heads if heads else 1.0
        per_layer = 4 * shape.hidden * shape.hidden * attn_share + (3 if shape.model_type in GATED_MLP else 2) * shape.hidden * ffn
        speed = shape.layer_params() / max(per_layer, 1)
        return Advice("", "faster + smaller", f"{rm} of {heads} heads and FFN {shape.intermediate} → ≈{ffn} per layer: "
                      f"≈{speed:.1f}× less layer compute (dense matrices shrink, every runtime gains); plan a recovery "
                      "finetune / distill stage after it")
    return Advice("", SMALLER_NOT_FASTER, _UNSTRUCTURED)


_UNSTRUCTURED = ("unstructured sparsity: the zeros stay in dense matrices; ONNX Runtime CPU and PyTorch have no sparse "
                 "kernels, so no speed-up; the gzip size shrinks")


def shape_heads(ctx: dict) -> int | None:
    from compressor.arch.families import find_family

    cfg = ctx.get("config") or {}
    fam = find_family(cfg)
    return (fam.heads(cfg) if fam else None) or cfg.get("num_attention_heads") or cfg.get("n_head")


def _training_extras(cfg) -> str:
    extras = []
    if getattr(cfg, "prune", None) is not None:
        extras.append(f"gradual pruning to {cfg.prune.sparsity:.0%}: " + _UNSTRUCTURED)
    if getattr(cfg, "qat", None) is not None:
        extras.append("QAT: fake INT8 while training, so `quantize: {type: qat}` keeps the trained accuracy")
    return ("; " + "; ".join(extras)) if extras else ""


HANDLERS = {"finetune": _finetune, "distill": _distill, "export": _export, "quantize": _quantize, "prune": _prune}


# ---------------------------------------------------------------- the plan
def machine_info() -> dict[str, Any]:
    import platform

    from compressor.measure.bench.runner import fingerprint

    info = fingerprint()
    info["arch"] = platform.machine().lower()
    try:
        import onnxruntime

        info["ort_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["ort_providers"] = []
    return info


def make_plan(recipe, recipe_dir: Path | None, machine: dict[str, Any]) -> list[Advice]:
    """Advice rows: the training device, one per stage, one per benchmark device."""
    task_causal = recipe.model.task == "causal-lm"
    cfg = read_model_config(recipe.model.path, recipe_dir)
    gpu = machine.get("gpu")
    ctx = {"shape": Shape.from_config(cfg, task_causal) if cfg else None, "config": cfg, "causal": task_causal, "recipe_dir": recipe_dir,
           "cores": machine.get("cores"), "flags": machine.get("cpu_flags", []), "gpu": gpu,
           "arch": machine.get("arch", ""), "exported": False,
           "train_device": "cuda" if (recipe.device == "cuda" or (recipe.device == "auto" and gpu)) else "cpu"}
    rows = []
    if recipe.device == "cuda" and not gpu:
        rows.append(Advice("device", "error", "device: cuda, but no CUDA GPU is visible: the run would stop"))
    for i, (kind, scfg) in enumerate(recipe.stage_list()):
        handler = HANDLERS.get(kind)
        a = handler(scfg, ctx) if handler else Advice("", "?", f"no advice for '{kind}' stages yet")
        name = f"{i} {kind}" + (f" ({scfg.type})" if isinstance(getattr(scfg, "type", None), str) else "")
        rows.append(Advice(name, a.verdict, a.why))
        if kind == "export":
            ctx["exported"] = True
    if not recipe.stage_list():
        rows.append(Advice("stages", "none", "no stages: the model is only evaluated and benchmarked"))
    b = recipe.bench
    if b.enabled:
        for dev in b.devices:
            if dev == "cpu":
                threads = b.threads or machine.get("cores")
                rows.append(Advice("bench cpu", "measured", f"batch {b.batch_sizes} × seq {b.seq_lengths}, {b.iterations} "
                                   f"iterations, {threads} threads on {machine.get('cpu') or 'this CPU'}"))
            elif not gpu:
                rows.append(Advice(f"bench {dev}", "skipped", "no CUDA GPU visible: the report will have CPU rows only"))
            elif dev == "tensorrt":
                trt = "TensorrtExecutionProvider" in machine.get("ort_providers", [])
                rows.append(Advice("bench tensorrt", "measured" if trt else "skipped",
                                   f"on {gpu}: the fp32 ONNX graphs on ORT's TensorRT EP" if trt else
                                   "onnxruntime has no TensorRT EP here (install onnxruntime-gpu with TensorRT)"))
            else:
                ep = "CUDAExecutionProvider" in machine.get("ort_providers", [])
                rows.append(Advice("bench cuda", "measured", f"on {gpu}: PyTorch" + (", ONNX fp32 (CUDA EP)" if ep else
                                   "; ONNX skipped (onnxruntime has no CUDA EP: install compressor[gpu])")
                                   + "; INT8 stays on CPU"))
    else:
        rows.append(Advice("bench", "off", "bench.enabled: false: no latency numbers"))
    return rows


def describe_machine(machine: dict[str, Any]) -> str:
    flags = ", ".join(machine.get("cpu_flags", [])) or "no AVX2/AVX-512/VNNI/AMX"
    gpu = machine.get("gpu") or "no CUDA GPU"
    return f"{machine.get('cpu') or '?'}, {machine.get('cores')} cores ({flags}); {gpu}"
