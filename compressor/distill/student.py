"""Build a student: a layer subset of the teacher (DistilBERT-style init), a smaller config
(random init), or an existing model."""

from __future__ import annotations

import copy
import logging

import torch

from compressor.arch.families import STRUCTURE_KEY, find_family
from compressor.arch.slicing import apply_structure
from compressor.core.errors import ModelError
from compressor.models import count_parameters
from compressor.recipe.schema import StudentConfig

log = logging.getLogger("compressor")


def layer_list_path(model) -> str:
    """Dotted path of the ModuleList holding the transformer blocks (bert.encoder.layer, transformer.h, model.layers…)."""
    n = model.config.num_hidden_layers
    found = [name for name, mod in model.named_modules() if isinstance(mod, torch.nn.ModuleList) and len(mod) == n and name]
    usual = [name for name in found if name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "block", "blocks")]
    if usual or found:
        return (usual or found)[0]
    raise ModelError(f"cannot find the {n} transformer layers of {type(model).__name__}")


def _same_class_from_config(teacher, config):
    """A fresh model of the teacher's class, shrunk to the pruned head counts its config records."""
    model = type(teacher)(config)
    apply_structure(model)
    return model


def _subset_config(teacher, layers: list[int]):
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in layers]
    s = getattr(config, STRUCTURE_KEY, None)
    if s and s.get("attention_heads"):  # structurally pruned: the student keeps the chosen layers' head counts
        setattr(config, STRUCTURE_KEY, {**s, "attention_heads": [s["attention_heads"][i] for i in layers]})
    return config


def _load(student, state: dict) -> None:
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"layer-subset student does not match the teacher: missing {missing[:3]}, unexpected {unexpected[:3]}")


def from_layers(teacher, layers: list[int]):
    """A student holding teacher layers ``layers`` (in that order), every other weight copied; it keeps the
    teacher's sizes, pruned ones included. ALBERT (one shared block): the student runs the block ``len(layers)``
    times."""
    n = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ValueError(f"layer {bad[0]} does not exist: the teacher has layers 0..{n - 1}")
    fam = find_family(teacher)
    config = _subset_config(teacher, layers)
    if fam is not None and fam.shared_block:
        refusal = fam.student_refusal(teacher.config)
        if refusal:
            raise ValueError(refusal)
        student = _same_class_from_config(teacher, config)
        _load(student, {k: v.detach().clone() for k, v in teacher.state_dict().items()})
        log.info("ALBERT student: the shared block runs %d times instead of %d", len(layers), n)
        return student
    path = layer_list_path(teacher)
    student = _same_class_from_config(teacher, config)
    remap = {f"{path}.{t}.": f"{path}.{s}." for s, t in enumerate(layers)}
    state = {}
    prefix = path + "."
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            idx = key[len(prefix) :].split(".", 1)[0]
            src = f"{prefix}{idx}."
            if src not in remap:
                continue
            key = remap[src] + key[len(src) :]
        state[key] = value.detach().clone()
    # a module the config builds by position (ModernBERT's first layer has no attention norm) follows the config
    own = student.state_dict()
    dropped = [k for k in state if k.startswith(prefix) and k not in own]
    if dropped:
        log.info("layer-subset student: %s not kept (the config builds this position without it)", ", ".join(dropped))
    _load(student, {k: v for k, v in state.items() if k not in dropped})
    return student


def from_config(teacher, cfg: StudentConfig):
    config = copy.deepcopy(teacher.config)
    if hasattr(config, STRUCTURE_KEY):  # a new, randomly initialised model of the given sizes
        delattr(config, STRUCTURE_KEY)
    for field in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads"):
        value = getattr(cfg, field)
        if value is not None:
            setattr(config, field, value)
    heads, hidden = config.num_attention_heads, config.hidden_size
    if hidden % heads:
        raise ValueError(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if getattr(config, "num_key_value_heads", None) and config.num_attention_heads % config.num_key_value_heads:
        config.num_key_value_heads = config.num_attention_heads
    if hasattr(config, "head_dim") and getattr(config, "head_dim", None):
        config.head_dim = hidden // heads
    torch.manual_seed(0)
    return _same_class_from_config(teacher, config)


def build_student(teacher, cfg: StudentConfig, load_path=None):
    """Return the student model. ``load_path`` loads an existing model (already resolved)."""
    if cfg.path is not None:
        student = load_path()
    elif cfg.layers is not None:
        student = from_layers(teacher, list(cfg.layers))
    elif cfg.every is not None:
        student = from_layers(teacher, list(range(0, teacher.config.num_hidden_layers, cfg.every)))
    elif any(
        getattr(cfg, f) is not None for f in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
    ):
        student = from_config(teacher, cfg)
    else:
        raise ValueError("say how to build the student: layers, every, path, or size overrides")
    tp, sp = count_parameters(teacher), count_parameters(student)
    if sp > tp:
        log.warning("the student (%d parameters) is larger than the teacher (%d)", sp, tp)
    return student
