"""Sparsity patterns and the criterion registry: N:M groups, per-row / per-layer exact counts, refusals."""

from __future__ import annotations

import pytest
import torch

from compressor.prune.criteria import CRITERIA, GRADIENTS, criterion_for
from compressor.prune.patterns import Pattern, PatternError, nm_violations
from compressor.recipe.schema import MagnitudeCriterion, MovementCriterion, Recipe, TaylorCriterion


@pytest.mark.parametrize("spec", ["2:4", "4:8", "1:4"])
def test_nm_keeps_exactly_n_per_group_along_inputs(spec):
    p = Pattern.parse(spec)
    score = torch.rand(16, 64)
    keep = p.keep(score, p.sparsity)
    groups = keep.reshape(16, -1, p.m).sum(-1)
    assert bool((groups == p.n).all())
    # the kept ones are the group's largest scores
    g = score.reshape(16, -1, p.m)
    kept_min = torch.where(keep.reshape(g.shape), g, torch.inf).amin(-1)
    dropped_max = torch.where(~keep.reshape(g.shape), g, -torch.inf).amax(-1)
    assert bool((kept_min >= dropped_max).all())
    assert nm_violations(score * keep, p.n, p.m) == 0


def test_unstructured_rows_and_layer_hit_the_count():
    p = Pattern.parse("unstructured")
    score = torch.rand(10, 50)
    rows = p.keep(score, 0.3, rows=True)
    assert (rows.sum(1) == 35).all()
    layer = p.keep(score, 0.3)
    assert int((~layer).sum()) == 150


def test_pattern_parse_and_width_check():
    assert str(Pattern.parse("2:4")) == "2:4" and Pattern.parse("4:8").sparsity == 0.5
    for bad in ("2:2", "4:2", "0:4", "2-4", "half"):
        with pytest.raises(ValueError, match="N:M"):
            Pattern.parse(bad)
    with pytest.raises(
        PatternError,
        match=r"2:4 needs every pruned layer's input width to be a multiple of 4, but "
        r"mlp.fc has 30 inputs",
    ) as e:
        Pattern.parse("2:4").check("mlp.fc", 30, "stages.0.prune.pattern")
    assert e.value.field == "stages.0.prune.pattern"


def test_registry_keyed_by_config_type():
    assert isinstance(criterion_for(MagnitudeCriterion()), CRITERIA.get(MagnitudeCriterion()))
    assert GRADIENTS in criterion_for(TaylorCriterion()).needs and GRADIENTS in criterion_for(MovementCriterion()).needs
    assert not criterion_for(MagnitudeCriterion()).needs
    with pytest.raises(ValueError, match="registered twice"):
        CRITERIA.register(MagnitudeCriterion)(object)


def _recipe(prune: dict, where: str = "stage"):
    stages = [{"prune": prune}] if where == "stage" else [{"finetune": {"prune": prune}}]
    return Recipe.model_validate({"model": {"path": "m"}, "data": {"train": "t"}, "stages": stages})


def test_schema_pattern_rules():
    assert _recipe({"type": "unstructured", "sparsity": 0.5, "pattern": "2:4"}).stages[0].prune.pattern == "2:4"
    with pytest.raises(ValueError, match="2:4 keeps 2 of every 4 weights, so sparsity must be 0.5, not 0.6"):
        _recipe({"type": "unstructured", "sparsity": 0.6, "pattern": "2:4"})
    with pytest.raises(ValueError, match="write 'unstructured' or N:M"):
        _recipe({"type": "unstructured", "sparsity": 0.5, "pattern": "2of4"})
    with pytest.raises(ValueError, match="pattern 2:4 is applied one-shot"):
        _recipe({"type": "unstructured", "sparsity": 0.5, "pattern": "2:4"}, where="finetune")
