"""``model:`` and ``data:`` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from compressor.recipe.schema.base import BIG, PathStr, Strict


class ModelConfig(Strict):
    path: PathStr = Field(description="local directory, pkg://<package>/<path>, or a Hub id")
    task: Literal["sequence-classification", "causal-lm"] = "sequence-classification"
    num_labels: int | None = Field(default=None, ge=1, le=100_000)
    trust_remote_code: bool = False
    revision: str | None = None


class SplitConfig(Strict):
    """How to cut dev/test out of a single file (deterministic, stratified)."""

    dev: float = Field(default=0.1, ge=0.0, lt=1.0)
    test: float = Field(default=0.0, ge=0.0, lt=1.0)
    stratify: bool = True
    dedupe: bool = True
    conflicts: Literal["keep-first", "majority", "drop"] = Field(
        default="keep-first", description="a text seen more than once with different labels: keep the first occurrence's "
        "label, the most common label, or drop the text (with dedupe)")
    validation: float = Field(default=0.1, ge=0.0, lt=1.0,
                              description="share of the training rows held out (stratified) to choose the best checkpoint "
                                          "and INT8 budget trials; taken from rows max_train_samples leaves unused when "
                                          "there are enough. dev / test are then only evaluated")
    validation_max: int = Field(default=2000, ge=1, description="at most this many validation rows (evaluated at every "
                                                                 "eval_every: a large one slows training)")
    select_on: Literal["validation", "dev"] = Field(
        default="validation", description="dev: choose checkpoints on the dev split instead (the report then says that "
                                          "its dev figure is the selection metric)")

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.dev + self.test >= 1.0:
            raise ValueError("dev + test must be < 1")
        if self.select_on == "validation" and self.validation == 0:
            raise ValueError("validation is 0 but select_on is validation: give validation a share (e.g. 0.1) "
                             "or set select_on: dev")
        return self


class DataConfig(Strict):
    train: PathStr = Field(description="csv / tsv / jsonl / parquet / txt file, or pkg://…")
    dev: PathStr | None = None
    test: PathStr | None = None
    calibration: PathStr | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "text"] = "auto"
    encoding: str = "utf-8"
    quoting: Literal["auto", "csv", "none"] = Field(
        default="auto", description="csv / tsv quoting: csv honours \"...\" fields (separators, doubled quotes, newlines "
        "inside); none reads quotes literally; auto: csv for .csv, and for .tsv when the file parses cleanly that way")
    text: str | list[str] = "text"
    label: str | None = "label"
    labels: list[str] | None = Field(default=None, description="label names in id order")
    split: SplitConfig = Field(default_factory=SplitConfig)
    max_length: int = Field(default=128, ge=8, le=32768)
    max_train_samples: int | None = Field(default=None, ge=1, le=BIG)
    max_eval_samples: int | None = Field(default=None, ge=1, le=BIG)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not 1 <= len(v) <= 2:
            raise ValueError("give one text column, or two for sentence pairs")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("label names must be unique")
        return v
