"""One training loop on accelerate: AdamW, linear warm-up/decay, accumulation, clipping,
periodic evaluation with the best checkpoint kept, optional early stopping, callbacks.

Stages supply ``loss_fn(model, batch) -> (loss, logs)``. Callbacks (gradual pruning, QAT) may define
any of the hooks of :class:`Callback`; the loop calls those that exist. Checkpoints are written by
compressor/train/checkpoint.py, signals handled by compressor/train/signals.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.recipe.schema import TrainConfig
from compressor.train.checkpoint import TRAINER_STATE, load_trainer_state, save_trainer_state
from compressor.train.signals import Interrupted, Signals, world_size
from compressor.train.state import Callback, TrainState, _hook, _progress, pick_mixed_precision

__all__ = ["TRAINER_STATE", "Callback", "Interrupted", "TrainState", "Trainer", "pick_mixed_precision", "train"]

log = logging.getLogger("compressor")


def train(
    model,
    train_loader,
    cfg: TrainConfig,
    loss_fn: Callable[[Any, dict], tuple[Any, dict]],
    *,
    name: str,
    device: str = "cpu",
    eval_fn: Callable[[Any], dict] | None = None,
    metric: tuple[str, bool] = ("accuracy", True),
    callbacks: list[Callback] = (),
    extra_modules: list = (),
    seed: int = 42,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> TrainState:
    """Train ``model`` in place; on return it holds the best evaluated weights.

    ``extra_modules`` (e.g. distillation projections) are trained and checkpointed but are not
    part of the model. With ``checkpoint_dir`` the full training state (weights, optimizer,
    scheduler, RNG states, step, history, best weights) is saved every ``cfg.checkpoint_every``
    steps (default: at every evaluation), at the end, and on Ctrl-C / SIGTERM; ``resume``
    continues from it.
    """
    trainer = Trainer(
        model,
        train_loader,
        cfg,
        loss_fn,
        name=name,
        device=device,
        eval_fn=eval_fn,
        metric=metric,
        callbacks=list(callbacks),
        extra_modules=list(extra_modules),
        seed=seed,
        checkpoint_dir=checkpoint_dir,
    )
    if resume and checkpoint_dir is not None:
        trainer.resume()
    return trainer.run()


class Trainer:
    """The loop's state between steps: accelerate objects, position in the data, best weights, pending evaluation."""

    def __init__(
        self,
        model,
        train_loader,
        cfg: TrainConfig,
        loss_fn,
        *,
        name: str,
        device: str,
        eval_fn,
        metric,
        callbacks: list,
        extra_modules: list,
        seed: int,
        checkpoint_dir: Path | None,
    ):
        self.cfg, self.loss_fn, self.name, self.eval_fn = cfg, loss_fn, name, eval_fn
        self.metric_name, self.higher = metric
        self.callbacks, self.checkpoint_dir = callbacks, checkpoint_dir
        self._prepare(model, train_loader, device, extra_modules, seed)
        self.eval_every = cfg.eval_every or self.steps_per_epoch
        self.ckpt_every = cfg.checkpoint_every or self.eval_every
        self.state = TrainState(total_steps=self.total, model=self.model, optimizer=self.optimizer)
        self.best_state: dict | None = None
        self.batches_seen = 0  # batches consumed up to the last completed optimizer step
        self.eval_pending = False  # the evaluation due at state.step has not run (or was interrupted)
        self.running, self.n_running = 0.0, 0  # training loss summed since the last logged record
        self.since_line = [0.0, 0]  # loss sum and micro-batches since the last progress line: each line shows its own mean
        self.at_boundary = True  # the model, optimizer, RNGs and data position are those after a whole optimizer step
        self.t0 = time.perf_counter()

    def _prepare(self, model, train_loader, device: str, extra_modules: list, seed: int) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed
        from transformers import get_linear_schedule_with_warmup

        cfg = self.cfg
        set_seed(seed)
        self.accel = accel = Accelerator(
            cpu=device == "cpu",
            mixed_precision=pick_mixed_precision(cfg.mixed_precision, device),
            gradient_accumulation_steps=cfg.grad_accum,
            # split_batches: batch_size is the global batch, whatever the number of processes
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, split_batches=world_size() > 1),
        )
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "LayerNorm" in n or "layernorm" in n.lower() else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        extra_params = [p for m in extra_modules for p in m.parameters()]
        if extra_params:
            groups.append({"params": extra_params, "weight_decay": cfg.weight_decay})
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.batches_per_epoch = len(train_loader)
        self.steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / cfg.grad_accum))
        self.total = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * self.total), self.total)
        self.model, self.optimizer, self.loader, self.scheduler = accel.prepare(model, optimizer, train_loader, scheduler)
        for m in extra_modules:
            accel.register_for_checkpointing(m)
        for cb in self.callbacks:
            if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
                accel.register_for_checkpointing(cb)

    # ------------------------------------------------------------ checkpoints
    def save(self) -> None:
        if self.checkpoint_dir is None:
            return
        s = self.state
        meta = {
            "step": s.step,
            "batches_seen": self.batches_seen,
            "total_steps": self.total,
            "best_metric": s.best_metric,
            "best_step": s.best_step,
            "bad_evals": s.bad_evals,
            "history": s.history,
            "seconds": s.seconds_before + time.perf_counter() - self.t0,
            # the evaluation due at this step did not finish (a signal came during it): resume runs it first
            "eval_pending": self.eval_pending,
            "running_loss": [self.running, self.n_running],
        }
        save_trainer_state(self.accel, self.checkpoint_dir, f"the {self.name} checkpoint at step {s.step}", meta, self.best_state)

    def resume(self) -> None:
        loaded = load_trainer_state(self.accel, self.checkpoint_dir)
        if loaded is None:
            return
        meta, self.best_state = loaded
        s = self.state
        s.step, self.batches_seen = meta["step"], meta["batches_seen"]
        s.best_metric, s.best_step, s.bad_evals = meta["best_metric"], meta["best_step"], meta["bad_evals"]
        s.history = meta["history"]
        s.seconds_before = float(meta.get("seconds", 0.0))
        s.epoch = s.step / self.steps_per_epoch
        self.eval_pending = bool(meta.get("eval_pending", False))
        self.running, self.n_running = meta.get("running_loss", [0.0, 0])
        log.info("%s: resumed from %s at step %d/%d", self.name, self.checkpoint_dir, s.step, self.total)

    def _due(self, every: int) -> bool:
        return self.state.step % every == 0 or self.state.step == self.total

    # ------------------------------------------------------------ evaluation
    def evaluate(self) -> bool:
        """Evaluate; keep the best weights; return True when early stopping says stop."""
        if self.eval_fn is None:
            return False
        s = self.state
        self.eval_pending = True
        with self.signals.abortable():  # a signal aborts an evaluation at once; it is redone on resume
            metrics = self.eval_fn(self.accel.unwrap_model(self.model))
        self.eval_pending = False
        value = metrics[self.metric_name]
        eligible = all(_hook(self.callbacks, "ready", s))
        better = eligible and (s.best_metric is None or (value > s.best_metric if self.higher else value < s.best_metric))
        s.history.append({"step": s.step, "epoch": round(s.epoch, 3), "eval": metrics})
        log.info(
            "%s step %d/%d: dev %s %.4f%s",
            self.name,
            s.step,
            self.total,
            self.metric_name,
            value,
            " (best)" if better else ("" if eligible else " (not yet eligible as best: compression still under way)"),
        )
        if not eligible:
            return False
        if better:
            s.best_metric, s.best_step, s.bad_evals = value, s.step, 0
            self.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.accel.unwrap_model(self.model).state_dict().items()
            }
        else:
            s.bad_evals += 1
        return self.cfg.early_stopping is not None and s.bad_evals >= self.cfg.early_stopping

    # ------------------------------------------------------------ the loop
    def run(self) -> TrainState:
        self.t0 = time.perf_counter()
        self.start_step = self.state.step
        self.model.train()
        stop = False
        self.signals = Signals(self.accel)
        _hook(self.callbacks, "on_train_begin", self.state)
        try:
            with _progress(self.accel.is_main_process) as progress:
                self.progress = progress
                self.task = progress.add_task(self.name, total=self.total, completed=self.state.step, info="")
                if self.eval_pending:  # interrupted during the evaluation at this step: run it, as the uninterrupted run did
                    stop = self.evaluate()
                    if self._due(self.ckpt_every) or stop:
                        self.save()
                while self.state.step < self.total and not stop:
                    stop = self._epoch()
        except KeyboardInterrupt:
            self._interrupted()
        finally:
            self.signals.restore()
        return self._finish(stop)

    def _epoch(self) -> bool:
        """The rest of the current epoch (from ``batches_seen``); True when training should stop."""
        epoch, skip = divmod(self.batches_seen, self.batches_per_epoch)
        self.loader.set_epoch(epoch)  # the shuffle order depends on (seed, epoch) only
        consumed = self.batches_seen
        for batch in self.accel.skip_first_batches(self.loader, skip) if skip else self.loader:
            if consumed == self.batches_seen:  # a step boundary: stop here if a signal asked to
                self.signals.check()
                self.at_boundary = False
            logs = self._micro_step(batch)
            consumed += 1
            if not self.accel.sync_gradients:
                continue
            self.batches_seen = consumed
            stop = self._after_step(logs)
            if stop or self.state.step >= self.total:
                return stop
        self.batches_seen = (epoch + 1) * self.batches_per_epoch  # a partial accumulation window is dropped
        return False

    def _micro_step(self, batch) -> dict:
        accel, cfg = self.accel, self.cfg
        with accel.accumulate(self.model):
            loss, logs = self.loss_fn(self.model, batch)
            accel.backward(loss)
            if accel.sync_gradients and cfg.max_grad_norm:
                accel.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            if accel.sync_gradients:
                _hook(self.callbacks, "on_gradients", self.state)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        self.running += value
        self.n_running += 1
        self.since_line[0] += value
        self.since_line[1] += 1
        return logs

    def _after_step(self, logs: dict) -> bool:
        """After an optimizer step: callbacks, logging, evaluation, checkpoint. True when early stopping says stop."""
        s, progress = self.state, self.progress
        s.step += 1
        s.epoch = s.step / self.steps_per_epoch
        _hook(self.callbacks, "on_step", s)
        self.at_boundary = True
        self.eval_pending = self.eval_fn is not None and self._due(self.eval_every)
        if self._due(max(1, min(50, self.eval_every))):
            rec = {
                "step": s.step,
                "loss": self.running / max(self.n_running, 1),
                "lr": self.scheduler.get_last_lr()[0],
                **{k: float(v) for k, v in logs.items()},
            }
            for extra in _hook(self.callbacks, "logs"):
                rec.update(extra)
            s.history.append(rec)
            self.running, self.n_running = 0.0, 0
            progress.update(self.task, info=f"loss {rec['loss']:.4f}")
        progress.update(self.task, advance=1)
        if progress.disable and self.accel.is_main_process:  # no terminal (nohup, CI): a log line every 10 %
            if _log_progress(self.name, s, self.total, self.t0, self.start_step, self.since_line):
                self.since_line = [0.0, 0]
        self.signals.check()  # before the evaluation: a signal now leaves it pending, redone on resume
        stop = False
        if self._due(self.eval_every):
            stop = self.evaluate()
            if s.best_metric is not None:
                progress.update(self.task, info=f"best {self.metric_name} {s.best_metric:.4f}")
        if self._due(self.ckpt_every) or stop:
            self.save()
        return stop

    def _interrupted(self) -> None:
        step, total, where = self.state.step, self.total, self.checkpoint_dir
        if where is None:
            raise  # the KeyboardInterrupt being handled (called from run's except clause)
        if not self.at_boundary:  # a second signal in the middle of a step: the last consistent checkpoint stays
            raise Interrupted(
                f"{self.name} interrupted inside step {step + 1}/{total}; resuming continues from the last checkpoint in {where}"
            ) from None
        self.signals.restore()
        self.save()
        raise Interrupted(f"{self.name} interrupted at step {step}/{total}; checkpoint saved in {where}") from None

    def _finish(self, stop: bool) -> TrainState:
        s, name = self.state, self.name
        if stop:
            log.info("%s: early stop at step %d (no improvement in %d evaluations)", name, s.step, self.cfg.early_stopping)
        unwrapped = self.accel.unwrap_model(self.model)
        if self.best_state is not None:
            unwrapped.load_state_dict(self.best_state)
            log.info("%s: kept the best checkpoint (step %d, dev %s %.4f)", name, s.best_step, self.metric_name, s.best_metric)
        unwrapped.eval()
        s.model = unwrapped
        _hook(self.callbacks, "on_train_end", s)
        log.info("%s: %d steps in %.1fs", name, s.step, time.perf_counter() - self.t0)
        self.accel.free_memory()
        return s


def _log_progress(name: str, state: TrainState, total: int, t0: float, start_step: int, since_line: list) -> bool:
    """Every 10 % of the steps: where training is, the mean loss since the previous line, speed and time left (when
    no progress bar shows). Returns True when it wrote a line."""
    if state.step % max(1, total // 10) and state.step != total:
        return False
    per = (time.perf_counter() - t0) / max(state.step - start_step, 1)
    loss = since_line[0] / since_line[1] if since_line[1] else None
    log.info(
        "%s: step %d/%d (%d %%)%s, %.2f s/step, about %d min left",
        name,
        state.step,
        total,
        100 * state.step // total,
        f", loss {loss:.4f}" if loss is not None else "",
        per,
        round(per * (total - state.step) / 60),
    )
    return True
