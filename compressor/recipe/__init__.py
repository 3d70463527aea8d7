"""Recipe schema (pydantic v2) and loader (YAML with line numbers, --set overrides)."""

from compressor.recipe.loader import load_recipe, parse_recipe_text
from compressor.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "parse_recipe_text"]
