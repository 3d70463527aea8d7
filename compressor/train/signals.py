"""Ctrl-C / SIGTERM during training: stop at the next step boundary, so a resumed run continues exactly."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from compressor.core.errors import CompressorError

log = logging.getLogger("compressor")


class Interrupted(CompressorError):
    """Ctrl-C or SIGTERM during training: a checkpoint was saved, the run can be resumed."""

    exit_code = 130


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


class Signals:
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
        if world_size() > 1:
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
