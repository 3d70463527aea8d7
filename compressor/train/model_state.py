"""Extra state a compression technique keeps on a PyTorch model, beside what ``save_pretrained`` writes.

QAT's fake-quant layers carry observer ranges that are not weights; a run that is resumed after such a stage must put
them back on the model it reloads, and the fp32 ``export`` stage must see the model without them. A technique
registers one provider by the type of the config that puts the state on the model
(``@MODEL_STATES.register(QATConfig)``, see compressor/quantize/qat_callback.py); the pipeline and the export stage
call the three functions below and know nothing of what the state is.

A provider has:

- ``save(model, folder)``: write its state into a stage snapshot ``folder`` when ``model`` carries it;
- ``restore(model, folder, cfg)``: put it back on a model just loaded from ``folder``; ``cfg`` is the config that
  made it (the pipeline finds it through the stage contracts: the fact a stage ``produces`` at that config, not yet
  ``removes``-d by a later stage);
- ``plain(model)``: a context manager under which ``model`` computes as if it carried no such state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from compressor.core.registry import Registry

# config type -> provider (an object or class with save / restore / plain)
MODEL_STATES: Registry = Registry("model state")


def save_model_state(model, folder: Path) -> None:
    """Every registered provider's state of ``model`` into the snapshot ``folder``."""
    for _, provider in MODEL_STATES.items():
        provider.save(model, folder)


def restore_model_state(model, folder: Path, configs: list) -> None:
    """Put back the state the configs in ``configs`` (those still in effect at the snapshot) left on the model."""
    for cfg in configs:
        if type(cfg) in MODEL_STATES:
            MODEL_STATES.get(cfg).restore(model, folder, cfg)


@contextlib.contextmanager
def plain_model(model) -> Iterator[None]:
    """``model`` without any registered extra state inside (fake quantization off: the fp32 model is exported)."""
    with contextlib.ExitStack() as stack:
        for _, provider in MODEL_STATES.items():
            stack.enter_context(provider.plain(model))
        yield
