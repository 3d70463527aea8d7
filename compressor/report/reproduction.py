"""The "Reproduction" section: the command that runs the recipe again, and where the numbers were measured."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from compressor.report.document import Code, KeyValue, Section

DEFAULT = ["compressor run recipe.yaml   # the recipe.yaml in this run directory"]


def reproduction(run_dir: Path, name: str) -> list[str]:
    """The command that runs this recipe again: the original recipe file with its --set overrides, by absolute
    paths, into a sibling folder ``<name>-again``, so it works from any folder (inside this run too) and nests
    nothing in this run. Falls back to this folder's recipe.yaml when run.json is missing."""
    run_dir = Path(run_dir).absolute()
    info_file = run_dir / "run.json"
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    recipe = info.get("recipe")
    if recipe and info.get("recipe_dir"):
        recipe_path = Path(info["recipe_dir"]) / Path(recipe).name
    else:
        recipe_path = run_dir / "recipe.yaml"
    args = ["compressor", "run", str(recipe_path)]
    for o in info.get("overrides", []):
        args += ["--set", o]
    args += ["--set", f"output.name={name}-again", "-o", str(run_dir.parent)]
    return [
        " ".join(shlex.quote(a) for a in args),
        f"# writes {run_dir.parent / (name + '-again')}; this folder's recipe.yaml is the recipe as run "
        "(after --set), its relative paths relative to the recipe's folder",
    ]


def reproduction_section(results: dict) -> Section:
    """``results["reproduce"]`` is set by ``write_report`` (it reads run.json); without it, the generic command."""
    facts = {"seed": results.get("seed"), "run time": f"{results.get('seconds', '?')} s", **results.get("fingerprint", {})}
    return Section("Reproduction", blocks=[Code(list(results.get("reproduce") or DEFAULT)), KeyValue(facts)])
