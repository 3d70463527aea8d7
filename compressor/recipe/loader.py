"""Read a recipe: safe YAML with line numbers, ``--set`` overrides, pydantic validation.

Every failure becomes one :class:`RecipeError` whose text is
``recipe.yaml:LINE: path.to.field: message`` (with "did you mean" for misspelt keys).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from compressor.errors import RecipeError
from compressor.recipe.schema import Recipe

MAX_NODES = 100_000  # after alias expansion: stops "billion laughs" documents
MAX_DEPTH = 64
MAX_BYTES = 1_000_000

Path_ = tuple  # a location: ("stages", 1, "finetune", "lr")


class _Tree:
    """Python data built from a YAML node graph, plus the line of every path."""

    def __init__(self, file: str):
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.count = 0
        self.loader: yaml.SafeLoader | None = None

    def build(self, node: yaml.Node, path: tuple = (), depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise RecipeError(f"document expands to more than {MAX_NODES} nodes (alias bomb?)", self.file, node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise RecipeError(f"nested deeper than {MAX_DEPTH} levels", self.file, node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            assert self.loader is not None
            self.loader.flatten_mapping(node)  # resolves "<<" merge keys
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise RecipeError("mapping keys must be plain scalars", self.file, knode.start_mark.line + 1)
                key = self.loader.construct_object(knode)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise RecipeError(f"unsupported key {key!r}", self.file, knode.start_mark.line + 1)
                if key in out:
                    raise RecipeError(f"duplicate key {key!r}", self.file, knode.start_mark.line + 1)
                self.lines[path + (key,)] = knode.start_mark.line + 1
                out[key] = self.build(vnode, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        assert self.loader is not None
        return self.loader.construct_object(node)

    def line_of(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def _parse_yaml(text: str, file: str) -> tuple[Any, _Tree]:
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise RecipeError(f"larger than {MAX_BYTES} bytes; a recipe is a short file", file)
    tree = _Tree(file)
    loader = yaml.SafeLoader(text)
    tree.loader = loader
    try:
        node = loader.get_single_node()
        if node is None:
            raise RecipeError("empty recipe: it needs at least 'model' and 'data'", file, 1)
        data = tree.build(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise RecipeError(f"YAML syntax error: {problem}", file, line) from None
    except yaml.YAMLError as e:
        raise RecipeError(f"YAML error: {str(e).splitlines()[0]}", file) from None
    except RecursionError:
        raise RecipeError("nested too deeply", file) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise RecipeError("the top level must be a mapping (model:, data:, stages:, ...)", file, 1)
    return data, tree


def apply_override(data: dict, assignment: str) -> tuple:
    """Apply ``a.b.0.c=value`` (value parsed as a YAML scalar) in place; return the path."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected KEY=VALUE, e.g. stages.0.finetune.epochs=1")
    key, _, raw = assignment.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise RecipeError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    cur: Any = data
    path: list = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not part.lstrip("-").isdigit() or not -len(cur) <= int(part) < len(cur):
                raise RecipeError(f"--set {assignment!r}: {'.'.join(parts[:i]) or 'top'} has no item {part}")
            idx: Any = int(part) % len(cur)
        elif isinstance(cur, dict):
            idx = part
        else:
            raise RecipeError(f"--set {assignment!r}: {'.'.join(parts[:i])} is not a mapping or list")
        path.append(idx)
        if last:
            cur[idx] = value
        else:
            if isinstance(cur, dict) and cur.get(idx) is None:
                cur[idx] = {}
            cur = cur[idx]
    return tuple(path)


# ------------------------------------------------------------- pydantic error -> one line
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


def _display_path(loc: tuple, data: Any) -> tuple:
    """Drop the union tags pydantic adds to a location, keeping the user's own keys."""
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


def _has(data: Any, loc: tuple) -> bool:
    cur = data
    for seg in loc:
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur):
            cur = cur[seg]
        else:
            return False
    return True


def _message(err: dict, loc: tuple, data: Any) -> str:
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
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "stage" and isinstance(err.get("input"), dict):
        keys = list(err["input"])
        if len(keys) == 1:
            from compressor.recipe.schema import STAGE_NAMES

            close = difflib.get_close_matches(str(keys[0]), STAGE_NAMES, n=1, cutoff=0.6)
            msg = f"unknown stage '{keys[0]}'" + (f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(STAGE_NAMES)}")
    return msg[0].lower() + msg[1:] if msg else msg


def validate_data(data: dict, tree: _Tree | None, file: str, overrides: dict[tuple, str] | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
        recipe._source = (file, dict(tree.lines) if tree else {})
        return recipe
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = _display_path(tuple(err["loc"]), data)
        if err["type"] == "union_tag_invalid":
            loc = loc[:-1] + ("type",) if loc and loc[-1] not in ("type",) and not _has(data, loc) else loc + ("type",)
        field = ".".join(str(p) for p in loc) or None
        for opath, text in (overrides or {}).items():
            if loc[: len(opath)] == opath or opath[: len(loc)] == loc:
                raise RecipeError(_message(err, loc, data), f"{file} (--set {text})", None, field) from None
        line = tree.line_of(loc) if tree else None
        extra = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise RecipeError(_message(err, loc, data) + extra, file, line, field) from None


def parse_recipe_text(text: str, file: str = "recipe.yaml", overrides: list[str] | None = None) -> tuple[Recipe, dict]:
    """Parse and validate recipe text. Returns the recipe and the raw data (after overrides)."""
    data, tree = _parse_yaml(text, file)
    applied: dict[tuple, str] = {}
    for assignment in overrides or []:
        applied[apply_override(data, assignment)] = assignment
    return validate_data(data, tree, file, applied), data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> tuple[Recipe, dict]:
    p = Path(path)
    if not p.is_file():
        raise RecipeError("no such file" if not p.exists() else "not a file", str(path))
    try:
        raw = p.read_bytes()
        if len(raw) > MAX_BYTES:
            raise RecipeError(f"larger than {MAX_BYTES} bytes; a recipe is a short file", str(path))
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"not UTF-8 text (byte {e.start})", str(path)) from None
    except OSError as e:
        raise RecipeError(f"cannot read: {e.strerror}", str(path)) from None
    return parse_recipe_text(text, str(path), overrides)
