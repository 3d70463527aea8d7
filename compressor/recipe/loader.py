"""Read a recipe: safe YAML with line numbers, ``--set`` overrides, pydantic validation, stage contracts.

Every failure becomes one :class:`RecipeError` whose text is
``recipe.yaml:LINE: path.to.field: message`` (with "did you mean" for misspelt keys). The YAML reader is
yaml_tree.py, the error wording errors.py, the stage contracts contracts.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from compressor.core.errors import RecipeError
from compressor.recipe.contracts import recipe_problem
from compressor.recipe.errors import display_path, has, message, more, segment
from compressor.recipe.schema import Recipe
from compressor.recipe.yaml_tree import MAX_BYTES, MAX_DEPTH, MAX_NODES, Tree, apply_override, parse_yaml, short

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "apply_override", "load_recipe", "parse_recipe_text", "validate_data"]


def validate_data(data: dict, tree: Tree | None, file: str, overrides: dict[tuple, str] | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
        recipe._source = (file, dict(tree.lines) if tree else {})
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # a misspelt key also makes the real one "missing": report the misspelling, with its "did you mean"
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = display_path(tuple(err["loc"]), data)
        if err["type"] == "union_tag_invalid":
            loc = loc[:-1] + ("type",) if loc and loc[-1] not in ("type",) and not has(data, loc) else loc + ("type",)
        elif err["type"] == "union_tag_not_found" and isinstance(err.get("input"), dict):
            loc = loc + ("type",)
        field = ".".join(segment(p) for p in loc) or None
        for opath, text in (overrides or {}).items():
            if loc[: len(opath)] == opath or opath[: len(loc)] == loc:
                raise RecipeError(message(err, loc, data), f"{file} (--set {short(text)!r})", None, field) from None
        line = tree.line_of(loc) if tree else None
        raise RecipeError(message(err, loc, data) + more(errors, err, data, tree), file, line, field) from None
    problem = recipe_problem(recipe)  # the stage contracts (no file read here)
    if problem is not None:
        loc, text = problem
        field = ".".join(segment(p) for p in loc)
        for opath, assignment in (overrides or {}).items():
            if loc[: len(opath)] == opath or opath[: len(loc)] == loc:
                raise RecipeError(text, f"{file} (--set {short(assignment)!r})", None, field)
        raise RecipeError(text, file, tree.line_of(loc) if tree else None, field)
    return recipe


def parse_recipe_text(text: str, file: str = "recipe.yaml", overrides: list[str] | None = None) -> tuple[Recipe, dict]:
    """Parse and validate recipe text. Returns the recipe and the raw data (after overrides)."""
    data, tree = parse_yaml(text, file)
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
        loc, text = problem
        raise recipe.error(".".join(str(x) for x in loc), text)
    return recipe, data
