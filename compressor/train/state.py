"""What the training loop shares with its callbacks and checkpoints: the :class:`Callback` hooks, the
:class:`TrainState` they see, and the loop's small setup helpers (mixed precision, the progress bar)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=False,
    )
