"""Safe YAML with a line number for every path, limits against alias bombs and deep nesting, and ``--set`` overrides.

Every failure is a :class:`RecipeError` with the file and line.
"""

from __future__ import annotations

from typing import Any

import yaml

from compressor.core.errors import RecipeError

MAX_NODES = 100_000  # after alias expansion: stops "billion laughs" documents
MAX_DEPTH = 64
MAX_BYTES = 1_000_000

_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class Tree:
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
            raise RecipeError(
                f"document expands to more than {MAX_NODES} nodes (alias bomb?)", self.file, node.start_mark.line + 1
            )

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
            raise RecipeError(
                f"a number of {len(text)} digits is far out of range ({text[:12]}...)", self.file, node.start_mark.line + 1
            ) from None

    def line_of(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


EMPTY = object()


def compose(text: str, file: str) -> tuple[Any, Tree]:
    """YAML text -> (data, tree) with the node / depth limits; every failure is a RecipeError with a line."""
    tree = Tree(file)
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters right away
        tree.loader = loader
        node = loader.get_single_node()
        return (EMPTY if node is None else tree.build(node)), tree
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


def parse_yaml(text: str, file: str) -> tuple[Any, Tree]:
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise RecipeError(f"larger than {MAX_BYTES} bytes; a recipe is a short file", file)
    data, tree = compose(text, file)
    if data is EMPTY:
        raise RecipeError("empty recipe: it needs at least 'model' and 'data'", file, 1)
    if not isinstance(data, dict):
        raise RecipeError("the top level must be a mapping (model:, data:, stages:, ...)", file, 1)
    return data, tree


def short(text: str, limit: int = 80) -> str:
    """A --set assignment as quoted in an error: long values (a 5000-digit number) cut short."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_override(data: dict, assignment: str) -> tuple:
    """Apply ``a.b.0.c=value`` (value parsed as a YAML scalar) in place; return the path."""
    if "=" not in assignment:
        raise RecipeError(f"--set {short(assignment)!r}: expected KEY=VALUE, e.g. stages.0.finetune.epochs=1")
    key, _, raw = assignment.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise RecipeError(f"--set {short(assignment)!r}: empty key")
    value: Any = ""
    if raw.strip():
        try:
            value, _ = compose(raw, f"--set {short(assignment)!r}")
            value = None if value is EMPTY else value
        except RecipeError as e:
            if "YAML" not in e.message:  # a limit (alias bomb, nesting), not just text that is no YAML
                raise RecipeError(f"--set {short(assignment)!r}: {e.message}") from None
            value = raw
    cur: Any = data
    path: list = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not part.lstrip("-").isdigit() or not -len(cur) <= int(part) < len(cur):
                raise RecipeError(f"--set {short(assignment)!r}: {'.'.join(parts[:i]) or 'top'} has no item {part}")
            idx: Any = int(part) % len(cur)
        elif isinstance(cur, dict):
            idx = part
        else:
            raise RecipeError(f"--set {short(assignment)!r}: {'.'.join(parts[:i])} is not a mapping or list")
        path.append(idx)
        if last:
            cur[idx] = value
        else:
            if isinstance(cur, dict) and cur.get(idx) is None:
                if parts[i + 1].lstrip("-").isdigit():
                    raise RecipeError(
                        f"--set {short(assignment)!r}: {'.'.join(parts[: i + 1])} is not set, so it has no item {parts[i + 1]}"
                    )
                cur[idx] = {}
            cur = cur[idx]
    return tuple(path)
