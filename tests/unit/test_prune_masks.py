"""Pruning building blocks: schedules, importance, masks (no training run)."""

from __future__ import annotations

import pytest
import torch

from compressor.core.errors import CompressorError
from compressor.prune import schedules
from compressor.prune.criteria import criterion_for
from compressor.prune.masks import ImportanceObserver, PatternError, apply_masks, masks_for, select_modules, sparsity_table
from compressor.recipe.schema import DEFAULT_EXCLUDE, MovementCriterion, ScheduleConfig, TaylorCriterion


@pytest.mark.parametrize("kind", ["linear", "cubic"])
def test_schedules_hit_their_endpoints_and_never_go_down(kind):
    fn = schedules.SCHEDULES[kind]
    start, end, initial, final = 10, 110, 0.1, 0.8
    values = [fn(t, start, end, initial, final) for t in range(0, 200)]
    assert values[:start] == [0.0] * start  # nothing before start
    assert values[start] == pytest.approx(initial)
    assert values[end] == pytest.approx(final) and values[-1] == pytest.approx(final)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))


def test_cubic_prunes_fast_first_and_one_shot_jumps():
    assert schedules.cubic(50, 0, 100, 0.0, 0.8) > schedules.linear(50, 0, 100, 0.0, 0.8)  # 0.7 vs 0.4
    assert schedules.cubic(50, 0, 100, 0.0, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert [schedules.one_shot(t, 5, 0, 0.0, 0.6) for t in (4, 5, 99)] == [0.0, 0.6, 0.6]


def test_update_steps_follow_every_and_include_the_end():
    cfg = ScheduleConfig(type="cubic", start=10, end=95, every=20)
    steps = [t for t in range(0, 120) if schedules.is_update_step(cfg, t, 95)]
    assert steps == [10, 30, 50, 70, 90, 95]
    assert schedules.resolve_end(ScheduleConfig(), 1000) == 700  # default: 70 % of training


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.3, 0.8, 0.95])
def test_masks_reach_the_target_sparsity(scope, target):
    torch.manual_seed(0)
    weights = {"a": torch.nn.Parameter(torch.randn(64, 48)), "b": torch.nn.Parameter(3 * torch.randn(100, 17))}
    masks = masks_for({k: v.detach().abs() for k, v in weights.items()}, target, scope)
    apply_masks(weights, masks)
    table = sparsity_table({k: v.detach() for k, v in weights.items()})
    assert table["sparsity"] == pytest.approx(target, abs=0.005)
    per_layer = [r["sparsity"] for r in table["layers"]]
    if scope == "layer":
        assert per_layer == pytest.approx([target, target], abs=0.005)
    else:  # one global threshold: the larger-scaled layer keeps more of its weights
        assert per_layer[0] > per_layer[1]
    kept = torch.cat([w.detach().abs()[m].reshape(-1) for w, m in zip(weights.values(), masks.values())])
    if scope == "global":  # every kept weight is at least as large as every pruned one
        pruned_max = max(float(w.detach().abs()[~m].max()) for w, m in zip(weights.values(), masks.values()) if (~m).any())
        assert float(kept.min()) >= pruned_max - 1e-6


def test_taylor_scores_need_gradients():
    w = torch.nn.Parameter(torch.randn(4, 4))
    obs = ImportanceObserver({"layer.weight": w}, criterion_for(TaylorCriterion()))
    with pytest.raises(CompressorError, match="needs gradients, but none reached layer.weight"):
        obs.observe()
    with pytest.raises(CompressorError, match="no backward pass was observed"):
        obs.scores()
    (w.sum() * 2).backward()
    obs.observe()
    assert torch.allclose(obs.scores()["layer.weight"], (w * 2).abs().detach())


def test_movement_scores_reward_weights_moving_away_from_zero():
    w = torch.nn.Parameter(torch.tensor([[1.0, -1.0, 1.0]]))
    w.grad = torch.tensor([[-1.0, -1.0, 1.0]])  # SGD moves w by -grad: +, -, - → away, toward, toward zero
    obs = ImportanceObserver({"w": w}, criterion_for(MovementCriterion()))
    obs.observe()
    s = obs.scores()["w"][0]
    assert s[0] > 0 and s[1] < 0 and s[2] < 0


def test_module_selection_excludes_embeddings_and_heads_and_checks_patterns(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from compressor import testing as T

    model = AutoModelForSequenceClassification.from_pretrained(T.tiny_bert(tmp_path / "bert"))
    chosen = select_modules(model, [".*"], DEFAULT_EXCLUDE)
    assert chosen and all("classifier" not in n and "embed" not in n for n in chosen)
    assert any(n.endswith("attention.self.query") for n in chosen) and any(n.endswith("intermediate.dense") for n in chosen)
    only_ffn = select_modules(model, [r"intermediate\.dense"], DEFAULT_EXCLUDE)
    assert len(only_ffn) == 2
    with pytest.raises(PatternError, match=r"'mlp\\\\.fc' matches no Linear module") as e:
        select_modules(model, [r"mlp\.fc"], DEFAULT_EXCLUDE, where="stages.0.prune")
    assert e.value.field == "stages.0.prune.include.0"
    with pytest.raises(PatternError, match="matches no Linear module") as e:
        select_modules(model, [".*"], ["nothing_like_this"], user_exclude=["nothing_like_this"], where="p")
    assert e.value.field == "p.exclude.0"


def test_global_scope_that_empties_a_matrix_is_reported(caplog):
    """A matrix of uniformly small weights (BERT's pooler) loses everything under a global ranking: say so."""
    import logging

    from compressor.prune.stage import _warn_emptied

    torch.manual_seed(0)
    scores = {"encoder.dense": torch.randn(64, 64).abs(), "pooler.dense": torch.randn(16, 16).abs() * 0.01}
    masks = masks_for(scores, 0.5, "global")
    assert not masks["pooler.dense"].any()
    warned: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="compressor"):
        _warn_emptied(masks, warned)
        _warn_emptied(masks, warned)  # once per matrix, not at every schedule update
    assert warned == {"pooler.dense"}
    assert len([r for r in caplog.records if "pooler.dense" in r.getMessage()]) == 1
    _warn_emptied(masks_for(scores, 0.5, "layer"), set())  # per-layer scope keeps half of each: no warning
    assert len(caplog.records) == 1
