"""Every file and folder a recipe names, checked before anything runs (``validate``, ``plan``, ``run``).

Data files must exist when the recipe is checked, and their layout (data.sep / header / columns, column
positions, dataset folders) must fit their first records. Model folders (``model.path``, a distillation teacher or
student) may be written by another recipe first (``../runs/sst2-finetune/model``): ``validate`` and ``plan``
warn about a missing one, ``run`` refuses it before it creates the run folder. Each message carries the
recipe's file:line. Paths are resolved by :func:`compressor.models.resolve`, the one resolver every stage uses.
"""

from __future__ import annotations

from pathlib import Path

from compressor.core.errors import CompressorError
from compressor.recipe.schema import DistillStage, Recipe, VocabularyPrune


def path_fields(recipe: Recipe) -> list[tuple[str, str, bool]]:
    """(dotted field, path as written, is a model folder) for every path in ``recipe``."""
    out = [("model.path", recipe.model.path, True)]
    out += [
        (f"data.{name}", spec, False) for name in ("train", "dev", "test", "calibration") if (spec := getattr(recipe.data, name))
    ]
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        here = f"stages.{i}.{kind}"
        if isinstance(cfg, DistillStage):
            if cfg.teacher:
                out.append((f"{here}.teacher", cfg.teacher, True))
            if cfg.student.path:
                out.append((f"{here}.student.path", cfg.student.path, True))
            if cfg.transfer is not None:
                out.append((f"{here}.transfer.path", cfg.transfer.path, False))
        if isinstance(cfg, VocabularyPrune):
            out += [(f"{here}.extra_texts.{j}", spec, False) for j, spec in enumerate(cfg.extra_texts)]
    return out


def check_paths(recipe: Recipe, base_dir: Path, models_must_exist: bool) -> list[str]:
    """Raise a RecipeError (file:line) for a missing data file; return warnings for missing model folders
    (or raise for them too when ``models_must_exist``, as ``run`` does)."""
    from compressor.models import resolve

    warnings = []
    for field, spec, is_model in path_fields(recipe):
        if not is_model and spec.startswith("hf:"):  # a Hub dataset: check_layout asks whether the Hub is reachable
            continue
        try:
            resolve(spec, base_dir, field, must_exist=not is_model)
        except CompressorError as e:
            text = str(e)
            text = text[len(field) + 2 :] if text.startswith(f"{field}: ") else text
            err = recipe.error(field, text)
            if not is_model or models_must_exist or spec.startswith("pkg://"):
                raise err from None
            warnings.append(f"{err}; `run` needs it (does another recipe write it first?)")
    _check_layout(recipe, base_dir)
    return warnings


def _check_layout(recipe: Recipe, base_dir: Path) -> None:
    """The data layout (separator, header, column positions, dataset folders) against each file's first records."""
    from compressor.data import LayoutError, check_layout

    try:
        check_layout(recipe.data, base_dir, recipe.model.task)
    except LayoutError as e:
        raise recipe.error(e.field, e.detail) from None
