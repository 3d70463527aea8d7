"""``model:`` and ``data:`` sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, ValidationInfo, field_validator, model_validator

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
        default="keep-first",
        description="a text seen more than once with different labels: keep the first occurrence's "
        "label, the most common label, or drop the text (with dedupe)",
    )
    validation: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="share of the training rows held out (stratified) to choose the best checkpoint "
        "and INT8 budget trials; taken from rows max_train_samples leaves unused when "
        "there are enough. dev / test are then only evaluated",
    )
    validation_max: int = Field(
        default=2000,
        ge=1,
        description="at most this many validation rows (evaluated at every eval_every: a large one slows training)",
    )
    select_on: Literal["validation", "dev"] = Field(
        default="validation",
        description="dev: choose checkpoints on the dev split instead (the report then says that "
        "its dev figure is the selection metric)",
    )

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.dev + self.test >= 1.0:
            raise ValueError("dev + test must be < 1")
        if self.select_on == "validation" and self.validation == 0:
            raise ValueError(
                "validation is 0 but select_on is validation: give validation a share (e.g. 0.1) or set select_on: dev"
            )
        return self


TABLES = ("auto", "csv", "tsv", "text")  # formats that are delimited text, where sep / header apply


def _column(v: Any) -> str | int:
    """A column: a name, or a 0-based position."""
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100_000:
        return v
    raise ValueError(f"a column is a name or a 0-based position (0, 1, ...), not {v!r}")


def _text_columns(v: Any) -> str | int | list:
    """One text column, or a list of one or two (sentence pairs)."""
    if not isinstance(v, list):
        return _column(v)
    if not 1 <= len(v) <= 2:
        raise ValueError("give one text column, or two for sentence pairs")
    for i, c in enumerate(v):
        try:
            _column(c)
        except ValueError as e:
            raise ValueError(f"item {i}: {e}") from None
    return v


Column = Annotated[Any, PlainValidator(_column, json_schema_input_type=str | int)]
TextColumns = Annotated[Any, PlainValidator(_text_columns, json_schema_input_type=str | int | list[str | int])]


class DataConfig(Strict):
    train: PathStr = Field(
        description="csv / tsv / jsonl / parquet / txt file, a Hugging Face datasets folder "
        "(save_to_disk, or data files load_dataset reads), hf:NAME[:CONFIG], or pkg://…"
    )
    dev: PathStr | None = None
    test: PathStr | None = None
    calibration: PathStr | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "text"] = "auto"
    encoding: str = "utf-8"
    quoting: Literal["auto", "csv", "none"] = Field(
        default="auto",
        description='csv / tsv quoting: csv honours "..." fields (separators, doubled quotes, newlines '
        "inside); none reads quotes literally; auto: csv for .csv, and for .tsv when the file parses cleanly that way",
    )
    sep: str | None = Field(
        default=None,
        description="the one character between columns of a csv / tsv / txt table "
        "(e.g. ';', '|', '\\t'); unset: the format's own (',' / tab), or the one candidate (, tab ; |) "
        "that splits the first records evenly",
    )
    header: bool = Field(
        default=True,
        description="false: the first row is data; columns are then named by `columns` or given by position (text: 0, label: 1)",
    )
    columns: list[str] | None = Field(default=None, description="names for the columns of a headerless file, in order")
    text: TextColumns = "text"
    label: Column | None = "label"
    labels: list[str] | None = Field(default=None, description="label names in id order")
    split: SplitConfig = Field(default_factory=SplitConfig)
    max_length: int = Field(default=128, ge=8, le=32768)
    max_train_samples: int | None = Field(default=None, ge=1, le=BIG)
    max_eval_samples: int | None = Field(default=None, ge=1, le=BIG)

    @field_validator("sep")
    @classmethod
    def _sep(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if len(v) != 1:
            raise ValueError(f"must be one character, not {len(v)} ({v!r}); e.g. ';' or '\\t' (a tab)")
        if v in ('"', "\n", "\r"):
            raise ValueError(f"{v!r} cannot separate columns (it quotes fields or ends lines)")
        fmt = info.data.get("format", "auto")
        if fmt not in TABLES:
            raise ValueError(f"is for csv / tsv / txt tables, not format {fmt}")
        if fmt == "tsv" and v != "\t":
            raise ValueError(f"{v!r} contradicts format: tsv (tab-separated); use format: csv or auto")
        return v

    @field_validator("header")
    @classmethod
    def _header(cls, v: bool, info: ValidationInfo) -> bool:
        if not v and info.data.get("format", "auto") not in TABLES:
            raise ValueError(f"false is for csv / tsv / txt tables; {info.data['format']} columns have names")
        return v

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return v
        if not v or len(set(v)) != len(v) or not all(c.strip() for c in v):
            raise ValueError("name each column once, none blank")
        if info.data.get("header", True):
            raise ValueError("names the columns of a headerless file: set header: false (or use the header's names)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("label names must be unique")
        return v
