"""The ``distill`` stage: teacher → student on the shared training loop."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from compressor.core.errors import CompressorError, ModelError
from compressor.core.registry import STAGES
from compressor.distill.losses import build_terms, combined
from compressor.distill.student import build_student
from compressor.models import count_parameters, resolve, set_eager_attention
from compressor.pipeline.context import RunContext
from compressor.recipe.schema import DistillStage
from compressor.train.callbacks import summaries, training_callbacks
from compressor.train.finetune import dev_eval_fn, selection_eval_fn, summarize
from compressor.train.loop import train

log = logging.getLogger("compressor")


def load_teacher(ctx: RunContext, cfg: DistillStage):
    if cfg.teacher is None:
        return ctx.model
    return ctx.load_model(resolve(cfg.teacher, ctx.recipe_dir, f"{ctx.stage_path}.teacher", must_exist=False))


def check_vocab(teacher, student) -> None:
    vt, vs = teacher.config.vocab_size, student.config.vocab_size
    if vt != vs:
        raise ModelError(
            f"teacher and student vocabularies differ ({vt} vs {vs} tokens): token-level distillation needs the same tokenizer"
        )


INDEX = "_index"


class Indexed(torch.utils.data.Dataset):
    """A tokenized split whose items carry their position, to look up cached teacher logits."""

    def __init__(self, encoded):
        self.encoded, self.features, self.labels = encoded, encoded.features, encoded.labels

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> dict:
        return {**self.encoded[i], INDEX: i}


def teacher_logits_cache(ctx: RunContext, teacher, batch_size: int, train_set) -> torch.Tensor:
    """Teacher logits for every training example, computed once and kept beside the stage checkpoint."""
    import numpy as np

    from compressor.data import make_loader

    path = ctx.stage_dir.parent / "teacher_logits.npy" if ctx.stage_dir else None
    n = len(train_set)
    if path is not None and path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == n:
            log.info("teacher logits: reusing %s", path)
            return torch.from_numpy(cached)
    out = None
    loader = make_loader(Indexed(train_set), ctx.tokenizer, batch_size, shuffle=False, task=ctx.task)
    with torch.no_grad():
        for batch in loader:
            idx = batch.pop(INDEX)
            batch.pop("labels", None)
            logits = teacher(**{k: v.to(ctx.device) for k, v in batch.items()}).logits.float().cpu()
            if out is None:
                out = torch.empty(n, logits.shape[-1])
            out[idx] = logits
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".teacher_logits.tmp.npy")
        np.save(tmp, out.numpy())
        tmp.replace(path)
    log.info("teacher logits: cached for %d training examples", n)
    return out


def make_loss_fn(teacher, terms, device: str, cached_logits: torch.Tensor | None = None):
    need_hidden = any(t.needs_hidden for t in terms)
    need_attn = any(t.needs_attentions for t in terms)
    need_teacher = any(t.needs_teacher for t in terms)
    total = combined(terms)

    def loss_fn(model, batch):
        index = batch.pop(INDEX, None)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        flags = {"output_hidden_states": need_hidden, "output_attentions": need_attn}
        if not need_teacher:
            t_out = None
        elif cached_logits is not None and index is not None:
            t_out = SimpleNamespace(logits=cached_logits[index.cpu()].to(inputs["input_ids"].device))
        else:
            with torch.no_grad():
                t_out = teacher(**inputs, **flags)
        s_out = model(**inputs, **flags)
        return total(s_out, t_out, batch)

    return loss_fn


def with_transfer(ctx: RunContext, cfg: DistillStage, train_set):
    """The training split followed by the transfer texts (no labels: only the teacher supervises them)."""
    from compressor import data as D
    from compressor.core.errors import DataError

    field = f"{ctx.stage_path}.transfer"
    if ctx.task != "sequence-classification":
        raise ctx.recipe.error(field, "a transfer set is for classifiers (a causal LM's extra text is just more data.train)")
    try:
        split = D.load_transfer(cfg.transfer, ctx.recipe_dir, D.known_texts(ctx.dataset), ctx.seed, field)
    except DataError as e:
        raise ctx.recipe.error(f"{field}.path", str(e)) from None
    extra = D.encode_split(split, ctx.tokenizer, ctx.recipe.data.max_length)
    log.info("distill: %d labelled + %d transfer examples", len(train_set), len(extra))
    return D.concat(train_set, extra)


def _student_and_terms(ctx: RunContext, cfg: DistillStage, teacher) -> tuple:
    """The student (built, loaded or the current model) and the loss terms; the teacher frozen on the device."""
    where = f"{ctx.stage_path}.student"

    def load_student():
        return ctx.load_model(resolve(cfg.student.path, ctx.recipe_dir, f"{where}.path", must_exist=False))

    try:
        student = ctx.model if cfg.student.current else build_student(teacher, cfg.student, load_student)
    except ValueError as e:
        field = f"{where}.layers" if cfg.student.layers is not None else where
        raise ctx.recipe.error(field, str(e)) from None
    check_vocab(teacher, student)
    try:
        terms = build_terms(cfg.losses, student.config, teacher.config, ctx.task == "causal-lm")
    except ValueError as e:
        raise ctx.recipe.error(f"{ctx.stage_path}.losses", str(e)) from None
    if any(t.needs_attentions for t in terms):
        set_eager_attention(teacher)
        set_eager_attention(student)
    teacher.to(ctx.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, terms


def _teacher_metrics(ctx: RunContext, cfg: DistillStage, teacher) -> dict:
    """The teacher's figure for the report, on the split every artifact is scored on (dev / test)."""
    split = ctx.eval_split()
    report_fn = dev_eval_fn(ctx, cfg.eval_batch_size)
    teacher_metrics = report_fn(teacher) if report_fn else {}
    name, _ = ctx.primary_metric
    if teacher_metrics:
        from compressor.core.health import reference_warning

        log.info("teacher: %d parameters, %s %s %.4f", count_parameters(teacher), split, name, teacher_metrics[name])
        if caveat := reference_warning(teacher_metrics, "the teacher", ctx.label_names):
            log.warning("distill: %s", caveat.replace("**Warning**: ", ""))
    return teacher_metrics


@STAGES.register(DistillStage)
def run_distill(ctx: RunContext, cfg: DistillStage) -> dict:
    teacher = load_teacher(ctx, cfg)
    student, terms = _student_and_terms(ctx, cfg, teacher)
    eval_fn = selection_eval_fn(ctx, cfg.eval_batch_size)  # chooses the student's checkpoint
    split = ctx.eval_split()
    teacher_metrics = _teacher_metrics(ctx, cfg, teacher)
    log.info(
        "student: %d parameters, %d layers, losses %s",
        count_parameters(student),
        student.config.num_hidden_layers,
        ", ".join(c.type for c in cfg.losses),
    )
    for t in terms:
        t.to(ctx.device)
    cached = None
    train_set = ctx.encoded["train"]
    if cfg.transfer is not None:
        train_set = with_transfer(ctx, cfg, train_set)
    if cfg.cache_teacher_logits:
        if ctx.task != "sequence-classification" or any(t.needs_hidden or t.needs_attentions for t in terms):
            raise ctx.recipe.error(
                f"{ctx.stage_path}.cache_teacher_logits",
                "caching works for classifiers with logit losses only (hidden / attention "
                "transfer need the teacher's forward pass)",
            )
        cached = teacher_logits_cache(ctx, teacher, cfg.eval_batch_size, train_set)
        train_set = Indexed(train_set)
    from compressor.data import make_loader

    loader = make_loader(train_set, ctx.tokenizer, cfg.batch_size, shuffle=True, seed=ctx.seed, task=ctx.task)
    callbacks = training_callbacks(ctx, cfg, student, ctx.stage_path)
    state = train(
        student,
        loader,
        cfg,
        make_loss_fn(teacher, terms, ctx.device, cached),
        name="distill",
        device=ctx.device,
        eval_fn=eval_fn,
        metric=ctx.primary_metric,
        callbacks=callbacks,
        extra_modules=[t for t in terms if any(True for _ in t.parameters())],
        seed=ctx.seed,
        checkpoint_dir=ctx.stage_dir,
        resume=ctx.resuming,
    )
    if not state.history:
        raise CompressorError("distill: no training step ran")
    teacher.to("cpu")
    if ctx.baseline is None:  # the uncompressed reference of the report: what the student replaces
        ctx.baseline, ctx.baseline_tokenizer, ctx.baseline_source = (
            teacher,
            ctx.tokenizer,
            f"distillation teacher ({cfg.teacher or 'the model before this stage'})",
        )
    ctx.model = state.model  # the projections stay behind: they are not part of the student
    return {
        **summarize(state, ctx),
        "teacher": {
            "params": count_parameters(teacher),
            "layers": teacher.config.num_hidden_layers,
            "metrics": {split: teacher_metrics} if split else {},
        },
        "student": {
            "params": count_parameters(ctx.model),
            "layers": ctx.model.config.num_hidden_layers,
            "hidden_size": getattr(ctx.model.config, "hidden_size", None),
            "built_from": cfg.student.model_dump(exclude_defaults=True),
        },
        "losses": [c.model_dump() for c in cfg.losses],
        **summaries(callbacks),
    }
