"""Advice for ``distill``: the student's compute and parameters against the teacher's, from config.json."""

from __future__ import annotations

import math

from compressor.plan.base import ADVICE, Advice, PlanContext, training_extras
from compressor.plan.shape import Shape
from compressor.recipe.model_config import read_model_config
from compressor.recipe.schema import DistillStage


def _shape(spec: str, ctx: PlanContext) -> Shape | None:
    cfg = read_model_config(spec, ctx.recipe_dir)
    return Shape.from_config(cfg, ctx.causal) if cfg else None


@ADVICE.register(DistillStage)
def distill(cfg: DistillStage, ctx: PlanContext) -> Advice:
    st = cfg.student
    teacher = _shape(cfg.teacher, ctx) if cfg.teacher else ctx.shape
    if st.path is not None:
        student = _shape(st.path, ctx)
        if teacher is None or student is None:
            return Advice("", "depends on the student", f"student {st.path}: its config is not readable here")
        layers, hidden, inter = student.layers, student.hidden, student.intermediate
    elif teacher is None:
        return Advice(
            "",
            "faster + smaller (dense)",
            "the model's config.json is not local, so the ratio is unknown; fewer or narrower layers speed up every runtime",
        )
    elif st.current:
        return Advice(
            "",
            "accuracy (recovery)",
            "student: current: the model as the previous stages left it (e.g. pruned) "
            "learns from the teacher; its size and speed do not change here" + training_extras(cfg),
        )
    elif st.layers is not None or st.every is not None:
        keep = len(st.layers) if st.layers is not None else math.ceil(teacher.layers / st.every)
        layers, hidden, inter = keep, teacher.hidden, teacher.intermediate
    else:
        layers = st.num_hidden_layers or teacher.layers
        hidden, inter = st.hidden_size or teacher.hidden, st.intermediate_size or teacher.intermediate
    speed = teacher.compute() / max(teacher.compute(layers, hidden, inter), 1)
    size = teacher.params() / max(teacher.params(layers, hidden, inter), 1)
    verdict = "faster + smaller" if speed > 1.05 else ("smaller" if size > 1.05 else "no gain")
    why = (
        f"student {layers} layers × {hidden} wide vs teacher {teacher.layers} × {teacher.hidden}: "
        f"≈{speed:.1f}× less compute per token, ≈{size:.1f}× fewer parameters "
        f"({'the embeddings stay' if hidden == teacher.hidden else 'embeddings narrower too'}); dense, so every runtime gains"
    )
    if st.path is None and st.layers is None and st.every is None:
        why += "; random init: needs a long distillation"
    return Advice("", verdict, why + training_extras(cfg))
