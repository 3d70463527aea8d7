"""Progress lines for long steps: rows (or iterations) done, elapsed time and time left, every few seconds."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

log = logging.getLogger("compressor")

EVERY_S = 5.0  # seconds between two progress lines


class Progress:
    """``update(n)`` after each chunk of work; a line at most every ``every`` seconds, and one at the end."""

    def __init__(
        self, what: str, total: int, unit: str = "rows", every: float = EVERY_S, clock=time.perf_counter, quiet: bool = False
    ):
        """``quiet``: no first line, and a last one only when the step was slow enough to show progress."""
        self.what, self.total, self.unit, self.every, self.clock = what, max(int(total), 0), unit, every, clock
        self.done, self.shown = 0, not quiet
        self.start = self.last = clock()
        if not quiet:
            log.info("%s: %d %s ...", what, self.total, unit)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every and self.done < self.total:
            self.last, self.shown = now, True
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        pct = 100 * self.done / self.total if self.total else 100.0
        return f"{self.what}: {self.done}/{self.total} {self.unit} ({pct:.0f} %), {elapsed:.0f}s elapsed" + (
            f", ~{left:.0f}s left" if left == left else ""
        )

    def finish(self) -> float:
        seconds = self.clock() - self.start
        if self.shown:
            log.info("%s: %d %s in %.1fs", self.what, self.done, self.unit, seconds)
        return seconds


@contextlib.contextmanager
def console_log():
    """The library's info lines (data counts, progress) on stderr, for commands that keep stdout for results."""
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(message)s"))
    saved = (log.level, log.propagate)
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(h)
        log.setLevel(saved[0])
        log.propagate = saved[1]
