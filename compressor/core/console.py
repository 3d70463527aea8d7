"""Console output that survives a closed stdout (``compressor run … | head -2``).

Rich's Console exits the process (``SystemExit(1)``) when stdout is a closed pipe; a run must not die
because its reader stopped reading. Here stdout is pointed at /dev/null instead, once, and the command
carries on: log.txt still gets every line, and the exit code says how the command itself went.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

_state = {"closed": False}


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null (after a BrokenPipeError), so later writes and the final flush succeed."""
    _state["closed"] = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no usable stdout at all: nothing more to protect
        pass


def stdout_closed() -> bool:
    """True once a write to stdout found the pipe closed."""
    return _state["closed"]


class PipeSafeConsole(Console):
    """A rich Console whose output stops quietly, without ending the process, when stdout is closed."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        first = not stdout_closed()
        silence_stdout()
        if first:  # said once, in log.txt (the console is gone)
            import logging

            logging.getLogger("compressor").warning(
                "stdout was closed by its reader: console output stops here, "
                "the run carries on (every line still goes to log.txt)"
            )


def stdout_console(**kwargs) -> PipeSafeConsole:
    return PipeSafeConsole(**kwargs)
