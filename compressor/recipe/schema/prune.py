"""Pruning: criteria, schedules and the ``prune:`` stage (also used inside training as gradual pruning)."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from compressor.recipe.schema.base import (
    BIG,
    CAUSAL_LM,
    CLASSIFIER,
    FAKE_QUANT,
    SPARSE,
    TRIMMED,
    Contract,
    Need,
    PathStr,
    StageConfig,
    Strict,
    _patterns,
)

AFTER_QAT = Need(
    FAKE_QUANT,
    False,
    "pruning between QAT training and `quantize: {type: qat}` would change the fake-quantized layers; prune before the QAT stage",
)

# Linear layers whose names match one of these (re.search) are never pruned (unstructured) unless the
# recipe's ``exclude`` says otherwise: embeddings, task heads (BERT's pooler is part of the classification
# head: its weights are ~10x smaller than the encoder's, so a global magnitude ranking zeroes all of it and the
# classifier sees a constant) and norms (norms are not Linear anyway).
DEFAULT_EXCLUDE = ["embed", "classifier", "score", "lm_head", "pooler", "norm"]


class MagnitudeCriterion(Strict):
    """|w| (unstructured), or the L1 / L2 norm of a head's / neuron's weights (structured)."""

    type: Literal["magnitude"] = "magnitude"
    norm: Literal["l1", "l2"] = "l1"


class TaylorCriterion(Strict):
    """First-order Taylor importance |w · dL/dw| (structured: |dL/dmask| of a head / neuron mask)."""

    type: Literal["taylor"] = "taylor"
    batches: int = Field(default=32, ge=1, le=100_000, description="one-shot: training batches observed")


class MovementCriterion(Strict):
    """Movement pruning: −w · dL/dw accumulated over fine-tuning steps (inside finetune / distill only)."""

    type: Literal["movement"] = "movement"


class CalibrationCriterion(Strict):
    """A one-shot criterion observed on calibration text, layer by layer (a ``prune`` stage of a causal LM)."""

    samples: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="calibration blocks of data.max_length tokens, from data.calibration when given, else the training split",
    )
    batch_size: int = Field(default=8, ge=1, le=4096, description="blocks per forward pass while calibrating")


class WandaCriterion(CalibrationCriterion):
    """Wanda (Sun et al. 2023): |W| · ‖X‖ of each weight's input channel, compared within each output row."""

    type: Literal["wanda"] = "wanda"


class SparseGPTCriterion(CalibrationCriterion):
    """SparseGPT (Frantar & Alistarh 2023): mask by OBS saliency, the rest of the row updated to reconstruct the
    layer's outputs, with the inverse of the layer input Hessian H = 2 X Xᵀ / tokens."""

    type: Literal["sparsegpt"] = "sparsegpt"
    dampening: float = Field(
        default=0.01,
        ge=0.0,
        le=10.0,
        description="adds dampening · mean(diag H) to H's diagonal "
        "so that it can be inverted (0: none; a singular H is then refused)",
    )
    block_size: int = Field(default=128, ge=1, le=65536, description="columns whose masks are chosen together")


Criterion = Annotated[
    Union[MagnitudeCriterion, TaylorCriterion, MovementCriterion, WandaCriterion, SparseGPTCriterion], Field(discriminator="type")
]
ONE_SHOT_CRITERIA = ("wanda", "sparsegpt")  # criteria that need calibration text and prune one-shot only (their types)
NM_RE = re.compile(r"^(\d+):(\d+)$")


def _nm(spec: str) -> tuple[int, int] | None:
    """(N, M) of an "N:M" pattern, None for "unstructured"; ValueError otherwise."""
    if spec == "unstructured":
        return None
    match = NM_RE.match(spec)
    if not match or not 0 < int(match[1]) < int(match[2]) <= 64:
        raise ValueError(
            f"{spec!r}: write 'unstructured' or N:M with 0 < N < M <= 64, such as '2:4' (N weights kept "
            "in every group of M along the input dimension)"
        )
    return int(match[1]), int(match[2])


class ScheduleConfig(Strict):
    """When sparsity rises: one_shot (all at ``start``), linear, or cubic (Zhu & Gupta 2017)."""

    type: Literal["one_shot", "linear", "cubic"] = "cubic"
    start: int = Field(default=0, ge=0, le=BIG, description="optimizer step of the first pruning update")
    end: int | None = Field(
        default=None, ge=1, le=BIG, description="step the final sparsity is reached; default 70 % of training"
    )
    every: int = Field(default=50, ge=1, le=1_000_000, description="steps between pruning updates")
    initial: float = Field(default=0.0, ge=0.0, lt=1.0, description="sparsity at the first update")

    @field_validator("end")
    @classmethod
    def _end(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and v <= info.data.get("start", 0):
            raise ValueError("end must be after start")
        return v


class UnstructuredPrune(StageConfig):
    """Zero individual weights of Linear layers; masks held after every optimizer step, folded in at the end."""

    type: Literal["unstructured"] = "unstructured"
    sparsity: float = Field(ge=0.0, lt=1.0, description="final fraction of zeros in the pruned layers")
    criterion: Criterion = Field(default_factory=MagnitudeCriterion)
    scope: Literal["global", "layer"] = Field(
        default="global", description="one threshold for all layers, or per layer (unstructured magnitude / Taylor / movement)"
    )
    pattern: str = Field(
        default="unstructured",
        description="'unstructured', or N:M such as '2:4' / '4:8': N weights "
        "kept in every M along the input dimension (smaller when compressed; faster only with sparse "
        "kernels)",
    )
    include: list[str] = Field(default_factory=lambda: [".*"], min_length=1, description="regexes over module names")
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    _include = field_validator("include", "exclude")(classmethod(lambda cls, v: _patterns(v)))

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str, info: ValidationInfo) -> str:
        crit = info.data.get("criterion")
        if v == "global" and crit is not None and crit.type in ONE_SHOT_CRITERIA:
            raise ValueError(
                f"criterion {crit.type} prunes each layer on its own (layer by layer): use scope layer or leave scope out"
            )
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str, info: ValidationInfo) -> str:
        nm = _nm(v)
        final = info.data.get("sparsity")
        if nm is not None and final is not None and abs(final - (1 - nm[0] / nm[1])) > 1e-9:
            raise ValueError(
                f"{v} keeps {nm[0]} of every {nm[1]} weights, so sparsity must be {1 - nm[0] / nm[1]:g}, not {final:g}"
            )
        return v

    @field_validator("schedule")
    @classmethod
    def _initial(cls, v: ScheduleConfig, info: ValidationInfo) -> ScheduleConfig:
        final = info.data.get("sparsity")
        if final is not None and v.initial > final:
            raise ValueError(f"initial sparsity {v.initial} is above the final sparsity {final}")
        return v

    def contract(self) -> Contract:
        """As a stage of its own (one-shot: nothing trains while it runs); inside training see TrainConfig."""
        problems = []
        if self.criterion.type == "movement":
            problems.append(
                (("criterion", "type"), "movement pruning needs training: put `prune:` inside a finetune or distill stage")
            )
        if "schedule" in self.model_fields_set and self.schedule.type != "one_shot":
            problems.append(
                (
                    ("schedule", "type"),
                    f"a {self.schedule.type} schedule needs training: put `prune:` inside a "
                    "finetune or distill stage, or use schedule type one_shot",
                )
            )
        needs = (AFTER_QAT,)
        if self.criterion.type in ONE_SHOT_CRITERIA:
            needs += (
                Need(
                    CAUSAL_LM,
                    True,
                    f"criterion {self.criterion.type} calibrates decoder layers one by one: it "
                    "needs model.task causal-lm, not {task}",
                ),
            )
        return Contract(needs=needs, produces={SPARSE: ()}, problems=tuple(problems), changes_model=True, compresses=True)


class StructuredPrune(StageConfig):
    """Remove whole attention heads and FFN neurons: the Linear layers are sliced and the config rewritten.

    ``heads`` / ``ffn``: an integer is a count removed from every layer; a number below 1 (0.5) a fraction.
    """

    type: Literal["structured"] = "structured"
    heads: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0.0, lt=1.0)] = 0
    ffn: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0.0, lt=1.0)] = 0
    criterion: Criterion = Field(default_factory=TaylorCriterion)
    round_to: int = Field(default=8, ge=1, le=4096, description="kept FFN neurons: a multiple of this (fast kernels)")

    @model_validator(mode="after")
    def _something(self) -> StructuredPrune:
        if not self.heads and not self.ffn:
            raise ValueError("say what to remove: heads and / or ffn")
        if self.criterion.type == "movement":
            raise ValueError("criterion movement needs training; structured pruning uses magnitude or taylor")
        if self.criterion.type in ONE_SHOT_CRITERIA:
            raise ValueError(f"criterion {self.criterion.type} prunes individual weights: use it with type unstructured")
        return self

    def contract(self) -> Contract:
        # the family, head counts and an earlier structured pruning are checked against config.json
        # (compressor/recipe/model_config.py)
        return Contract(needs=(AFTER_QAT,), changes_model=True, compresses=True)


class VocabularyPrune(StageConfig):
    """Keep only the tokens the training data uses (plus special tokens): smaller embedding table and tokenizer."""

    type: Literal["vocabulary"] = "vocabulary"
    min_count: int = Field(default=1, ge=1, le=BIG, description="a token must occur this often in the training texts")
    keep_single_chars: bool = Field(default=True, description="also keep one-character tokens, so unseen words still split")
    extra_texts: list[PathStr] = Field(
        default_factory=list,
        description="unlabelled text files (one text per line) whose tokens are kept too, e.g. "
        "general English, so that words a small training split lacks keep their own embedding rows",
    )

    def contract(self) -> Contract:
        return Contract(
            needs=(AFTER_QAT, Need(CLASSIFIER, True, "vocabulary pruning is for task sequence-classification, not {task}")),
            produces={TRIMMED: ()},
            changes_model=True,
            compresses=True,
        )


PruneStage = Annotated[Union[UnstructuredPrune, StructuredPrune, VocabularyPrune], Field(discriminator="type")]
