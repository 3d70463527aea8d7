"""Shared pieces of the recipe schema: the strict base model, path strings, bounds and regex lists."""

from __future__ import annotations

import re
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
