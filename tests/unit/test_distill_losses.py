"""Distillation losses against hand computations on small tensors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from compressor.distill.losses import AttentionTerm, HiddenTerm, LogitTerm, kd_kl, uniform_layer_map
from compressor.recipe.schema import AttentionLoss, HiddenLoss, LogitLoss


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def test_kd_kl_matches_hand_computation():
    s, t, tau = [1.0, 2.0, 0.5], [0.0, 3.0, 1.0], 2.0
    ps, pt = _softmax([x / tau for x in s]), _softmax([x / tau for x in t])
    expected = tau**2 * sum(q * math.log(q / p) for p, q in zip(ps, pt))
    got = kd_kl(torch.tensor([s]), torch.tensor([t]), tau)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(kd_kl(torch.tensor([t]), torch.tensor([t]), tau)) == pytest.approx(0.0, abs=1e-7)


def test_logit_term_mixes_hard_and_soft():
    s = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([[0.5, 2.5], [1.0, -2.0]])
    labels = torch.tensor([1, 0])
    term = LogitTerm(LogitLoss(temperature=3.0, alpha=0.25), causal=False)
    loss, logs = term(SimpleNamespace(logits=s), SimpleNamespace(logits=t), {"labels": labels})
    ce = float(torch.nn.functional.cross_entropy(s, labels))
    kd = float(kd_kl(s, t, 3.0))
    assert float(loss) == pytest.approx(0.25 * ce + 0.75 * kd, rel=1e-6)
    assert logs["ce"] == pytest.approx(ce) and logs["kd"] == pytest.approx(kd)


def test_causal_logit_term_masks_padding():
    torch.manual_seed(0)
    s, t = torch.randn(1, 4, 5), torch.randn(1, 4, 5)
    labels = torch.tensor([[1, 2, -100, -100]])
    term = LogitTerm(LogitLoss(temperature=1.0, alpha=0.0), causal=True)
    loss, _ = term(SimpleNamespace(logits=s), SimpleNamespace(logits=t), {"labels": labels, "attention_mask": labels != -100})
    # only position 0 predicts a real token (labels[1]); positions 1 and 2 predict padding
    assert float(loss) == pytest.approx(float(kd_kl(s[:, :1], t[:, :1], 1.0)), rel=1e-6)
    t2 = t.clone()
    t2[:, 1:] += 100.0  # changing masked positions changes nothing
    loss2, _ = term(SimpleNamespace(logits=s), SimpleNamespace(logits=t2), {"labels": labels, "attention_mask": labels != -100})
    assert float(loss2) == pytest.approx(float(loss))


def _cfg(layers, hidden, heads=2):
    return SimpleNamespace(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads)


def test_hidden_term_uniform_map_and_masked_mse():
    term = HiddenTerm(HiddenLoss(), _cfg(2, 4), _cfg(4, 4))
    assert term.layer_map == {0: 1, 1: 3} and term.proj is None
    hs = [torch.zeros(1, 3, 4) for _ in range(3)]
    ht = [torch.zeros(1, 3, 4) for _ in range(5)]
    ht[2][0, 0] = 2.0  # teacher layer 1, token 0
    ht[4][0, 2] = 9.0  # teacher layer 3, token 2 is padding: ignored
    mask = torch.tensor([[1, 1, 0]])
    loss, _ = term(SimpleNamespace(hidden_states=hs), SimpleNamespace(hidden_states=ht), {"attention_mask": mask})
    # layer pair (0,1): mean over 2 tokens × 4 dims of 4.0 on one token → 4*4/8 = 2.0; pair (1,3): 0
    assert float(loss) == pytest.approx((2.0 + 0.0) / 2)


def test_hidden_term_projects_when_widths_differ():
    term = HiddenTerm(HiddenLoss(layer_map={0: 0}), _cfg(1, 4), _cfg(2, 8))
    assert isinstance(term.proj, torch.nn.Linear) and term.proj.in_features == 4 and term.proj.out_features == 8
    hs = [torch.randn(2, 3, 4) for _ in range(2)]
    ht = [torch.randn(2, 3, 8) for _ in range(3)]
    loss, _ = term(SimpleNamespace(hidden_states=hs), SimpleNamespace(hidden_states=ht), {"attention_mask": torch.ones(2, 3)})
    loss.backward()
    assert term.proj.weight.grad is not None


def test_attention_term_kl_and_head_check():
    term = AttentionTerm(AttentionLoss(), _cfg(1, 4), _cfg(1, 4))
    a_t = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])  # B=1, H=1, Q=2, K=2
    a_s = torch.tensor([[[[0.25, 0.75], [0.9, 0.1]]]])
    loss, _ = term(SimpleNamespace(attentions=[a_s]), SimpleNamespace(attentions=[a_t]), {"attention_mask": torch.ones(1, 2)})
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(loss) == pytest.approx(row0 / 2, rel=1e-5)
    with pytest.raises(ValueError, match="equal head counts"):
        AttentionTerm(AttentionLoss(), _cfg(1, 4, heads=2), _cfg(1, 4, heads=4))


def test_layer_map_checks_ranges():
    assert uniform_layer_map(3, 6) == {0: 1, 1: 3, 2: 5}
    with pytest.raises(ValueError, match="teacher layer 7"):
        HiddenTerm(HiddenLoss(layer_map={0: 7}), _cfg(2, 4), _cfg(4, 4))


def test_alpha_one_is_plain_cross_entropy_without_a_teacher_pass():
    from compressor.distill.stage import make_loss_fn

    term = LogitTerm(LogitLoss(alpha=1.0), causal=False)
    assert not term.needs_teacher
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    batch = {"labels": torch.tensor([0, 1]), "input_ids": torch.ones(2, 3, dtype=torch.long)}
    loss, logs = term(SimpleNamespace(logits=logits), None, batch)
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, batch["labels"])))

    class Student(torch.nn.Module):
        def forward(self, **kw):
            return SimpleNamespace(logits=logits)

    def teacher(**kw):
        raise AssertionError("the teacher must not run for hard labels only")

    loss_fn = make_loss_fn(teacher, [term], "cpu")
    assert float(loss_fn(Student(), dict(batch))[0]) == pytest.approx(float(loss))


def test_hard_label_loss_skips_unlabelled_transfer_rows():
    term = LogitTerm(LogitLoss(alpha=0.5, temperature=1.0), causal=False)
    s = torch.tensor([[2.0, -1.0], [0.5, 0.3], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.2, 0.9], [0.3, 0.1]])
    labels = torch.tensor([0, -100, 1])  # the middle row is a transfer row
    loss, logs = term(SimpleNamespace(logits=s), SimpleNamespace(logits=t), {"labels": labels})
    ce = torch.nn.functional.cross_entropy(s[[0, 2]], labels[[0, 2]])
    assert logs["ce"] == pytest.approx(float(ce)) and logs["kd"] == pytest.approx(float(kd_kl(s, t, 1.0)))
    only_transfer, logs = term(SimpleNamespace(logits=s[1:2]), SimpleNamespace(logits=t[1:2]), {"labels": labels[1:2]})
    assert "ce" not in logs and float(only_transfer) == pytest.approx(float(kd_kl(s[1:2], t[1:2], 1.0)))
