"""What a recipe asks of its model, checked against config.json alone (no weights, no torch) before anything runs.

Structured pruning needs a registered family, a head count its (grouped-query) layout can lose and a model
not pruned before; a layer-subset student needs layers that exist and a family that can form one. ``validate``,
``plan`` and ``run`` all load recipes through :func:`compressor.recipe.loader.load_recipe`, which calls
:func:`check_model`, so a recipe that passes ``validate`` is not refused for these reasons minutes later.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from compressor.arch.families import FAMILIES, STRUCTURE_KEY, CountError, cfg_get, find_family, structured_counts


def read_config_json(spec: str, base_dir: Path | None) -> dict | None:
    """config.json of a local / pkg:// model as a dict, or None (a Hub id, no config, unreadable)."""
    from compressor.core.errors import CompressorError
    from compressor.models import resolve

    try:
        path = resolve(spec, base_dir, "model.path", must_exist=False)
    except CompressorError:
        return None
    if isinstance(path, str) or not (Path(path) / "config.json").is_file():
        return None
    try:
        data = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _layers(cfg: dict) -> int:
    fam = find_family(cfg)
    try:
        return int((fam.layers(cfg) if fam else 0) or cfg_get(cfg, "num_hidden_layers", 0) or cfg_get(cfg, "n_layer", 0))
    except (TypeError, ValueError):  # a hand-edited config.json ("layers": [2]): not checked here, refused when it loads
        return 0


def _structured(cfg, state: dict, pruned: bool) -> tuple[tuple, str] | None:
    fam = find_family(state)
    if fam is None:
        return (), (f"structured pruning supports {', '.join(sorted(FAMILIES))} models, "
                    f"not '{cfg_get(state, 'model_type', '?')}'")
    if pruned:
        return (), "the model was structurally pruned already; prune it once, with the final sizes"
    try:
        structured_counts(fam, state, cfg.heads, cfg.ffn, cfg.round_to)
    except CountError as e:
        return (e.field,), e.message
    return None


def _student(cfg, teacher: dict) -> tuple[tuple, str] | None:
    st, n = cfg.student, _layers(teacher)
    if st.layers is not None and n:
        bad = [j for j, i in enumerate(st.layers) if i >= n]
        if bad:
            whose = "model" if cfg.teacher is None else "teacher"
            return ("student", "layers", bad[0]), f"layer {st.layers[bad[0]]} does not exist: the {whose} has layers 0..{n - 1}"
    fam = find_family(teacher)
    refusal = fam.student_refusal(teacher) if fam else None
    return (("student",), refusal) if refusal else None


def check_model(recipe, base_dir: Path | None) -> tuple[tuple, str] | None:
    """(location in the recipe, message) of the first stage the model cannot take, or None."""
    state = read_config_json(recipe.model.path, base_dir)
    if state is None:
        return None  # a Hub id or a folder made later: checked when the weights load
    pruned = bool(state.get(STRUCTURE_KEY))
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        here = ("stages", i, kind)
        if kind == "prune" and cfg.type == "structured":
            problem = _structured(cfg, state, pruned)
            if problem:
                return here + problem[0], problem[1]
            pruned = True
        elif kind == "quantize" and cfg.type in ("int4", "int8_weight"):
            from compressor.recipe.block_sizes import block_size_problem

            problem = block_size_problem(state, cfg.block_size)
            if problem:
                return here + ("block_size",), f"{problem} (from {recipe.model.path}/config.json)"
        elif kind == "distill":
            st = cfg.student
            if st.current:
                continue
            if st.path is not None:
                state = read_config_json(st.path, base_dir)
            elif st.layers is not None or st.every is not None:
                teacher = state if cfg.teacher is None else read_config_json(cfg.teacher, base_dir)
                if teacher is None:
                    return None
                problem = _student(cfg, teacher)
                if problem:
                    return here + problem[0], problem[1]
                n = len(st.layers) if st.layers is not None else math.ceil(_layers(teacher) / st.every)
                pruned = bool(teacher.get(STRUCTURE_KEY)) or (cfg.teacher is None and pruned)
                state = {**teacher, "num_hidden_layers": n}
                fam = find_family(teacher)
                if fam is not None:
                    state[fam.layers_key] = n
                continue
            else:  # a new model of the given sizes
                state, pruned = {k: v for k, v in state.items() if k != STRUCTURE_KEY}, False
                continue
            if state is None:
                return None
            pruned = bool(state.get(STRUCTURE_KEY))
    return None
