"""The layers of compressor/, checked with ``ast`` (so imports inside functions count too).

- no import cycles between compressor modules;
- compressor/report imports no torch / onnxruntime / transformers / onnx, and of compressor only core and report;
- compressor/core imports nothing else from compressor;
- no file over 400 lines, no function over 80 lines.

Each allowlist below names today's offenders explicitly. A NEW offender fails the test; an entry that no longer
offends fails it too ("remove it from the allowlist"), so the lists only shrink.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "compressor"

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80

# Import cycles still open: none. An entry would be one import edge (importer, imported) that closes a cycle; the test
# drops these edges before it looks for cycles, and fails for an entry that no longer closes one.
CYCLE_EDGES_ALLOWED: set[tuple[str, str]] = set()

# Files over MAX_FILE_LINES today (path relative to the repository root); their owners split them.
LONG_FILES_ALLOWED: set[str] = set()

# Functions over MAX_FUNCTION_LINES today ("path::qualified.name"); their owners split them.
LONG_FUNCTIONS_ALLOWED: set[str] = set()

REPORT_FORBIDDEN = ("torch", "onnxruntime", "transformers", "onnx", "onnxscript", "accelerate", "bitsandbytes")
REPORT_MAY_IMPORT = ("compressor.core", "compressor.report")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def names_in(mod: ast.Module, package: str) -> list[str]:
    """Every module named by an import statement anywhere in ``mod`` (top level, functions, branches, TYPE_CHECKING);
    ``package`` anchors relative imports."""
    out = []
    for node in ast.walk(mod):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg.mod import name`` -> pkg.mod.name: the checker keeps its longest prefix that is a module, so
            # ``from pkg import submodule`` counts as the submodule, not as pkg/__init__ (which every import of a
            # submodule runs anyway)
            out += [f"{base}.{a.name}" for a in node.names]
    return out


def imported_names(path: Path) -> list[str]:
    me = module_name(path)
    return names_in(tree(path), me if path.name == "__init__.py" else me.rpartition(".")[0])


def internal_edges(path: Path) -> set[str]:
    """The compressor modules this file imports (the most specific existing module of each name)."""
    known = modules()
    found = set()
    for name in imported_names(path):
        if not name.startswith("compressor"):
            continue
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module_name(path):
            found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    return {m: internal_edges(p) for m, p in modules().items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in g:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    g = graph()
    missing = sorted(f"{a} -> {b}" for a, b in CYCLE_EDGES_ALLOWED if b not in g.get(a, set()))
    assert not missing, f"allowlisted import edges that no longer exist (remove them from CYCLE_EDGES_ALLOWED): {missing}"
    for a, b in CYCLE_EDGES_ALLOWED:
        g[a] = g[a] - {b}
    found = cycles(g)
    assert not found, "import cycles in compressor/ (imports inside functions count): " + "; ".join(
        " <-> ".join(c) for c in found
    )
    full = cycles(graph())
    stale = sorted(f"{a} -> {b}" for a, b in CYCLE_EDGES_ALLOWED if not any(a in c and b in c for c in full))
    assert not stale, f"these allowlisted edges close no cycle any more (remove them from CYCLE_EDGES_ALLOWED): {stale}"


def test_the_checker_sees_imports_inside_functions_and_closes_cycles():
    """The checker itself: imports inside functions and relative imports are seen, and a cycle through them is found."""
    src = (
        "import os\n"
        "def f():\n    from compressor.report import markdown\n    import torch\n"
        "class C:\n    def g(self):\n        if True:\n            from ..core import rundir\n"
    )
    names = names_in(ast.parse(src), "compressor.report")
    assert {"os", "torch", "compressor.report.markdown", "compressor.core.rundir"} <= set(names)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert "compressor.report.common" in graph()["compressor.report.markdown"]
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    sizes = dict(functions(ast.parse(f"class K:\n  @staticmethod\n  def long():\n{body}\n  def short():\n    pass\n")))
    assert sizes == {"K.long": MAX_FUNCTION_LINES + 2, "K.short": 2}


def test_report_is_a_pure_renderer():
    bad = []
    for m, p in modules().items():
        if not m.startswith("compressor.report"):
            continue
        for name in imported_names(p):
            top = name.split(".")[0]
            if top in REPORT_FORBIDDEN:
                bad.append(f"{rel(p)}: imports {name}")
            elif top == "compressor" and name != "compressor" and not name.startswith(REPORT_MAY_IMPORT):
                bad.append(f"{rel(p)}: imports {name} (report may import only {', '.join(REPORT_MAY_IMPORT)})")
    assert not bad, "\n".join(bad)


def test_core_imports_only_core():
    bad = [
        f"{rel(p)}: imports {name}"
        for m, p in modules().items()
        if m.startswith("compressor.core")
        for name in imported_names(p)
        if name.split(".")[0] == "compressor" and name != "compressor" and not name.startswith("compressor.core")
    ]
    assert not bad, "\n".join(bad)


def long_files() -> set[str]:
    return {rel(p) for p in modules().values() if len(p.read_text(encoding="utf-8").splitlines()) > MAX_FILE_LINES}


def functions(mod: ast.AST, prefix: str = ""):
    """(qualified name, lines) of every function and method, nested ones included (decorators count)."""
    for child in ast.iter_child_nodes(mod):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                yield name, child.end_lineno - start + 1
            yield from functions(child, name + ".")


def long_functions() -> set[str]:
    return {f"{rel(p)}::{name}" for p in modules().values() for name, n in functions(tree(p)) if n > MAX_FUNCTION_LINES}


def test_no_file_over_400_lines():
    found = long_files()
    new = sorted(found - LONG_FILES_ALLOWED)
    assert not new, f"files over {MAX_FILE_LINES} lines (split them): {new}"
    gone = sorted(LONG_FILES_ALLOWED - found)
    assert not gone, f"no longer over {MAX_FILE_LINES} lines (remove them from LONG_FILES_ALLOWED): {gone}"


def test_no_function_over_80_lines():
    found = long_functions()
    new = sorted(found - LONG_FUNCTIONS_ALLOWED)
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them): {new}"
    gone = sorted(LONG_FUNCTIONS_ALLOWED - found)
    assert not gone, f"no longer over {MAX_FUNCTION_LINES} lines (remove them from LONG_FUNCTIONS_ALLOWED): {gone}"


def test_complexity_ignores_name_only_todays_offenders():
    """pyproject's per-file C901 ignores list exactly the files ruff finds over the limit without them."""
    tomllib = pytest.importorskip("tomllib")
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    ignored = {f for f, rules in lint.get("per-file-ignores", {}).items() if "C901" in rules}
    limit = lint["mccabe"]["max-complexity"]
    out = subprocess.run(
        [
            ruff,
            "check",
            "--isolated",
            "--select",
            "C901",
            "--config",
            f"lint.mccabe.max-complexity={limit}",
            "--output-format",
            "concise",
            "compressor",
            "benchmarks",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    found = {line.split(":")[0] for line in out.stdout.splitlines() if " C901 " in line}
    assert not found - ignored, f"functions over complexity {limit} (split them): {sorted(found - ignored)}"
    assert not ignored - found, f"no longer over complexity {limit} (drop their per-file-ignores): {sorted(ignored - found)}"


def test_ruff_lint_and_format_hold():
    """`ruff check` and `ruff format --check` pass over compressor/, tests/ and benchmarks/ (pyproject's settings)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    paths = ["compressor", "tests", "benchmarks"]
    lint = subprocess.run([ruff, "check", "--output-format", "concise", *paths], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, f"ruff check found problems (ruff check --fix fixes many):\n{lint.stdout[-3000:]}"
    fmt = subprocess.run([ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, f"not laid out by ruff format (run: ruff format {' '.join(paths)}):\n{fmt.stdout[-3000:]}"
