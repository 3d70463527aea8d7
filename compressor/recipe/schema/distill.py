"""The ``distill:`` stage: student, losses, transfer data."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from compressor.recipe.schema.base import BIG, CLASSIFIER, TRIMMED, Contract, Need, PathStr, Strict
from compressor.recipe.schema.train import TrainConfig


class StudentConfig(Strict):
    layers: list[int] | None = Field(default=None, description="teacher layers to keep, e.g. [0, 2, 4]")
    every: int | None = Field(default=None, ge=1, le=1000)
    path: PathStr | None = None
    num_hidden_layers: int | None = Field(default=None, ge=1, le=1000)
    hidden_size: int | None = Field(default=None, ge=1, le=1_000_000)
    intermediate_size: int | None = Field(default=None, ge=1, le=10_000_000)
    num_attention_heads: int | None = Field(default=None, ge=1, le=10_000)
    current: bool = Field(
        default=False,
        description="the model as the previous stages left it (e.g. pruned), "
        "distilled from `teacher`; `student: current` for short",
    )

    @model_validator(mode="after")
    def _one_way(self) -> StudentConfig:
        ways = [self.layers is not None, self.every is not None, self.path is not None, self.current]
        if sum(ways) > 1:
            raise ValueError("give one of layers, every, path or current")
        if self.current and any(
            v is not None for v in (self.num_hidden_layers, self.hidden_size, self.intermediate_size, self.num_attention_heads)
        ):
            raise ValueError("size overrides cannot be combined with current")
        if self.path is not None and any(
            v is not None for v in (self.num_hidden_layers, self.hidden_size, self.intermediate_size, self.num_attention_heads)
        ):
            raise ValueError("size overrides cannot be combined with path")
        if self.layers is not None:
            if not self.layers:
                raise ValueError("layers must not be empty")
            if any(i < 0 for i in self.layers):
                raise ValueError("layer indices must be >= 0")
            if any(i >= 100_000 for i in self.layers):
                raise ValueError("layer indices must be below 100000")
            if len(set(self.layers)) != len(self.layers):
                raise ValueError("layer indices must be unique")
        return self


class LogitLoss(Strict):
    type: Literal["logits"] = "logits"
    weight: float = Field(default=1.0, ge=0)
    temperature: float = Field(default=2.0, gt=0, le=1000)
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the hard-label loss")


class HiddenLoss(Strict):
    type: Literal["hidden"] = "hidden"
    weight: float = Field(default=1.0, ge=0)
    layer_map: dict[int, int] | None = Field(default=None, description="student layer -> teacher layer")


class AttentionLoss(Strict):
    type: Literal["attention"] = "attention"
    weight: float = Field(default=1.0, ge=0)
    layer_map: dict[int, int] | None = None


DistillLoss = Annotated[Union[LogitLoss, HiddenLoss, AttentionLoss], Field(discriminator="type")]


class TransferData(Strict):
    """Unlabelled text the student also learns from, through the teacher's outputs alone (a knowledge-transfer set,
    as TinyBERT's augmented data): rows whose text is in the training (labelled), dev or test split are dropped."""

    path: PathStr = Field(description="csv / tsv / jsonl / parquet / txt file, or pkg://… (relative to the recipe)")
    text: str | list[str] = Field(default="text", description="text column(s); a .txt file gives one text per line")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "text"] = "auto"
    encoding: str = "utf-8"
    max_samples: int | None = Field(default=None, ge=1, le=BIG)


class DistillStage(TrainConfig):
    teacher: PathStr | None = Field(default=None, description="teacher model dir; default: the current model")
    student: StudentConfig = Field(default_factory=StudentConfig)
    losses: list[DistillLoss] = Field(default_factory=lambda: [LogitLoss()])
    cache_teacher_logits: bool = False
    transfer: TransferData | None = Field(default=None, description="classifiers: extra unlabelled text for distillation")

    @field_validator("transfer")
    @classmethod
    def _soft_targets(cls, v: TransferData | None, info: ValidationInfo) -> TransferData | None:
        losses = info.data.get("losses") or []
        if v is not None and not any(x.type != "logits" or x.alpha < 1 for x in losses):
            raise ValueError(
                "transfer rows have no labels: add a soft-target loss (logits with alpha < 1) or a hidden / attention loss"
            )
        return v

    @field_validator("student", mode="before")
    @classmethod
    def _current(cls, v: Any) -> Any:
        return {"current": True} if v == "current" else v

    @field_validator("student")
    @classmethod
    def _needs_teacher(cls, v: StudentConfig, info: ValidationInfo) -> StudentConfig:
        if v.current and info.data.get("teacher") is None:
            raise ValueError("student: current needs a teacher path (the model to learn from, e.g. the one before pruning)")
        return v

    def contract(self) -> Contract:
        # a layer-subset student's layers and family are checked against config.json (compressor/recipe/model_config.py)
        needs: tuple[Need, ...] = ()
        if self.teacher is not None:
            needs += (
                Need(
                    TRIMMED,
                    False,
                    "the vocabulary was trimmed by an earlier stage, so this teacher's tokens differ "
                    "from the student's: trim the vocabulary after distillation",
                    ("teacher",),
                ),
            )
        if self.transfer is not None:
            needs += (
                Need(
                    CLASSIFIER,
                    True,
                    "a transfer set is for classifiers (a causal LM's extra text is just more data.train)",
                    ("transfer",),
                ),
            )
        contract = self.training_contract(new_model=not self.student.current, needs=needs)
        # the report's baseline is the teacher, which the stage keeps itself
        return replace(contract, compresses=False)
