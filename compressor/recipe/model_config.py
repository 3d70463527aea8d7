"""What a recipe asks of its model, checked against config.json alone (read as JSON: no weights, no torch).

A sequence length the model cannot take; structured pruning of a family that has no layout for it, of a head
count its (grouped-query) layout cannot lose, or of a model pruned before; a layer-subset student with layers
that do not exist or a family that cannot form one (ALBERT's shared block); a weight-only block size that does not
divide the layers' widths. The checks of the stages are registered by config type (:data:`MODEL_CHECKS`) and walk
the stages with the model's config as each stage leaves it. Called through
:func:`compressor.recipe.contracts.recipe_problem` when a recipe loads (``validate``, ``plan``, ``run``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from compressor.arch.families import FAMILIES, STRUCTURE_KEY, CountError, cfg_get, find_family, structured_counts
from compressor.core.errors import CompressorError, ModelError
from compressor.core.registry import Registry
from compressor.recipe.schema import (
    AwqQuant,
    DistillStage,
    ExportStage,
    Int4Quant,
    Int8WeightQuant,
    StructuredPrune,
    UnstructuredPrune,
)

# families whose position table has padding_idx + 1 rows in front of the usable positions
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text", "xmod"}
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")

Problem = tuple[tuple, str]


def read_model_config(spec: str, base_dir: Path | None) -> dict | None:
    """config.json of a local / pkg:// model; None for a Hub id or a folder without one (found missing later).

    A config.json that is not a JSON object is a ModelError naming the file."""
    from compressor.models import resolve

    try:
        path = resolve(spec, base_dir, "model.path", must_exist=False)
    except CompressorError:
        return None
    file = Path(path) / "config.json" if not isinstance(path, str) else None
    if file is None or not file.is_file():
        return None
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelError(f"{file}: not UTF-8 text (byte {e.start})") from None
    except ValueError as e:
        raise ModelError(f"{file}: not valid JSON ({e})") from None
    except OSError as e:
        raise ModelError(f"{file}: cannot read: {e.strerror}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{file}: not a model config (a JSON {type(cfg).__name__}, not an object)")
    return cfg


def read_config_json(spec: str, base_dir: Path | None) -> dict | None:
    """Like :func:`read_model_config`, but None for an unreadable file too (a teacher or student, refused when it loads)."""
    try:
        return read_model_config(spec, base_dir)
    except ModelError:
        return None


def _int(cfg: dict, key: str) -> int | None:
    v = cfg.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def position_limit(cfg: dict) -> tuple[int, str] | None:
    """(tokens a sequence may hold, the config key that says so), or None when the config sets no limit."""
    for key in _POSITION_KEYS:
        n = _int(cfg, key)
        if n is not None:
            if cfg.get("model_type") in _OFFSET_POSITIONS:
                n -= (_int(cfg, "pad_token_id") or 1) + 1
            return n, key
    return None


def lm_head_problem(cfg: dict) -> str | None:
    """A causal-LM recipe needs a language-model head: a config.json whose architectures are all base models
    (``LlamaModel``, ``GPT2Model``: by transformers' naming, the class without a task head) has none, and loading it
    for causal-lm would put an untrained head (or, tied, the embeddings) on top."""
    arch = cfg.get("architectures")

    def base(a) -> bool:  # LlamaModel, GPT2Model; not GPT2LMHeadModel / GPT2DoubleHeadsModel / *For*
        return isinstance(a, str) and a.endswith("Model") and not a.endswith(("HeadModel", "HeadsModel")) and "For" not in a

    if isinstance(arch, list) and arch and all(base(a) for a in arch):
        return (
            f"architectures {arch} is a base model without a language-model head; task: causal-lm needs a "
            f"checkpoint saved from a *ForCausalLM / *LMHeadModel class"
        )
    return None


def _lengths(recipe, cfg: dict) -> Problem | None:
    limit = position_limit(cfg)
    if limit is None:
        return None
    n, key = limit
    why = f"the model takes at most {n} tokens ({key} in config.json)"
    if recipe.data.max_length > n:
        return ("data", "max_length"), f"{recipe.data.max_length} is too long: {why}"
    if recipe.bench.enabled:
        for i, s in enumerate(recipe.bench.seq_lengths):
            if s > n:
                return ("bench", "seq_lengths", i), f"{s} is too long: {why}"
        gen = recipe.bench.generation
        if gen is not None and gen.prompt + gen.new_tokens > n:
            return ("bench", "generation", "prompt"), (
                f"a prompt of {gen.prompt} plus {gen.new_tokens} new tokens is too long: {why}"
            )
    return None


# ---------------------------------------------------------------- per stage, registered by config type
@dataclass
class ModelState:
    """The model as the stages so far leave it, as far as config.json tells."""

    config: dict | None  # None: unknown from here on (a Hub id, a student folder written later)
    pruned: bool  # structurally pruned already
    model_path: str
    base_dir: Path


# fn(stage config, state) -> (location under the stage, message) or None; may update ``state``
MODEL_CHECKS: Registry = Registry("model check")


def _layers(cfg: dict) -> int:
    fam = find_family(cfg)
    try:
        return int((fam.layers(cfg) if fam else 0) or cfg_get(cfg, "num_hidden_layers", 0) or cfg_get(cfg, "n_layer", 0))
    except (TypeError, ValueError):  # a hand-edited config.json ("layers": [2]): not checked here, refused when it loads
        return 0


@MODEL_CHECKS.register(StructuredPrune)
def _structured(cfg: StructuredPrune, state: ModelState) -> Problem | None:
    fam = find_family(state.config)
    if fam is None:
        return (), (
            f"structured pruning supports {', '.join(sorted(FAMILIES))} models, not '{cfg_get(state.config, 'model_type', '?')}'"
        )
    if state.pruned:
        return (), "the model was structurally pruned already; prune it once, with the final sizes"
    try:
        structured_counts(fam, state.config, cfg.heads, cfg.ffn, cfg.round_to)
    except CountError as e:
        return (e.field,), e.message
    state.pruned = True
    return None


def _weight_only(cfg, state: ModelState) -> Problem | None:
    from compressor.recipe.block_sizes import block_size_problem

    problem = block_size_problem(state.config, cfg.block_size)
    return (("block_size",), f"{problem} (from {state.model_path}/config.json)") if problem else None


MODEL_CHECKS.register(Int4Quant)(_weight_only)
MODEL_CHECKS.register(Int8WeightQuant)(_weight_only)
MODEL_CHECKS.register(AwqQuant)(_weight_only)


@MODEL_CHECKS.register(ExportStage)
def _genai_exporter(cfg: ExportStage, state: ModelState) -> Problem | None:
    """``exporter: genai``: an architecture onnxruntime-genai's builder takes, sizes from config.json alone."""
    if cfg.exporter != "genai":
        return None
    from compressor.onnx.genai_builder import architecture_problem

    if state.pruned:
        return ("exporter",), (
            "the model was structurally pruned to per-layer sizes that config.json does not hold; "
            "onnxruntime-genai's builder reads its sizes from config.json: use the default exporter"
        )
    problem = architecture_problem(state.config)
    return (("exporter",), f"{problem} (from {state.model_path}/config.json)") if problem else None


@MODEL_CHECKS.register(UnstructuredPrune)
def _nm_width(cfg: UnstructuredPrune, state: ModelState) -> Problem | None:
    """An N:M pattern needs every pruned layer's input width to be a multiple of M."""
    from compressor.recipe.block_sizes import layer_widths

    if cfg.pattern == "unstructured":
        return None
    m = int(cfg.pattern.split(":")[1])
    bad = next(((f, w) for f, w in layer_widths(state.config).items() if w % m), None)
    if bad is None:
        return None
    return ("pattern",), (
        f"{cfg.pattern} needs every pruned layer's input width to be a multiple of {m}, but the "
        f"model's {bad[0]} is {bad[1]} (from {state.model_path}/config.json)"
    )


def _student_layers(cfg: DistillStage, teacher: dict) -> Problem | None:
    st, n = cfg.student, _layers(teacher)
    if st.layers is not None and n:
        bad = [j for j, i in enumerate(st.layers) if i >= n]
        if bad:
            whose = "model" if cfg.teacher is None else "teacher"
            return ("student", "layers", bad[0]), f"layer {st.layers[bad[0]]} does not exist: the {whose} has layers 0..{n - 1}"
    fam = find_family(teacher)
    refusal = fam.student_refusal(teacher) if fam else None
    return (("student",), refusal) if refusal else None


@MODEL_CHECKS.register(DistillStage)
def _distill(cfg: DistillStage, state: ModelState) -> Problem | None:
    st = cfg.student
    if st.current:
        return None
    if st.path is not None:  # a student of its own
        state.config = read_config_json(st.path, state.base_dir)
        state.pruned = bool(state.config and state.config.get(STRUCTURE_KEY))
    elif st.layers is not None or st.every is not None:  # a subset of the teacher's layers
        teacher = state.config if cfg.teacher is None else read_config_json(cfg.teacher, state.base_dir)
        if teacher is None:
            state.config = None
            return None
        problem = _student_layers(cfg, teacher)
        if problem:
            return problem
        n = len(st.layers) if st.layers is not None else math.ceil(_layers(teacher) / st.every)
        state.pruned = bool(teacher.get(STRUCTURE_KEY)) or (cfg.teacher is None and state.pruned)
        state.config = {**teacher, "num_hidden_layers": n}
        fam = find_family(teacher)
        if fam is not None:
            state.config[fam.layers_key] = n
    else:  # a new model of the given sizes
        state.config, state.pruned = {k: v for k, v in state.config.items() if k != STRUCTURE_KEY}, False
    return None


def model_problem(recipe, base_dir: Path) -> Problem | None:
    """(location in the recipe, message) of the first value or stage the model's config.json rules out, or None.

    A config.json that is not a JSON object is a ModelError naming the file."""
    cfg = read_model_config(recipe.model.path, base_dir)
    if cfg is None:
        return None  # a Hub id or a folder made later: checked when the weights load
    headless = lm_head_problem(cfg) if recipe.model.task == "causal-lm" else None
    if headless:
        return ("model", "path"), f"{recipe.model.path}/config.json: {headless}"
    problem = _lengths(recipe, cfg)
    if problem:
        return problem
    state = ModelState(cfg, bool(cfg.get(STRUCTURE_KEY)), recipe.model.path, base_dir)
    for i, (kind, stage) in enumerate(recipe.stage_list()):
        if state.config is None:
            return None
        if type(stage) in MODEL_CHECKS:
            problem = MODEL_CHECKS.get(stage)(stage, state)
            if problem:
                return ("stages", i, kind) + problem[0], problem[1]
    return None
