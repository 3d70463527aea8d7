"""Shared pieces of the recipe schema: the strict base model, path strings, bounds and regex lists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from compressor.core.pkgpath import PREFIX, split_pkg

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BIG = 1_000_000_000  # upper bound of step / sample / count settings (a 5000-digit integer is a typo, not a request)


def _path(v: str) -> str:
    """A path a recipe names: not blank, no NUL, and a pkg:// path that stays inside its package."""
    if not v.strip():
        raise ValueError("empty path: name a file or folder")
    if "\x00" in v:
        raise ValueError("the path holds a NUL character")
    if v.startswith(PREFIX):
        split_pkg(v)
    return v


PathStr = Annotated[str, AfterValidator(_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _patterns(v: list[str]) -> list[str]:
    for p in v:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
    if len(set(v)) != len(v):
        raise ValueError("lists a pattern twice")
    return v


# ---------------------------------------------------------------- stage contracts
# Facts about the model as the stages leave it (what a later stage may require, or must not find).
EXPORTED = "exported"  # an ONNX graph of the model exists (export stage)
FAKE_QUANT = "fake-quant"  # the model carries QAT fake quantization that no `quantize: {type: qat}` has exported yet
SPARSE = "sparse"  # unstructured zeros that training without `prune:` would regrow
TRIMMED = "trimmed-vocabulary"  # the tokenizer and embedding table lost tokens
CLASSIFIER, CAUSAL_LM = "sequence-classification", "causal-lm"  # the recipe's task (always a fact from the start)
SELECTION = "selection-split"  # the data has a split to choose on (held-out validation rows, or dev / test)


@dataclass(frozen=True)
class Need:
    """A fact the stage requires (``present``) or refuses (not ``present``); ``field``: the recipe key under the stage
    that the refusal points at; ``message`` may name ``{source}``, the stage that made the fact."""

    fact: str
    present: bool
    message: str
    field: tuple = ()


@dataclass(frozen=True)
class Contract:
    """What a stage requires of the model before it and what it leaves (one rule for validate, plan and run: see
    compressor/recipe/contracts.py). ``problems``: settings this stage refuses outright, as (field, message)."""

    needs: tuple[Need, ...] = ()
    produces: dict[str, tuple] = dc_field(default_factory=dict)  # fact -> field under the stage that made it
    removes: tuple[str, ...] = ()
    problems: tuple[tuple[tuple, str], ...] = ()
    changes_model: bool = False  # rewrites the PyTorch model: runs in every process, its snapshot is saved
    trains: bool = False  # trains the run's model (a new classifier head is trained afterwards)
    compresses: bool = False  # compresses the model in place: the report's baseline is copied before it
    selects: bool = False  # chooses by a metric (best checkpoint, INT8 budget trials): a validation split is held out


class StageConfig(Strict):
    """The config of a stage (``stages:`` item): declares its contract."""

    def contract(self) -> Contract:
        return Contract()
