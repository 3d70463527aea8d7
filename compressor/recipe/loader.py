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

from compressor.core.errors import RecipeError
from compressor.recipe.contracts import recipe_problem
from compressor.recipe.schema import Recipe

MAX_NODES = 100_000  # after alias expansion: stops "billion laughs" documents
MAX_DEPTH = 64
MAX_BYTES = 1_000_000

_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Tree:
    """Python data built from a YAML node graph, plus the line of every path."""

    def __init__(self, file: str):
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.count = 0
        self.loader: yaml.SafeLoader | None = None
        self._flat: set[int] = set()  # mapping nodes whose merge keys are resolved
        self._flattening: set[int] = set()

    def _tick(self, node: yaml.Node) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise RecipeError(f"document expands to more than {MAX_NODES} nodes (alias bomb?)", self.file, node.start_mark.line + 1)

    def flatten(self, node: yaml.MappingNode, depth: int = 0) -> None:
        """Resolve "<<" merge keys in place, like PyYAML's flatten_mapping, but without its blow-up.

        Keys written in the mapping win over merged ones, and an earlier merged mapping over a later
        one; merged duplicates are dropped rather than copied (PyYAML copies them, so merges of
        merges grow exponentially). Every merged pair counts towards MAX_NODES.
        """
        if id(node) in self._flat:
            return
        line = node.start_mark.line + 1
        if id(node) in self._flattening:
            raise RecipeError("a merge key ('<<') refers to the mapping it is in", self.file, line)
        if depth > MAX_DEPTH:
            raise RecipeError(f"nested deeper than {MAX_DEPTH} levels", self.file, line)
        self._flattening.add(id(node))
        own, sources = [], []
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                subs = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                if not all(isinstance(m, yaml.MappingNode) for m in subs):
                    raise RecipeError("'<<' merges a mapping or a list of mappings", self.file, vnode.start_mark.line + 1)
                sources += subs
            else:
                if knode.tag == "tag:yaml.org,2002:value":
                    knode.tag = "tag:yaml.org,2002:str"
                own.append((knode, vnode))
        if sources:
            taken = {self._key_id(k) for k, _ in own}
            merged = []
            for m in sources:
                self.flatten(m, depth + 1)
                for knode, vnode in m.value:
                    self._tick(knode)
                    kid = self._key_id(knode)
                    if kid not in taken:
                        taken.add(kid)
                        merged.append((knode, vnode))
            node.value = merged + own
        self._flattening.discard(id(node))
        self._flat.add(id(node))

    def _key_id(self, knode: yaml.Node) -> Any:
        if isinstance(knode, yaml.ScalarNode):
            assert self.loader is not None
            key = self.scalar(knode)
            return ("k", type(key).__name__, key) if isinstance(key, (str, int, float, bool)) or key is None else ("n", id(knode))
        return ("n", id(knode))

    def build(self, node: yaml.Node, path: tuple = (), depth: int = 0) -> Any:
        self._tick(node)
        if depth > MAX_DEPTH:
            raise RecipeError(f"nested deeper than {MAX_DEPTH} levels", self.file, node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            # scalars go through SafeLoader (which rejects unknown tags); collections are built here
            raise RecipeError(f"unsupported YAML tag {node.tag!r}", self.file, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            assert self.loader is not None
            self.flatten(node)  # resolves "<<" merge keys
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise RecipeError("mapping keys must be plain scalars", self.file, knode.start_mark.line + 1)
                key = self.scalar(knode)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise RecipeError(f"unsupported key {key!r}", self.file, knode.start_mark.line + 1)
                if key in out:
                    raise RecipeError(f"duplicate key {key!r}", self.file, knode.start_mark.line + 1)
                self.lines[path + (key,)] = knode.start_mark.line + 1
                out[key] = self.build(vnode, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        assert self.loader is not None
        try:
            return self.loader.construct_object(node)
        except ValueError:  # int() of more than sys.get_int_max_str_digits() digits
            text = str(getattr(node, "value", ""))
            raise RecipeError(f"a number of {len(text)} digits is far out of range ({text[:12]}...)", self.file,
                              node.start_mark.line + 1) from None

    def line_of(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


_EMPTY = object()


def _compose(text: str, file: str) -> tuple[Any, _Tree]:
    """YAML text -> (data, tree) with the node / depth limits; every failure is a RecipeError with a line."""
    tree = _Tree(file)
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters right away
        tree.loader = loader
        node = loader.get_single_node()
        return (_EMPTY if node is None else tree.build(node)), tree
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else _line_at(loader)
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise RecipeError(f"YAML syntax error: {problem}", file, line) from None
    except yaml.reader.ReaderError as e:  # e.g. a NUL or other control character
        line = text.count("\n", 0, max(e.position, 0)) + 1
        char = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise RecipeError(f"YAML error: unacceptable character #x{char:04x} (not text?)", file, line) from None
    except yaml.YAMLError as e:
        raise RecipeError(f"YAML error: {str(e).splitlines()[0]}", file, _line_at(loader)) from None
    except RecursionError:
        raise RecipeError(f"nested deeper than {MAX_DEPTH} levels", file, _line_at(loader)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _line_at(loader: yaml.SafeLoader | None) -> int:
    return (getattr(loader, "line", 0) or 0) + 1


def _parse_yaml(text: str, file: str) -> tuple[Any, _Tree]:
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise RecipeError(f"larger than {MAX_BYTES} bytes; a recipe is a short file", file)
    data, tree = _compose(text, file)
    if data is _EMPTY:
        raise RecipeError("empty recipe: it needs at least 'model' and 'data'", file, 1)
    if not isinstance(data, dict):
        raise RecipeError("the top level must be a mapping (model:, data:, stages:, ...)", file, 1)
    return data, tree


def _short(text: str, limit: int = 80) -> str:
    """A --set assignment as quoted in an error: long values (a 5000-digit number) cut short."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_override(data: dict, assignment: str) -> tuple:
    """Apply ``a.b.0.c=value`` (value parsed as a YAML scalar) in place; return the path."""
    if "=" not in assignment:
        raise RecipeError(f"--set {_short(assignment)!r}: expected KEY=VALUE, e.g. stages.0.finetune.epochs=1")
    key, _, raw = assignment.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise RecipeError(f"--set {_short(assignment)!r}: empty key")
    value: Any = ""
    if raw.strip():
        try:
            value, _ = _compose(raw, f"--set {_short(assignment)!r}")
            value = None if value is _EMPTY else value
        except RecipeError as e:
            if "YAML" not in e.message:  # a limit (alias bomb, nesting), not just text that is no YAML
                raise RecipeError(f"--set {_short(assignment)!r}: {e.message}") from None
            value = raw
    cur: Any = data
    path: list = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not part.lstrip("-").isdigit() or not -len(cur) <= int(part) < len(cur):
                raise RecipeError(f"--set {_short(assignment)!r}: {'.'.join(parts[:i]) or 'top'} has no item {part}")
            idx: Any = int(part) % len(cur)
        elif isinstance(cur, dict):
            idx = part
        else:
            raise RecipeError(f"--set {_short(assignment)!r}: {'.'.join(parts[:i])} is not a mapping or list")
        path.append(idx)
        if last:
            cur[idx] = value
        else:
            if isinstance(cur, dict) and cur.get(idx) is None:
                if parts[i + 1].lstrip("-").isdigit():
                    raise RecipeError(f"--set {_short(assignment)!r}: {'.'.join(parts[: i + 1])} is not set, so it has no item {parts[i + 1]}")
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


def _type_tags(loc: tuple) -> list:
    """The ``type:`` values accepted at ``loc`` (a discriminated union such as a quantize stage)."""
    tp: Any = Recipe
    for seg in loc:
        tp = _step(tp, seg)
        if tp is None:
            return []
    return [opt.model_fields["type"].default for opt in _options(tp)
            if isinstance(opt, type) and issubclass(opt, BaseModel) and "type" in opt.model_fields]


def _display_path(loc: tuple, data: Any) -> tuple:
    """Drop the union tags pydantic adds to a location, keeping the user's own keys."""
    # a stage item's tag repeats its one key: ("stages", 2, "quantize", "quantize", ...)
    loc = tuple(seg for i, seg in enumerate(loc)
                if not (i >= 2 and isinstance(seg, str) and seg == loc[i - 1] and isinstance(loc[i - 2], int)))
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
    if kind == "union_tag_not_found" and isinstance(err.get("input"), dict):
        tags = _type_tags(loc[:-1])
        return "required field is missing" + (f"; one of: {', '.join(repr(t) for t in tags)}" if tags else "")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "stage" and isinstance(err.get("input"), dict):
        keys = list(err["input"])
        if len(keys) == 1:
            from compressor.recipe.schema import STAGE_NAMES

            close = difflib.get_close_matches(str(keys[0]), STAGE_NAMES, n=1, cutoff=0.6)
            msg = f"unknown stage {_segment(keys[0])!r}" + (f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(STAGE_NAMES)}")
    return msg[0].lower() + msg[1:] if msg else msg


def _segment(seg: Any) -> str:
    """A path segment as the user wrote it; quoted when it is empty, padded or unprintable."""
    s = str(seg)
    return s if s and s.isprintable() and s.strip() == s else repr(s)


def _more(errors: list[dict], shown: dict, data: Any, tree: _Tree | None) -> str:
    """The other unknown keys, each with its line and "did you mean", then a count of the remaining errors."""
    others, seen = [], set()
    for x in errors:
        if x is shown or x["type"] != "extra_forbidden":
            continue
        loc = _display_path(tuple(x["loc"]), data)
        field = ".".join(_segment(p) for p in loc)
        if field in seen:
            continue
        seen.add(field)
        line = tree.line_of(loc) if tree else None
        hint = _message(x, loc, data).removeprefix("unknown key; ")
        others.append(f"{field}" + (f" (line {line}" if line else " (") + (f"; {hint})" if "did you mean" in hint else ")"))
    rest = sum(1 for x in errors if x is not shown and x["type"] != "extra_forbidden")
    out = f"; also unknown: {', '.join(others)}" if others else ""
    return out + (f" (and {rest} more error{'s' if rest > 1 else ''})" if rest > 0 else "")


def validate_data(data: dict, tree: _Tree | None, file: str, overrides: dict[tuple, str] | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
        recipe._source = (file, dict(tree.lines) if tree else {})
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # a misspelt key also makes the real one "missing": report the misspelling, with its "did you mean"
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = _display_path(tuple(err["loc"]), data)
        if err["type"] == "union_tag_invalid":
            loc = loc[:-1] + ("type",) if loc and loc[-1] not in ("type",) and not _has(data, loc) else loc + ("type",)
        elif err["type"] == "union_tag_not_found" and isinstance(err.get("input"), dict):
            loc = loc + ("type",)
        field = ".".join(_segment(p) for p in loc) or None
        for opath, text in (overrides or {}).items():
            if loc[: len(opath)] == opath or opath[: len(loc)] == loc:
                raise RecipeError(_message(err, loc, data), f"{file} (--set {_short(text)!r})", None, field) from None
        line = tree.line_of(loc) if tree else None
        raise RecipeError(_message(err, loc, data) + _more(errors, err, data, tree), file, line, field) from None
    problem = recipe_problem(recipe)  # the stage contracts (no file read here)
    if problem is not None:
        loc, message = problem
        field = ".".join(_segment(p) for p in loc)
        for opath, text in (overrides or {}).items():
            if loc[: len(opath)] == opath or opath[: len(loc)] == loc:
                raise RecipeError(message, f"{file} (--set {_short(text)!r})", None, field)
        raise RecipeError(message, file, tree.line_of(loc) if tree else None, field)
    return recipe


def parse_recipe_text(text: str, file: str = "recipe.yaml", overrides: list[str] | None = None) -> tuple[Recipe, dict]:
    """Parse and validate recipe text. Returns the recipe and the raw data (after overrides)."""
    data, tree = _parse_yaml(text, file)
    applied: dict[tuple, str] = {}
    for assignment in overrides or []:
        applied[apply_override(data, assignment)] = assignment
    return validate_data(data, tree, file, applied), data


def load_recipe(path: str | Path, overrides: list[str] | None = None, recipe_dir: Path | None = None) -> tuple[Recipe, dict]:
    """Read and validate a recipe file, then check it against the model's config.json (the stage contracts, see
    contracts.py); relative paths in it are taken from ``recipe_dir`` (default: the file's folder)."""
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
    recipe, data = parse_recipe_text(text, str(path), overrides)
    problem = recipe_problem(recipe, Path(recipe_dir) if recipe_dir is not None else p.absolute().parent)
    if problem is not None:
        loc, message = problem
        raise recipe.error(".".join(str(x) for x in loc), message)
    return recipe, data
