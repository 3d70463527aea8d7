"""Distillation losses, registered by config type. Each builds a term ``(s_out, t_out, batch) -> loss``.

- logits: α·CE(hard labels) + (1−α)·τ²·KL(teacher_τ ‖ student_τ); for causal LMs token-level,
  padding masked.
- hidden: MSE between mapped hidden states (uniform layer map by default), through a learned
  projection when widths differ (the projection is not part of the saved student).
- attention: KL between attention distributions of mapped layers (MiniLM / TinyBERT style).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from compressor.core.registry import Registry
from compressor.recipe.schema import AttentionLoss, HiddenLoss, LogitLoss

LOSSES: Registry = Registry("distillation loss")


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, mask: torch.Tensor | None = None):
    """τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), averaged over rows (rows where ``mask`` is true)."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    if mask is not None:
        kl = kl[mask]
    return kl.mean() * temperature**2


def uniform_layer_map(n_student: int, n_teacher: int) -> dict[int, int]:
    """Student layer i learns from teacher layer (i+1)·n_t/n_s − 1: the last of each block."""
    return {i: (i + 1) * n_teacher // n_student - 1 for i in range(n_student)}


def check_layer_map(layer_map: dict[int, int], n_student: int, n_teacher: int) -> dict[int, int]:
    for s, t in layer_map.items():
        if not 0 <= s < n_student:
            raise ValueError(f"layer_map names student layer {s}; the student has layers 0..{n_student - 1}")
        if not 0 <= t < n_teacher:
            raise ValueError(f"layer_map names teacher layer {t}; the teacher has layers 0..{n_teacher - 1}")
    return dict(layer_map)


class Term(torch.nn.Module):
    """A loss term; may own trainable parameters (projections) that are not saved with the student."""

    needs_hidden = False
    needs_attentions = False
    needs_teacher = True

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight


class LogitTerm(Term):
    def __init__(self, cfg: LogitLoss, causal: bool):
        super().__init__(cfg.weight)
        self.t, self.alpha, self.causal = cfg.temperature, cfg.alpha, causal
        self.needs_teacher = cfg.alpha < 1.0  # alpha 1: hard labels only (the no-KD baseline), no teacher pass

    def forward(self, s_out, t_out, batch) -> tuple[torch.Tensor, dict]:
        labels = batch.get("labels")
        if not self.needs_teacher and labels is not None:
            logits = s_out.logits[:, :-1] if self.causal else s_out.logits
            target = labels[:, 1:] if self.causal else labels
            if not (target != -100).any():
                zero = logits.sum() * 0.0
                return zero, {"ce": 0.0}
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)
            return ce, {"ce": float(ce.detach())}
        if self.causal:
            s, t = s_out.logits[:, :-1], t_out.logits[:, :-1]
            target = labels[:, 1:] if labels is not None else None
            mask = (target != -100) if target is not None else batch["attention_mask"][:, 1:].bool()
            kd = kd_kl(s, t, self.t, mask)
            ce = (
                F.cross_entropy(s.reshape(-1, s.shape[-1]).float(), target.reshape(-1), ignore_index=-100)
                if target is not None
                else None
            )
        else:
            kd = kd_kl(s_out.logits, t_out.logits, self.t)
            ce = None
            if labels is not None and (labelled := labels != -100).any():  # transfer rows carry -100: no hard label
                ce = F.cross_entropy(s_out.logits[labelled].float(), labels[labelled])
        if ce is None or self.alpha == 0:
            return kd, {"kd": float(kd.detach())}
        loss = self.alpha * ce + (1 - self.alpha) * kd
        return loss, {"kd": float(kd.detach()), "ce": float(ce.detach())}


def _mask(batch) -> torch.Tensor:
    return batch["attention_mask"].bool()


class HiddenTerm(Term):
    needs_hidden = True

    def __init__(self, cfg: HiddenLoss, student_cfg, teacher_cfg):
        super().__init__(cfg.weight)
        ns, nt = student_cfg.num_hidden_layers, teacher_cfg.num_hidden_layers
        self.layer_map = check_layer_map(cfg.layer_map, ns, nt) if cfg.layer_map else uniform_layer_map(ns, nt)
        ds, dt = _width(student_cfg), _width(teacher_cfg)
        self.proj = torch.nn.Linear(ds, dt) if ds != dt else None

    def forward(self, s_out, t_out, batch) -> tuple[torch.Tensor, dict]:
        mask = _mask(batch)
        losses = []
        for s, t in self.layer_map.items():
            hs, ht = s_out.hidden_states[s + 1], t_out.hidden_states[t + 1]  # index 0 is the embeddings
            if self.proj is not None:
                hs = self.proj(hs)
            losses.append(F.mse_loss(hs[mask].float(), ht[mask].float()))
        loss = torch.stack(losses).mean()
        return loss, {"hidden": float(loss.detach())}


class AttentionTerm(Term):
    needs_attentions = True

    def __init__(self, cfg: AttentionLoss, student_cfg, teacher_cfg):
        super().__init__(cfg.weight)
        from compressor.arch.families import attention_heads  # the real counts, after head pruning too

        ns, nt = student_cfg.num_hidden_layers, teacher_cfg.num_hidden_layers
        self.layer_map = check_layer_map(cfg.layer_map, ns, nt) if cfg.layer_map else uniform_layer_map(ns, nt)
        hs, ht = attention_heads(student_cfg), attention_heads(teacher_cfg)
        for s, t in self.layer_map.items():
            if hs[s] != ht[t]:
                raise ValueError(
                    f"attention transfer needs equal head counts (student layer {s} has {hs[s]}, teacher layer {t} has {ht[t]})"
                )

    def forward(self, s_out, t_out, batch) -> tuple[torch.Tensor, dict]:
        mask = _mask(batch)  # rows of real query tokens
        losses = []
        for s, t in self.layer_map.items():
            a_s, a_t = s_out.attentions[s].float(), t_out.attentions[t].float()  # B, H, Q, K
            kl = (a_t * (torch.log(a_t.clamp_min(1e-12)) - torch.log(a_s.clamp_min(1e-12)))).sum(-1)  # B, H, Q
            losses.append(kl.permute(0, 2, 1)[mask].mean())
        loss = torch.stack(losses).mean()
        return loss, {"attention": float(loss.detach())}


def _width(config) -> int:
    return getattr(config, "hidden_size", None) or config.n_embd


@LOSSES.register(LogitLoss)
def _logits(cfg, student_cfg, teacher_cfg, causal: bool) -> Term:
    return LogitTerm(cfg, causal)


@LOSSES.register(HiddenLoss)
def _hidden(cfg, student_cfg, teacher_cfg, causal: bool) -> Term:
    return HiddenTerm(cfg, student_cfg, teacher_cfg)


@LOSSES.register(AttentionLoss)
def _attention(cfg, student_cfg, teacher_cfg, causal: bool) -> Term:
    return AttentionTerm(cfg, student_cfg, teacher_cfg)


def build_terms(configs, student_cfg, teacher_cfg, causal: bool) -> list[Term]:
    return [LOSSES.get(c)(c, student_cfg, teacher_cfg, causal) for c in configs]


def combined(terms: list[Term]) -> Callable:
    def total(s_out, t_out, batch):
        loss, logs = None, {}
        for term in terms:
            value, parts = term(s_out, t_out, batch)
            loss = term.weight * value if loss is None else loss + term.weight * value
            logs.update(parts)
        return loss, logs

    return total
