"""Where a run's log goes (log.txt in the run folder with timings, concise console lines), and the processes of
an ``accelerate launch`` run (training in every process, files written by the main one)."""

from __future__ import annotations

import logging
from pathlib import Path

from compressor.core.writeerrors import QuietFileHandler

log = logging.getLogger("compressor")


class LogToFile:
    """log.txt in the run dir (with timings) plus concise console lines."""

    def __init__(self, path: Path | None, quiet: bool = False):
        self.path, self.quiet = path, quiet

    def __enter__(self):
        from rich.logging import RichHandler

        from compressor.core.console import stdout_console

        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.file = QuietFileHandler(self.path, encoding="utf-8", delay=True) if self.path else logging.NullHandler()
        self.file.setFormatter(fmt)
        self.console = RichHandler(
            console=stdout_console(), show_path=False, show_time=False, markup=False, rich_tracebacks=False
        )
        self.console.setLevel(logging.WARNING if self.quiet else logging.INFO)
        # a line marked file_only (the failure the command line prints itself) is not said twice on the console
        self.console.addFilter(lambda record: not getattr(record, "file_only", False))
        log.addHandler(self.file)
        log.addHandler(self.console)
        self.saved = (log.level, log.propagate)
        log.setLevel(logging.INFO)
        log.propagate = False
        return self

    def __exit__(self, *exc):
        for h in (self.file, self.console):
            log.removeHandler(h)
            h.close()
        log.setLevel(self.saved[0])
        log.propagate = self.saved[1]


class Processes:
    """Under `accelerate launch` training runs in every process; files are written by the main one only."""

    def __init__(self):
        import os

        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"))

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()
