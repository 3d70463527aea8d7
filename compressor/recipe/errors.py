"""A pydantic validation error as one line: the user's own path (union tags dropped), "did you mean" for a misspelt
key, the accepted ``type:`` values, and the other unknown keys with their lines."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel

from compressor.recipe.schema import STAGE_NAMES, Recipe
from compressor.recipe.yaml_tree import Tree


def _options(tp: Any) -> list:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _options(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [o for a in typing.get_args(tp) for o in _options(a)]
    return [tp]


def _step(tp: Any, seg: Any) -> Any:
    for opt in _options(tp):
        if isinstance(opt, type) and issubclass(opt, BaseModel) and isinstance(seg, str) and seg in opt.model_fields:
            return opt.model_fields[seg].annotation
        origin = typing.get_origin(opt)
        if origin is list and isinstance(seg, int):
            return typing.get_args(opt)[0]
        if origin is dict:
            return typing.get_args(opt)[1]
    for opt in _options(tp):  # a union tag, e.g. the "dynamic" of {type: dynamic}
        if isinstance(opt, type) and issubclass(opt, BaseModel) and "type" in opt.model_fields:
            if opt.model_fields["type"].default == seg:
                return opt
    return None


def _known_keys(loc: tuple) -> list[str]:
    tp: Any = Recipe
    for seg in loc[:-1]:
        nxt = _step(tp, seg)
        if nxt is not None:
            tp = nxt
    keys: list[str] = []
    for opt in _options(tp):
        if isinstance(opt, type) and issubclass(opt, BaseModel):
            keys += list(opt.model_fields)
    return keys


def _type_tags(loc: tuple) -> list:
    """The ``type:`` values accepted at ``loc`` (a discriminated union such as a quantize stage)."""
    tp: Any = Recipe
    for seg in loc:
        tp = _step(tp, seg)
        if tp is None:
            return []
    return [
        opt.model_fields["type"].default
        for opt in _options(tp)
        if isinstance(opt, type) and issubclass(opt, BaseModel) and "type" in opt.model_fields
    ]


def display_path(loc: tuple, data: Any) -> tuple:
    """Drop the union tags pydantic adds to a location, keeping the user's own keys."""
    # a stage item's tag repeats its one key: ("stages", 2, "quantize", "quantize", ...)
    loc = tuple(
        seg
        for i, seg in enumerate(loc)
        if not (i >= 2 and isinstance(seg, str) and seg == loc[i - 1] and isinstance(loc[i - 2], int))
    )
    out: list = []
    cur = data
    for i, seg in enumerate(loc):
        if isinstance(cur, dict) and seg in cur:
            out.append(seg)
            cur = cur[seg]
        elif isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur):
            out.append(seg)
            cur = cur[seg]
        elif i == len(loc) - 1 and not (isinstance(seg, str) and seg.startswith("function-")):
            out.append(seg)
    return tuple(out)


def has(data: Any, loc: tuple) -> bool:
    cur = data
    for seg in loc:
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur):
            cur = cur[seg]
        else:
            return False
    return True


def message(err: dict, loc: tuple, data: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(loc)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; expected one of: {', '.join(known)}" if known else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found" and isinstance(err.get("input"), dict):
        tags = _type_tags(loc[:-1])
        return "required field is missing" + (f"; one of: {', '.join(repr(t) for t in tags)}" if tags else "")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "stage" and isinstance(err.get("input"), dict):
        keys = list(err["input"])
        if len(keys) == 1:
            close = difflib.get_close_matches(str(keys[0]), STAGE_NAMES, n=1, cutoff=0.6)
            msg = f"unknown stage {segment(keys[0])!r}" + (
                f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(STAGE_NAMES)}"
            )
    return msg[0].lower() + msg[1:] if msg else msg


def segment(seg: Any) -> str:
    """A path segment as the user wrote it; quoted when it is empty, padded or unprintable."""
    s = str(seg)
    return s if s and s.isprintable() and s.strip() == s else repr(s)


def more(errors: list[dict], shown: dict, data: Any, tree: Tree | None) -> str:
    """The other unknown keys, each with its line and "did you mean", then a count of the remaining errors."""
    others, seen = [], set()
    for x in errors:
        if x is shown or x["type"] != "extra_forbidden":
            continue
        loc = display_path(tuple(x["loc"]), data)
        field = ".".join(segment(p) for p in loc)
        if field in seen:
            continue
        seen.add(field)
        line = tree.line_of(loc) if tree else None
        hint = message(x, loc, data).removeprefix("unknown key; ")
        others.append(f"{field}" + (f" (line {line}" if line else " (") + (f"; {hint})" if "did you mean" in hint else ")"))
    rest = sum(1 for x in errors if x is not shown and x["type"] != "extra_forbidden")
    out = f"; also unknown: {', '.join(others)}" if others else ""
    return out + (f" (and {rest} more error{'s' if rest > 1 else ''})" if rest > 0 else "")
