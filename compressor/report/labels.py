"""What the report's rows are: the file behind each artifact, scores on the test split, how to run it again."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from compressor.report.markdown import eval_split


def artifact_label(name: str, rec: dict) -> str:
    """``onnx (model.opt.onnx)``: an ONNX artifact's row names the file it measured; other rows keep their name."""
    path = rec.get("path")
    if rec.get("runtime") == "onnxruntime" and path:
        return f"{name} ({Path(str(path)).name})"
    return name


def split_table(results: dict, split: str = "test") -> tuple[list[str], list[list[str]]] | None:
    """Scores on ``split`` when it was evaluated but the variants table shows another split (dev)."""
    arts = results["artifacts"]
    if eval_split(results) == split or not any(split in a.get("metrics", {}) for a in arts.values()):
        return None
    metric = results["primary_metric"]["name"]
    acc = metric == "accuracy"
    head = ["artifact", f"{metric} ({split})", "F1 macro" if acc else "tokens", "examples" if acc else "blocks"]
    rows = []
    for name, a in arts.items():
        m = a.get("metrics", {}).get(split)
        if not m or m.get(metric) is None:
            continue
        other = m.get("f1_macro" if acc else "tokens")
        rows.append([artifact_label(name, a), f"{m[metric] * 100:.2f} %" if acc else f"{m[metric]:.3f}",
                     "" if other is None else (f"{other * 100:.2f}" if acc else str(other)), str(m.get("n", ""))])
    return (head, rows) if rows else None


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
    return [" ".join(shlex.quote(a) for a in args),
            f"# writes {run_dir.parent / (name + '-again')}; this folder's recipe.yaml is the recipe as run "
            "(after --set), its relative paths relative to the recipe's folder"]
