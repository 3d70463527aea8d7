"""QAT during training: the loop callback (calibrate, fake-quantize, freeze the ranges) and the observer ranges a
model keeps beside a stage snapshot. Both are registered here by config type (``QATConfig``); the training loop, the
training stages, the export stage and the pipeline know neither."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from compressor.core.errors import CompressorError
from compressor.quantize.fakequant import (
    fake_quant_disabled,
    is_qat,
    load_qat_state,
    prepare_qat,
    qat_state,
    range_summary,
    set_flags,
    wrappers,
)
from compressor.recipe.schema import QATConfig
from compressor.train.callbacks import TRAINING_CALLBACKS
from compressor.train.model_state import MODEL_STATES

log = logging.getLogger("compressor")
QAT_STATE = "qat_state.safetensors"  # observer ranges and flags, beside a snapshot's weights


class QATCallback:
    """Training-loop hooks: calibrate the observers, fake-quantize, freeze the ranges late in training.

    Only evaluations after the freeze may become the kept "best" checkpoint (``ready``): the ranges are
    not part of the weights, so an earlier checkpoint would be paired with ranges it was not trained with.
    """

    name = "qat"

    def __init__(self, model, cfg: QATConfig, calibration_batches: Iterable[dict], device: str = "cpu"):
        self.model, self.cfg, self.device = model, cfg, device
        self.batches = list(itertools.islice(calibration_batches, cfg.calibration_batches))
        self.layers = prepare_qat(model, cfg)
        self.frozen, self.frozen_at, self.calibrated_on = False, None, 0

    def calibrate(self) -> None:
        """Observe the calibration batches (forward only, fake quant off) from fresh ranges."""
        if not self.batches:
            raise CompressorError("qat: no calibration batches (the training split is empty?)")
        layers = [m for _, m in wrappers(self.model)]
        device = next(self.model.parameters(), torch.empty(0, device=self.device)).device
        was_training = self.model.training
        self.model.eval()
        for m in layers:
            m.observed, m.fake_quant, m.observing, m.calibrating = False, False, True, True
        try:
            with torch.no_grad():
                for batch in self.batches:
                    self.model(**{k: torch.as_tensor(v).to(device) for k, v in batch.items() if k != "labels"})
        finally:
            for m in layers:
                m.calibrating = False
            self.model.train(was_training)
        self.calibrated_on = len(self.batches)
        log.info("qat: observed %d calibration batches; fake quantization on", len(self.batches))

    def on_train_begin(self, state) -> None:
        if state.step == 0:
            self.calibrate()
        set_flags(self.model, fake_quant=True, observing=not self.frozen)

    def on_step(self, state) -> None:
        if not self.frozen and state.step >= self.cfg.freeze_after * state.total_steps:
            self.frozen, self.frozen_at = True, state.step
            set_flags(self.model, observing=False)
            log.info("qat: activation ranges frozen at step %d/%d", state.step, state.total_steps)

    def ready(self, state) -> bool:
        return self.frozen

    def on_train_end(self, state) -> None:
        set_flags(self.model, observing=False)  # ranges stay as trained, whatever runs in training mode later

    def logs(self) -> dict:
        return {"qat_frozen": int(self.frozen)}

    def summary(self) -> dict:
        return {
            "layers": len(self.layers),
            "observer": self.cfg.observer,
            "calibration_batches": self.calibrated_on,
            "frozen_at_step": self.frozen_at,
            "ranges": range_summary(self.model),
        }

    def state_dict(self) -> dict:
        return {
            "frozen": self.frozen,
            "frozen_at": self.frozen_at,
            "calibrated_on": self.calibrated_on,
            "model": qat_state(self.model),
        }

    def load_state_dict(self, d: dict) -> None:
        load_qat_state(self.model, d["model"])
        self.frozen, self.frozen_at, self.calibrated_on = bool(d["frozen"]), d["frozen_at"], int(d["calibrated_on"])


@TRAINING_CALLBACKS.register(QATConfig)
def qat_callback(ctx, train_cfg, cfg: QATConfig, model, where: str) -> QATCallback:
    """``qat:`` inside a training stage: calibration batches from the training split, then the callback."""
    batches = []
    for batch in ctx.loader("train", train_cfg.batch_size, shuffle=True):
        if len(batches) >= cfg.calibration_batches:
            break
        batches.append(batch)
    try:
        return QATCallback(model, cfg, batches, ctx.device)
    except CompressorError as e:
        raise ctx.recipe.error(f"{where}.include", str(e)) from None


@MODEL_STATES.register(QATConfig)
class QATModelState:
    """A model trained with ``qat:`` keeps its fake-quant layers and observer ranges across a resume (the ranges go
    into the snapshot as ``qat_state.safetensors``), and exports as its fp32 self in the ``export`` stage."""

    @staticmethod
    def save(model, folder: Path) -> None:
        if is_qat(model):
            from safetensors.torch import save_file

            save_file(qat_state(model), str(folder / QAT_STATE))

    @staticmethod
    def restore(model, folder: Path, cfg: QATConfig) -> None:
        if (folder / QAT_STATE).is_file():
            from safetensors.torch import load_file

            prepare_qat(model, cfg)
            load_qat_state(model, load_file(str(folder / QAT_STATE)))

    @staticmethod
    @contextlib.contextmanager
    def plain(model) -> Iterator[None]:
        with fake_quant_disabled(model):
            yield
