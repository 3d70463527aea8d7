"""Recipe schema (pydantic v2), loader (YAML with line numbers, --set overrides) and stage contracts."""

from __future__ import annotations

from pathlib import Path

from compressor.recipe.loader import load_recipe, parse_recipe_text
from compressor.recipe.schema import Recipe

__all__ = ["Recipe", "check_recipe", "load_recipe", "parse_recipe_text"]


def check_recipe(path: str | Path, overrides: list[str] | None = None) -> tuple[Recipe, list[str]]:
    """What ``validate`` and ``plan`` check, reading no weights: the schema, the stage contracts against the model's
    config.json, and every file the recipe names. Returns the recipe and warnings (a model folder that another recipe
    may write first); raises a RecipeError (file:line) for the first problem."""
    from compressor.recipe.paths import check_paths

    recipe, _ = load_recipe(path, overrides or [])
    return recipe, check_paths(recipe, Path(path).absolute().parent, models_must_exist=False)
