"""One training loop on accelerate: AdamW, linear warm-up/decay, accumulation, clipping,
periodic evaluation with the best checkpoint kept, optional early stopping, callbacks.

Stages supply ``loss_fn(model, batch) -> (loss, logs)``. Callbacks (gradual pruning, QAT) may define
any of the hooks of :class:`Callback`; the loop calls those that exist.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from compressor.core.errors import CompressorError
from compressor.core.rundir import atomic_write_json, recover_dir, removed_on_error, replace_dir
from compressor.core.writeerrors import writing
from compressor.recipe.schema import TrainConfig

TRAINER_STATE = "trainer_state.json"

log = logging.getLogger("compressor")


class Callback(Protocol):
    """Hooks the loop calls when a callback defines them (all optional).

    - ``on_train_begin(state)``: before the first step (``state.step`` > 0 when resuming);
    - ``on_gradients(state)``: after backward and clipping, before the optimizer step (full gradients);
    - ``on_step(state)``: after every optimizer step (e.g. re-apply pruning masks);
    - ``logs() -> dict``: numbers merged into the logged training record (e.g. current sparsity);
    - ``ready(state) -> bool``: whether an evaluation now may become the kept "best" checkpoint
      (a pruned model is only eligible once it has reached its final sparsity);
    - ``on_train_end(state)``: after the best weights are loaded back;
    - ``state_dict()`` / ``load_state_dict(d)``: saved with resumable checkpoints.
    """

    def on_step(self, state: TrainState) -> None: ...


def _hook(callbacks, name: str, *args) -> list:
    return [getattr(cb, name)(*args) for cb in callbacks if hasattr(cb, name)]


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)  # one record per logged step / eval
    seconds_before: float = 0.0  # training time spent by the interrupted process(es) this run resumed from
    model: Any = None
    optimizer: Any = None


def pick_mixed_precision(setting: str, device: str) -> str:
    if device != "cuda" or setting == "no":
        return "no"
    if setting != "auto":
        return setting
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _progress(enabled: bool = True):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    disable=not (enabled and console.is_terminal), transient=False)


class Interrupted(CompressorError):
    """Ctrl-C or SIGTERM during training: a checkpoint was saved, the run can be resumed."""

    exit_code = 130


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
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from transformers import get_linear_schedule_with_warmup

    set_seed(seed)
    accel = Accelerator(cpu=device == "cpu", mixed_precision=pick_mixed_precision(cfg.mixed_precision, device),
                        gradient_accumulation_steps=cfg.grad_accum,
                        # split_batches: batch_size is the global batch, whatever the number of processes
                        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                  split_batches=_world_size() > 1))
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in n or "layernorm" in n.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra_params = [p for m in extra_modules for p in m.parameters()]
    if extra_params:
        groups.append({"params": extra_params, "weight_decay": cfg.weight_decay})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    batches_per_epoch = len(train_loader)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.grad_accum))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accel.prepare(model, optimizer, train_loader, scheduler)
    for m in extra_modules:
        accel.register_for_checkpointing(m)
    for cb in callbacks:
        if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
            accel.register_for_checkpointing(cb)
    eval_every = cfg.eval_every or steps_per_epoch
    ckpt_every = cfg.checkpoint_every or eval_every
    state = TrainState(total_steps=total, model=model, optimizer=optimizer)
    metric_name, higher = metric
    best_state: dict | None = None
    batches_seen = 0  # batches consumed up to the last completed optimizer step
    eval_pending = False  # the evaluation due at state.step has not run (or was interrupted)
    running, n_running = 0.0, 0  # training loss summed since the last logged record

    def save_checkpoint() -> None:
        """Every process writes its part (RNG states) into one temporary dir; the main process swaps it in."""
        if checkpoint_dir is None:
            return
        tmp = checkpoint_dir.with_name(f".{checkpoint_dir.name}.tmp")
        with writing(f"the {name} checkpoint at step {state.step}", checkpoint_dir), \
                (removed_on_error(tmp) if accel.is_main_process else nullcontext()):
            if accel.is_main_process:
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir(parents=True)
            accel.wait_for_everyone()
            accel.save_state(str(tmp))
            accel.wait_for_everyone()
            if accel.is_main_process:
                if best_state is not None:
                    torch.save(best_state, tmp / "best_weights.pt")
                meta = {"step": state.step, "batches_seen": batches_seen, "total_steps": total,
                        "best_metric": state.best_metric, "best_step": state.best_step, "bad_evals": state.bad_evals,
                        "history": state.history, "seconds": state.seconds_before + time.perf_counter() - t0,
                        # the evaluation due at this step did not finish (a signal came during it): resume runs it first
                        "eval_pending": eval_pending, "running_loss": [running, n_running]}
                atomic_write_json(tmp / TRAINER_STATE, meta)
                replace_dir(tmp, checkpoint_dir)
        accel.wait_for_everyone()

    if resume and checkpoint_dir is not None:
        recover_dir(checkpoint_dir)  # killed between the two renames of a checkpoint swap
    if resume and checkpoint_dir is not None and (checkpoint_dir / TRAINER_STATE).is_file():
        meta = json.loads((checkpoint_dir / TRAINER_STATE).read_text())
        accel.load_state(str(checkpoint_dir))
        state.step, batches_seen = meta["step"], meta["batches_seen"]
        state.best_metric, state.best_step, state.bad_evals = meta["best_metric"], meta["best_step"], meta["bad_evals"]
        state.history = meta["history"]
        state.seconds_before = float(meta.get("seconds", 0.0))
        state.epoch = state.step / steps_per_epoch
        eval_pending = bool(meta.get("eval_pending", False))
        running, n_running = meta.get("running_loss", [0.0, 0])
        if (checkpoint_dir / "best_weights.pt").is_file():
            best_state = torch.load(checkpoint_dir / "best_weights.pt", map_location="cpu", weights_only=True)
        log.info("%s: resumed from %s at step %d/%d", name, checkpoint_dir, state.step, total)

    def evaluate_now() -> bool:
        """Evaluate; keep the best weights; return True when early stopping says stop."""
        nonlocal best_state, eval_pending
        if eval_fn is None:
            return False
        eval_pending = True
        with signals.abortable():  # a signal aborts an evaluation at once; it is redone on resume
            metrics = eval_fn(accel.unwrap_model(model))
        eval_pending = False
        value = metrics[metric_name]
        eligible = all(_hook(callbacks, "ready", state))
        better = eligible and (state.best_metric is None or (value > state.best_metric if higher else value < state.best_metric))
        rec = {"step": state.step, "epoch": round(state.epoch, 3), "eval": metrics}
        state.history.append(rec)
        log.info("%s step %d/%d: dev %s %.4f%s", name, state.step, total, metric_name, value,
                 " (best)" if better else ("" if eligible else " (not yet eligible as best: compression still under way)"))
        if not eligible:
            return False
        if better:
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in accel.unwrap_model(model).state_dict().items()}
        else:
            state.bad_evals += 1
        return cfg.early_stopping is not None and state.bad_evals >= cfg.early_stopping

    t0 = time.perf_counter()
    start_step = state.step
    since_line = [0.0, 0]  # loss sum and micro-batches since the last progress line: each line shows its own mean
    model.train()
    stop = False
    signals = _Signals(accel)
    at_boundary = True  # the model, optimizer, RNGs and data position are those after a whole optimizer step
    _hook(callbacks, "on_train_begin", state)
    try:
        with _progress(accel.is_main_process) as progress:
            task = progress.add_task(name, total=total, completed=state.step, info="")
            if eval_pending:  # interrupted during the evaluation at this step: run it, as the uninterrupted run did
                stop = evaluate_now()
                if state.step % ckpt_every == 0 or state.step == total or stop:
                    save_checkpoint()
            while state.step < total and not stop:
                epoch, skip = divmod(batches_seen, batches_per_epoch)
                loader.set_epoch(epoch)  # the shuffle order depends on (seed, epoch) only
                consumed = batches_seen
                for batch in (accel.skip_first_batches(loader, skip) if skip else loader):
                    if consumed == batches_seen:  # a step boundary: stop here if a signal asked to
                        signals.check()
                        at_boundary = False
                    with accel.accumulate(model):
                        loss, logs = loss_fn(model, batch)
                        accel.backward(loss)
                        if accel.sync_gradients and cfg.max_grad_norm:
                            accel.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                        if accel.sync_gradients:
                            _hook(callbacks, "on_gradients", state)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    consumed += 1
                    running += float(loss.detach())
                    n_running += 1
                    since_line[0] += float(loss.detach())
                    since_line[1] += 1
                    if not accel.sync_gradients:
                        continue
                    state.step += 1
                    batches_seen = consumed
                    state.epoch = state.step / steps_per_epoch
                    _hook(callbacks, "on_step", state)
                    at_boundary = True
                    eval_pending = eval_fn is not None and (state.step % eval_every == 0 or state.step == total)
                    if state.step % max(1, min(50, eval_every)) == 0 or state.step == total:
                        rec = {"step": state.step, "loss": running / max(n_running, 1), "lr": scheduler.get_last_lr()[0],
                               **{k: float(v) for k, v in logs.items()}}
                        for extra in _hook(callbacks, "logs"):
                            rec.update(extra)
                        state.history.append(rec)
                        running, n_running = 0.0, 0
                        progress.update(task, info=f"loss {rec['loss']:.4f}")
                    progress.update(task, advance=1)
                    if progress.disable and accel.is_main_process:  # no terminal (nohup, CI): a log line every 10 %
                        if _log_progress(name, state, total, t0, start_step, since_line):
                            since_line = [0.0, 0]
                    signals.check()  # before the evaluation: a signal now leaves it pending, redone on resume
                    if state.step % eval_every == 0 or state.step == total:
                        stop = evaluate_now()
                        if state.best_metric is not None:
                            progress.update(task, info=f"best {metric_name} {state.best_metric:.4f}")
                    if state.step % ckpt_every == 0 or state.step == total or stop:
                        save_checkpoint()
                    if stop or state.step >= total:
                        break
                else:
                    batches_seen = (epoch + 1) * batches_per_epoch  # a partial accumulation window is dropped
    except KeyboardInterrupt:
        if checkpoint_dir is None:
            raise
        if not at_boundary:  # a second signal in the middle of a step: the last consistent checkpoint stays
            raise Interrupted(f"{name} interrupted inside step {state.step + 1}/{total}; resuming continues from the last "
                              f"checkpoint in {checkpoint_dir}") from None
        signals.restore()
        save_checkpoint()
        raise Interrupted(f"{name} interrupted at step {state.step}/{total}; checkpoint saved in {checkpoint_dir}") from None
    finally:
        signals.restore()
    if stop:
        log.info("%s: early stop at step %d (no improvement in %d evaluations)", name, state.step, cfg.early_stopping)
    unwrapped = accel.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
        log.info("%s: kept the best checkpoint (step %d, dev %s %.4f)", name, state.best_step, metric_name, state.best_metric)
    unwrapped.eval()
    state.model = unwrapped
    _hook(callbacks, "on_train_end", state)
    log.info("%s: %d steps in %.1fs", name, state.step, time.perf_counter() - t0)
    accel.free_memory()
    return state


def _log_progress(name: str, state: TrainState, total: int, t0: float, start_step: int, since_line: list) -> bool:
    """Every 10 % of the steps: where training is, the mean loss since the previous line, speed and time left (when
    no progress bar shows). Returns True when it wrote a line."""
    if state.step % max(1, total // 10) and state.step != total:
        return False
    per = (time.perf_counter() - t0) / max(state.step - start_step, 1)
    loss = since_line[0] / since_line[1] if since_line[1] else None
    log.info("%s: step %d/%d (%d %%)%s, %.2f s/step, about %d min left", name, state.step, total, 100 * state.step // total,
             f", loss {loss:.4f}" if loss is not None else "", per, round(per * (total - state.step) / 60))
    return True


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


class _Signals:
    """SIGINT / SIGTERM during training stop it at the next step boundary, where the weights, optimizer, RNG states and
    data position agree, so a resumed run continues exactly as an uninterrupted one. A signal during an evaluation
    aborts it at once (it is redone on resume); a second signal stops at once, keeping the last checkpoint."""

    def __init__(self, accel):
        import signal
        import threading

        self.accel, self.requested, self.in_eval, self.previous = accel, False, False, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.requested or self.in_eval:
            raise KeyboardInterrupt
        self.requested = True
        log.info("signal %d: stopping at the end of this training step (again to stop at once)", signum)

    def check(self) -> None:
        """At a step boundary: raise KeyboardInterrupt when a signal came (in any process, under accelerate launch)."""
        stop = self.requested
        if _world_size() > 1:
            import torch

            flag = torch.tensor([int(stop)], device=self.accel.device)
            stop = bool(self.accel.reduce(flag, reduction="sum").item())
        if stop:
            raise KeyboardInterrupt

    @contextmanager
    def abortable(self):
        self.in_eval = True
        try:
            if self.requested:
                raise KeyboardInterrupt
            yield
        finally:
            self.in_eval = False

    def restore(self) -> None:
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
